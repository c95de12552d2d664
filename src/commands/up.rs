//! `natsup up` and `natsup plan`: converge every node onto config + state, or show how.

use std::time::Duration;

use crate::cli::{PlanArgs, UpArgs};
use crate::error::{Error, Result};
use crate::operation::{self, Change, Inspection, Opening};
use crate::plan::Action;
use crate::renewal;
use crate::route_rotation;
use crate::session::{self, Context, Session};
use crate::ui;
use crate::verify::{self, Depth, Status, Thresholds};
use crate::verify_output::print_report;

pub fn run_up(ctx: &Context, args: UpArgs) -> Result<i32> {
    let runtime = crate::runtime();
    let target = args.target.target();
    let (config, members) = session::deployment(ctx, &target)?;
    // Opening the SSH connections takes a few round trips and needs nothing from the local
    // state, so it goes on while the state is made (a first run's CA, certificates and
    // bcrypt hashes). Nothing is sent to a server before the state is on disk.
    let openings: Vec<Opening> = members
        .iter()
        .map(|m| {
            let via = m.via.clone();
            runtime.spawn(async move { via.open().await })
        })
        .collect();
    let mut session = Session::open(ctx, config)?;
    // A routine `up` keeps the certificates fresh, and then proves each node presents its.
    let staged = renewal::stage(&mut session, false, args.dry_run, "up")?;
    let change = Change {
        step: "up",
        proofs: staged.proofs,
        acme: staged.acme,
        dry_run: args.dry_run,
        timeout: Duration::from_secs(args.timeout),
    };
    let Session { config, state, .. } = &mut session;
    // With nothing pending, the deployment most likely already serves what the state says,
    // and the check a deployment in sync needs goes over NATS, not SSH: it runs while the
    // nodes are inspected, so a no-op `up` costs the longer of the two instead of their sum.
    // It is only kept if every plan is "nothing", when it checked exactly what stays served.
    let speculate = !args.dry_run
        && state.secrets.pending_users().is_empty()
        && staged.renewed.is_empty()
        && state.secrets.route_rotation.is_none();
    runtime.block_on(async {
        let early = speculate.then(|| {
            let (config, state) = (config.clone(), state.clone());
            AbortOnDrop(tokio::spawn(async move {
                verify::deployment(&config, &state, None, &Thresholds::works(), Depth::Quick).await
            }))
        });
        // A node removed from `nodes` leaves first: lame duck, then the meta group; its
        // container is stopped once the others have dropped its route.
        let retiring = if args.dry_run {
            let removed = state.dir.removed_nodes(config);
            if config.is_cluster() && !removed.is_empty() {
                for step in crate::node_removal::steps(&removed) {
                    ui::note(format!("would {step}"));
                }
            }
            Vec::new()
        } else {
            crate::node_removal::begin(config, state, target.accept_new_host_key).await?
        };
        // Also finishes (or undoes) a password rotation an earlier run left pending.
        let rolled = operation::converge(config, state, &members, Some(openings), &change).await?;
        crate::node_removal::finish(config, retiring).await;
        if args.dry_run {
            if let Some(r) = state.secrets.route_rotation.as_ref() {
                ui::note(format!("would rotate the route credential: {}", r.reason));
            }
            return Ok(0);
        }
        ui::note(rolled.summary(config));
        // Also finishes a rotation of the route credential an earlier run left under way, or
        // the one a node's removal from `nodes` made due.
        if let Some(done) = route_rotation::finish(config, state, &members, change.timeout).await? {
            ui::note(format!(
                "route credential rotated ({}) in {:.1}s: every node refuses the old one",
                done.reason,
                done.elapsed.as_secs_f64()
            ));
            if !done.forgotten.is_empty() {
                ui::note(format!(
                    "forgot the local certificate and key of removed node {}; stop its server \
                     if it still runs: it can no longer make a new route, but nats-server may keep \
                     some of the routes it already has",
                    done.forgotten.join(", ")
                ));
            }
        }
        // A deployment whose files are byte-identical to ours only has to show it still
        // answers; after a change, every check runs (at once: the timings are not the point).
        let quiet = rolled
            .plans
            .iter()
            .all(|p| matches!(p.action, Action::Nothing | Action::Files));
        let (depth, what) = match (quiet, config.is_cluster()) {
            (true, false) => (
                Depth::Quick,
                "checking the certificate and one login (`natsup verify` checks all)",
            ),
            (false, false) => (Depth::AllAtOnce, "verifying every user over TLS"),
            (true, true) => (Depth::Quick, "verifying every node and the cluster"),
            (false, true) => (Depth::AllAtOnce, "verifying every node and the cluster"),
        };
        let step = ui::Step::start(what);
        // `filter` drops (and so stops) an early check that does not apply.
        let (report, early_note) = match early.filter(|_| rolled.nothing()) {
            Some(early) => (early.finish().await, ", run while the server was inspected"),
            // Made again, not reused from the early check: settling a pending rotation may
            // have changed which password the server holds.
            None => (
                verify::deployment(config, state, None, &Thresholds::works(), depth).await,
                "",
            ),
        };
        let report = report.map_err(|e| Error::failed(e, None))?;
        step.done(format!("{}{early_note}", report.status.label()));
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

/// `natsup plan`: each node's plan. Missing local state (a new user's password, a certificate
/// for new names) is made here as `render` would make it: the plan then shows exactly what
/// `up` will send.
pub fn run_plan(ctx: &Context, args: PlanArgs) -> Result<i32> {
    let (config, members) = session::deployment(ctx, &args.target.target())?;
    let session = Session::open(ctx, config)?;
    let (config, state) = (&session.config, &session.state);
    let plans = crate::runtime().block_on(async {
        let inspection = operation::inspect_all(config, state, &members, None, true).await?;
        let plans = operation::plans(config, state, &inspection.nodes);
        Inspection::close(inspection.nodes).await;
        Ok::<_, Error>(plans)
    })?;
    if args.json {
        // One server's plan is the plan itself, as it always was; a cluster's is a list of
        // them, each with its node's name.
        let json = if config.is_cluster() {
            serde_json::Value::Array(
                members
                    .iter()
                    .zip(&plans)
                    .map(|(m, plan)| {
                        let mut value = serde_json::to_value(plan).expect("plans serialize");
                        value["node"] = serde_json::Value::String(m.name.clone());
                        value
                    })
                    .collect(),
            )
        } else {
            serde_json::to_value(&plans[0]).expect("plans serialize")
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&json).expect("JSON values serialize")
        );
        return Ok(0);
    }
    for (m, plan) in members.iter().zip(&plans) {
        if config.is_cluster() {
            println!("node {}: plan: {}", m.name, plan.action.name());
        } else {
            println!("action: {}", plan.action.name());
        }
        print!("{}", plan.describe(true));
    }
    let removed = state.dir.removed_nodes(config);
    if config.is_cluster() && !removed.is_empty() {
        println!(
            "removing node {}: `natsup up` will, in order:",
            removed.join(", ")
        );
        for step in crate::node_removal::steps(&removed) {
            println!("  - {step}");
        }
    }
    if let Some(r) = &session.state.secrets.route_rotation {
        println!(
            "route credential: rotation due ({}): `natsup up` rotates it, two rolling reloads",
            r.reason
        );
    }
    Ok(0)
}
