//! `natsup up` and `natsup plan`: converge the server onto config + state, or show how.

use std::time::Duration;

use crate::acme;
use crate::cli::{PlanArgs, UpArgs};
use crate::cluster;
use crate::config::Config;
use crate::deploy::{self, Node};
use crate::error::{Error, Result};
use crate::nats_client;
use crate::operation::{self, Proof};
use crate::plan::Action;
use crate::remote::Remote;
use crate::session::{self, Context, Session};
use crate::ui;
use crate::verify::{self, Depth, Status, Thresholds};
use crate::verify_output::print_report;

pub fn run_up(ctx: &Context, args: UpArgs) -> Result<i32> {
    if let Some(config) = session::cluster_config(ctx, &args.target)? {
        return run_up_cluster(ctx, args, config);
    }
    let runtime = crate::runtime();
    let (config, via) = session::server(ctx, &args.target)?;
    // Opening the SSH connection takes a few round trips and needs nothing from the local
    // state, so it goes on while the state is made (a first run's CA, certificate and bcrypt
    // hashes). Nothing is sent to the server before the state is on disk.
    let opening = runtime.spawn({
        let via = via.clone();
        async move { via.open().await }
    });
    let mut session = Session::open(ctx, config)?;
    let Session {
        config, state, now, ..
    } = &mut session;
    // A routine `up` keeps the certificate fresh, and then proves the server presents it.
    let mut proof = Proof::Settled;
    // With `tls.issuer: acme` the certificate comes from the ACME CA, which needs the server
    // (the http-01 token is served there): it is ordered once the connection is open.
    let acme_due = state.acme_due(config, *now);
    if let Some(reason) = &acme_due {
        if args.dry_run {
            ui::note(format!(
                "a certificate would be ordered from the ACME CA: {reason}"
            ));
        } else {
            ui::note(format!("ordering a certificate from the ACME CA: {reason}"));
            proof = Proof::ServesCertificate { retry: "up" };
        }
    } else if config.acme().is_some() {
        // The ACME certificate is fresh: nothing to renew.
    } else if let Some(reason) = state.server_info.renewal_reason(*now) {
        if args.dry_run {
            ui::note(format!("the server certificate would be renewed: {reason}"));
        } else {
            ui::note(format!("renewing the server certificate: {reason}"));
            state.reissue_server_cert(config, *now)?;
            proof = Proof::ServesCertificate { retry: "up" };
        }
    }
    let timeout = Duration::from_secs(args.timeout);
    // With no rotation pending, the server most likely already serves what the state says,
    // and the check a server in sync needs goes over NATS, not SSH: it runs while the server
    // is inspected, so a no-op `up` costs the longer of the two instead of their sum. It is
    // only kept if the plan is "nothing", when it checked exactly what stays served.
    let speculate = !args.dry_run && state.secrets.pending_users().is_empty();
    runtime.block_on(async {
        let early = speculate
            .then(|| nats_client::deployment_logins(config, state, None).ok())
            .flatten()
            .map(|(target, logins)| {
                AbortOnDrop(tokio::spawn(async move {
                    verify::verify(&target, &logins, &Thresholds::works(), Depth::Quick).await
                }))
            });
        let opening = async {
            opening
                .await
                .expect("opening the connection does not panic")
        };
        // The ACME order runs over the connection the deployment then uses: nothing on the
        // NATS server changes unless the CA issued.
        let deployed = if acme_due.is_some() && !args.dry_run {
            let started = std::time::Instant::now();
            let mut remote = via.connected(opening).await?;
            let stored = match acme::obtain(&mut remote, config, &state.dir).await {
                Ok(issued) => state.store_acme(issued.chain_pem, issued.key_pem),
                Err(e) => Err(e),
            };
            if let Err(e) = stored {
                remote.close().await;
                return Err(e);
            }
            ui::note(format!(
                "the ACME CA issued certificate {} (issuer {}, expires {})",
                state.server_info.serial,
                state.server_info.issuer,
                state.server_info.not_after.date()
            ));
            deploy::deploy_on(remote, started, &Node::of(config, state), false, timeout).await
        } else {
            deploy::deploy_over(
                &via,
                opening,
                &Node::of(config, state),
                args.dry_run,
                timeout,
            )
            .await
        };
        if args.dry_run {
            return deployed.map(|_| 0);
        }
        // Also finishes (or undoes) a password rotation an earlier run left pending.
        let deployed = operation::prove(deployed, &via, config, state, proof)
            .await?
            .deployed;
        // A server whose files are byte-identical to ours only has to show it still answers;
        // after a change, every check runs (at once: the timings are not the point here).
        let (depth, what) = if matches!(deployed.plan.action, Action::Nothing | Action::Files) {
            (
                Depth::Quick,
                "checking the certificate and one login (`natsup verify` checks all)",
            )
        } else {
            (Depth::AllAtOnce, "verifying every user over TLS")
        };
        let step = ui::Step::start(what);
        // `filter` drops (and so stops) an early check that does not apply.
        let (report, early_note) = match early.filter(|_| deployed.plan.action == Action::Nothing) {
            Some(early) => (early.finish().await, ", run while the server was inspected"),
            None => {
                // Made again, not reused from the early check: settling a pending rotation
                // may have changed which password the server holds.
                let (target, logins) = nats_client::deployment_logins(config, state, None)
                    .map_err(|e| Error::failed(e, None))?;
                let report = verify::verify(&target, &logins, &Thresholds::works(), depth).await;
                (report, "")
            }
        };
        step.done(format!("{}{early_note}", report.status.label()));
        print_report(&report, false);
        Ok(if report.status >= Status::Critical {
            1
        } else {
            0
        })
    })
}

