//! `natsup renew-cert`: a new certificate for each node that is due (every node with
//! `--force`), from natsup's CA or ordered from the ACME CA, applied by reload one node at a
//! time (existing TLS sessions stay up; new ones get the new certificate), then proven by
//! reading the certificate each node presents. An ACME failure changes nothing on a server.

use crate::cli::RenewCertArgs;
use crate::error::Result;
use crate::failpoint;
use crate::operation::{self, Change};
use crate::renewal;
use crate::session::{self, Context, Session};
use crate::ui;

pub fn run(ctx: &Context, args: RenewCertArgs) -> Result<i32> {
    let (config, members) = session::deployment(ctx, &args.target.target())?;
    let mut session = Session::open(ctx, config)?;
    // Opening the session may have issued one already (new names): it still has to go out.
    let fresh_issue = session.issued_server_cert();
    let mut staged = renewal::stage(&mut session, args.force, args.dry_run, "renew-cert")?;
    let Session {
        config, state, now, ..
    } = &mut session;
    for (i, node) in config.nodes().iter().enumerate() {
        if staged.renewed.contains(&i) {
            continue;
        }
        let whose = if config.is_cluster() {
            format!("node {}: ", node.name)
        } else {
            String::new()
        };
        let info = &state.certs[i].info;
        let what = if config.acme().is_some() {
            "the ACME certificate"
        } else {
            "the server certificate"
        };
        println!(
            "{whose}{what} is valid until {} ({} days left): no renewal needed (use --force to renew anyway)",
            info.not_after.date(),
            info.days_left(*now)
        );
    }
    if args.dry_run || (staged.renewed.is_empty() && !fresh_issue) {
        return Ok(0);
    }
    if fresh_issue {
        for proof in &mut staged.proofs {
            *proof = operation::Proof::ServesCertificate {
                retry: "renew-cert",
            };
        }
    }
    failpoint::hit("renew-cert:issued");
    let change = Change {
        proofs: staged.proofs,
        acme: staged.acme,
        ..Change::settled("renew-cert", config)
    };
    let rolled =
        crate::runtime().block_on(operation::converge(config, state, &members, None, &change))?;
    ui::note(rolled.summary(config));
    for (i, node) in config.nodes().iter().enumerate() {
        let cert = &state.certs[i];
        let who = if config.is_cluster() {
            format!("node {}", node.name)
        } else {
            "the server".to_string()
        };
        let from = if cert.publicly_trusted {
            format!(" from {}", cert.info.issuer)
        } else {
            String::new()
        };
        println!(
            "{who} presents certificate {}{from} (valid until {})",
            cert.info.serial,
            cert.info.not_after.date()
        );
    }
    Ok(0)
}
