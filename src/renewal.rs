//! The one decision to renew: for each node, whether its certificate is renewed now and why,
//! made the same way by `up` (its routine renewal) and `renew-cert`. A certificate from
//! natsup's CA is issued here, in local state; one from an ACME CA is ordered later, over the
//! node's connection ([`crate::operation`]), so it is only marked due.

use crate::error::Result;
use crate::operation::Proof;
use crate::session::Session;
use crate::ui;

/// What was staged, per node in the order of the config's nodes.
#[derive(Debug, Clone)]
pub struct Staged {
    /// What each node must prove: the certificate it presents, where one was renewed.
    pub proofs: Vec<Proof>,
    /// Why each node's ACME certificate must be ordered, if it must.
    pub acme: Vec<Option<String>>,
    /// The nodes (by index) renewed, or that would be with `dry_run`.
    pub renewed: Vec<usize>,
}

/// Renews what is due (everything with `force`) and says so. With `dry_run` it only says
/// what it would renew. `retry` is the command that finishes the job if a node does not
/// present its new certificate.
pub fn stage(
    session: &mut Session,
    force: bool,
    dry_run: bool,
    retry: &'static str,
) -> Result<Staged> {
    let Session {
        config, state, now, ..
    } = session;
    let n = config.nodes().len();
    let mut staged = Staged {
        proofs: vec![Proof::Settled; n],
        acme: vec![None; n],
        renewed: Vec::new(),
    };
    for (i, node) in config.nodes().iter().enumerate() {
        let whose = if config.is_cluster() {
            format!("node {}: ", node.name)
        } else {
            String::new()
        };
        let acme = config.acme().is_some();
        // With the ACME CA's certificate for clients, a cluster's routes still present natsup's
        // CA's: it expires too, and is renewed by reload like any change of files.
        if acme && config.is_cluster() {
            let route = state.certs[i].ca_issued.info().renewal_reason(*now);
            if let Some(reason) = route.filter(|_| !dry_run) {
                ui::note(format!("{whose}renewing the route certificate: {reason}"));
                state.reissue_server_cert(config, i, *now)?;
            }
        }
        let reason = if force {
            Some("--force".to_string())
        } else if acme {
            state.acme_due(config, i, *now)
        } else {
            state.certs[i].info.renewal_reason(*now)
        };
        let Some(reason) = reason else { continue };
        staged.renewed.push(i);
        let what = if acme {
            "would order a new certificate from the ACME CA"
        } else {
            "would renew the server certificate"
        };
        if dry_run {
            ui::note(format!("{whose}{what}: {reason}"));
            continue;
        }
        staged.proofs[i] = Proof::ServesCertificate { retry };
        if acme {
            // Said when it is ordered, over the node's connection.
            staged.acme[i] = Some(reason);
        } else {
            ui::note(format!("{whose}renewing the server certificate: {reason}"));
            state.reissue_server_cert(config, i, *now)?;
        }
    }
    Ok(staged)
}
