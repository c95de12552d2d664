//! `natsup renew-cert`: a new server key and certificate from the same CA, applied by reload
//! (existing TLS sessions stay up; new ones get the new certificate), then proven by reading
//! the certificate the server presents.

use crate::acme;
use crate::cli::RenewCertArgs;
use crate::error::Result;
use crate::failpoint;
use crate::operation::{self, Proof};
use crate::remote::{Remote, Via};
use crate::session::{self, Context, Session};
use crate::{cluster, ui};

pub fn run(ctx: &Context, args: RenewCertArgs) -> Result<i32> {
    if let Some(config) = session::cluster_config(ctx, &args.target)? {
        return run_cluster(ctx, args, config);
    }
    let (mut session, via) = Session::open_server(ctx, &args.target)?;
    let fresh_issue = session.issued_server_cert();
    let Session {
        config, state, now, ..
    } = &mut session;

    if config.acme().is_some() {
        return renew_acme(args, &via, &mut session);
    }
    let reason = if args.force {
        Some("--force".to_string())
    } else {
        state.server_info.renewal_reason(*now)
    };
    match reason {
        // Opening the session may have issued one already (new names): it still has to go out.
        None if fresh_issue => {}
        None => {
            println!(
                "the server certificate is valid until {} ({} days left): no renewal needed (use --force to renew anyway)",
                state.server_info.not_after.date(),
                state.server_info.days_left(*now)
            );
        }
        Some(reason) if args.dry_run => {
            println!("would renew the server certificate: {reason}");
            return Ok(0);
        }
        Some(reason) => {
            crate::ui::note(format!("renewing the server certificate: {reason}"));
            state.reissue_server_cert(config, *now)?;
        }
    }
    failpoint::hit("renew-cert:issued");
    if args.dry_run {
        return Ok(0);
    }

    crate::runtime().block_on(operation::apply(
        "renew-cert",
        &via,
        &mut session,
        Proof::ServesCertificate {
            retry: "renew-cert",
        },
    ))?;
    println!(
        "the server presents certificate {} (valid until {})",
        session.state.server_info.serial,
        session.state.server_info.not_after.date()
    );
    Ok(0)
}

/// A cluster: each node whose certificate is due (or all, with `--force`) gets a new one; the
/// nodes then reload one at a time, each proven to present its new certificate and back in
/// the cluster before the next.
fn run_cluster(ctx: &Context, args: RenewCertArgs, config: crate::config::Config) -> Result<i32> {
    let mut session = Session::open(ctx, config)?;
    let now = session.now;
    let mut proofs = Vec::new();
    for (view, state) in &mut session.nodes {
        let node = view.nodes[view.this_node.expect("a node's view")]
            .name
            .clone();
        let reason = if args.force {
            Some("--force".to_string())
        } else {
            state.server_info.renewal_reason(now)
        };
        match reason {
            Some(reason) if args.dry_run => {
                println!("node {node}: would renew the server certificate: {reason}");
                proofs.push(Proof::Settled);
            }
            Some(reason) => {
                ui::note(format!(
                    "node {node}: renewing the server certificate: {reason}"
                ));
                state.reissue_server_cert(view, now)?;
                proofs.push(Proof::ServesCertificate {
                    retry: "renew-cert",
                });
            }
            None => {
                println!(
                    "node {node}: the server certificate is valid until {} ({} days left): no renewal needed",
                    state.server_info.not_after.date(),
                    state.server_info.days_left(now)
                );
                proofs.push(Proof::Settled);
            }
        }
    }
    failpoint::hit("renew-cert:issued");
    if args.dry_run {
        return Ok(0);
    }
    let mut members = cluster::members(&session.nodes, args.target.accept_new_host_key);
    let rolled = crate::runtime().block_on(cluster::converge(
        &mut members,
        &proofs,
        false,
        operation::READY_TIMEOUT,
    ))?;
    ui::note(rolled.summary());
    for m in &members {
        println!(
            "node {}: presents certificate {} (valid until {})",
            m.name,
            m.state.server_info.serial,
            m.state.server_info.not_after.date()
        );
    }
    Ok(0)
}

/// `tls.issuer: acme`: a new order from the ACME CA (over the server, which serves the http-01
/// token), stored, then deployed and proven like any renewal. An ACME failure changes nothing
/// on the server.
fn renew_acme(args: RenewCertArgs, via: &Via, session: &mut Session) -> Result<i32> {
    let Session {
        config, state, now, ..
    } = session;
    let reason = if args.force {
        Some("--force".to_string())
    } else {
        state.acme_due(config, *now)
    };
    let Some(reason) = reason else {
        println!(
            "the ACME certificate is valid until {} ({} days left): no renewal needed (use --force to renew anyway)",
            state.server_info.not_after.date(),
            state.server_info.days_left(*now)
        );
        return Ok(0);
    };
    if args.dry_run {
        println!("would order a new certificate from the ACME CA: {reason}");
        return Ok(0);
    }
    crate::ui::note(format!("ordering a certificate from the ACME CA: {reason}"));
    let runtime = crate::runtime();
    runtime.block_on(async {
        let mut remote = via.connect().await?;
        let issued = acme::obtain(&mut remote, config, &state.dir).await;
        remote.close().await;
        let issued = issued?;
        state.store_acme(issued.chain_pem, issued.key_pem)
    })?;
    failpoint::hit("renew-cert:issued");
    runtime.block_on(operation::apply(
        "renew-cert",
        via,
        session,
        Proof::ServesCertificate {
            retry: "renew-cert",
        },
    ))?;
    println!(
        "the server presents certificate {} from {} (valid until {})",
        session.state.server_info.serial,
        session.state.server_info.issuer,
        session.state.server_info.not_after.date()
    );
    Ok(0)
}