/// `up` for a cluster: every node inspected at once, then started at once (fresh) or rolled
/// one at a time ([`cluster::converge`]), then every node verified.
fn run_up_cluster(ctx: &Context, args: UpArgs, config: Config) -> Result<i32> {
    let runtime = crate::runtime();
    let mut session = Session::open(ctx, config)?;
    let now = session.now;
    let mut proofs = Vec::new();
    for (view, state) in &mut session.nodes {
        let node = &view.nodes[view.this_node.expect("a node's view")].name;
        match state.server_info.renewal_reason(now) {
            Some(reason) if args.dry_run => {
                ui::note(format!(
                    "node {node}: the server certificate would be renewed: {reason}"
                ));
                proofs.push(Proof::Settled);
            }
            Some(reason) => {
                ui::note(format!(
                    "node {node}: renewing the server certificate: {reason}"
                ));
                state.reissue_server_cert(view, now)?;
                proofs.push(Proof::ServesCertificate { retry: "up" });
            }
            None => proofs.push(Proof::Settled),
        }
    }
    let mut members = cluster::members(&session.nodes, args.target.accept_new_host_key);
    let timeout = Duration::from_secs(args.timeout);
    runtime.block_on(async {
        let rolled = cluster::converge(&mut members, &proofs, args.dry_run, timeout).await?;
        if args.dry_run {
            return Ok(0);
        }
        ui::note(rolled.summary());
        let depth = if rolled.changed.is_empty() {
            Depth::Quick
        } else {
            Depth::AllAtOnce
        };
        let step = ui::Step::start("verifying every node and the cluster");
        let report = cluster::verify(&members, &Thresholds::works(), depth).await;
        step.done(report.status.label());
        print_report(&report, false);
        Ok(if report.status >= Status::Critical {
            1
        } else {
            0
        })
    })
}

/// A background task that is stopped when its handle is dropped: the early check must not go
/// on logging in while the full one runs, or after `up` has failed.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn finish(mut self) -> T {
        (&mut self.0).await.expect("the task does not panic")
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn run_plan(ctx: &Context, args: PlanArgs) -> Result<i32> {
    if let Some(config) = session::cluster_config(ctx, &args.target)? {
        if args.json {
            return Err(Error::usage(
                "plan --json shows one server's plan; this deployment is a cluster",
                Some("run `natsup plan` for every node's plan in text".to_string()),
            ));
        }
        let session = Session::open(ctx, config)?;
        let mut members = cluster::members(&session.nodes, args.target.accept_new_host_key);
        let proofs = vec![Proof::Settled; members.len()];
        crate::runtime().block_on(cluster::converge(
            &mut members,
            &proofs,
            true,
            deploy::DEFAULT_READY_TIMEOUT,
        ))?;
        return Ok(0);
    }
    // Missing local state (a new user's password, a certificate for new names) is made here
    // as `render` would make it: the plan then shows exactly what `up` will send.
    let (session, via) = Session::open_server(ctx, &args.target)?;
    let (_, plan, _) = crate::runtime().block_on(deploy::inspect(
        &via,
        &Node::of(&session.config, &session.state),
    ))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).expect("plans serialize")
        );
    } else {
        println!("action: {}", plan.action.name());
        print!("{}", plan.describe(true));
    }
    Ok(0)
}
