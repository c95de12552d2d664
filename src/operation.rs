//! The one orchestrator. Every change to a deployment, of one node or nine, takes the same
//! path: `up`, `renew-cert`, `rotate-passwords`, both phases of `rotate-ca` and `up`'s own
//! renewal stage their change in local state first (saved before any server sees it), then
//! call [`converge`]:
//!
//! 1. every node is inspected at once, over one connection each, and pre-flighted; if any
//!    cannot be reached or fails, that node is named and nothing changes anywhere;
//! 2. ACME certificates that are due are ordered, each over its own node (which serves the
//!    http-01 token);
//! 3. each node's plan is made; a fresh deployment (no node has a container) starts every
//!    node at once, since a lone node of a clustered JetStream waits for its peers anyway;
//! 4. otherwise nodes change one at a time, stopped ones first. Before a node is reloaded or
//!    recreated, every *other* node must be healthy ([`gate`]); the node is applied, its
//!    passwords settled, its served certificate proven, and it must be back in the cluster
//!    before the next. So at most one node is ever away, and a 3-node cluster keeps its
//!    JetStream quorum. A deployment of one node has no other node: its gate always holds.
//!
//! Which password a node holds for a user whose rotation is pending is settled in
//! [`crate::settle`].

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;

use crate::acme;
use crate::config::Config;
use crate::deploy::{self, Server};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::grace;
use crate::nats_client;
use crate::observed::Observed;
use crate::pki;
use crate::plan::{self, Action, Plan};
use crate::remote::{AnyRemote, Remote, Via};
use crate::render::{COMPOSE_FILE, CONF_FILE};
use crate::settle::{Rotating, Settled, prove_rotated, settle_pending};
use crate::state::State;
use crate::tls_probe;
use crate::ui;
use crate::upgrade;
use crate::verify::cluster::{
    REJOIN_TIMEOUT, check_in_cluster, wait_answers_placement, wait_in_cluster,
    wait_in_cluster_within,
};

/// How long the server has to confirm a reload or a start, for every change but `up
/// --timeout`'s.
pub const READY_TIMEOUT: Duration = deploy::DEFAULT_READY_TIMEOUT;

/// One node of the deployment and the way to it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its index in [`Config::nodes`] and [`State::certs`].
    pub index: usize,
    pub name: String,
    pub via: Via,
}

/// A connection on its way, opened while the local state was made (`up`).
pub type Opening = tokio::task::JoinHandle<Result<AnyRemote>>;

/// What a node must show, beyond settled passwords, before its change counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// Nothing more: the change was passwords (settled anyway) or plain files.
    Settled,
    /// The node presents the certificate in local state; `retry` is the command that finishes
    /// the job if it does not.
    ServesCertificate { retry: &'static str },
}

/// A staged change: what each node must prove, which nodes need an ACME certificate.
#[derive(Debug, Clone)]
pub struct Change {
    /// The command, for the failpoint the crash tests stop at (`<step>:applied`).
    pub step: &'static str,
    /// Per node, in the order of [`Config::nodes`].
    pub proofs: Vec<Proof>,
    /// Per node: why an ACME certificate must be ordered for it, if one must.
    pub acme: Vec<Option<String>>,
    pub dry_run: bool,
    pub timeout: Duration,
}

impl Change {
    /// A change every node only has to settle (passwords, files).
    pub fn settled(step: &'static str, config: &Config) -> Change {
        Change {
            step,
            proofs: vec![Proof::Settled; config.nodes().len()],
            acme: vec![None; config.nodes().len()],
            dry_run: false,
            timeout: READY_TIMEOUT,
        }
    }
}

/// What one run did across the deployment.
#[derive(Debug, Default)]
pub struct Rolled {
    /// Each node's plan, in the order of [`Config::nodes`].
    pub plans: Vec<Plan>,
    /// The nodes changed, with their action, in the order they were changed.
    pub changed: Vec<(String, Action)>,
    pub settled: Vec<Settled>,
    pub commands: usize,
    pub elapsed: Duration,
    /// Each node's running server as the inspection found it ([`server_identity`]), in the
    /// order of [`Config::nodes`].
    pub servers: Vec<Option<String>>,
}

/// A running server, named by its container and the time it started: a restart (by anyone)
/// gives another one, a reload does not.
pub fn server_identity(observed: &Observed) -> Option<String> {
    let c = observed.container.as_ref().filter(|c| c.running())?;
    Some(format!("{}@{}", c.id, c.started_at))
}

impl Rolled {
    pub fn summary(&self, config: &Config) -> String {
        let what = if !config.is_cluster() {
            self.plans
                .first()
                .map_or("nothing to do", |p| p.action.done())
                .to_string()
        } else if self.changed.is_empty() {
            "nothing to do".to_string()
        } else {
            self.changed
                .iter()
                .map(|(n, a)| format!("{n} {}", a.done()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{what} in {:.1}s ({} remote command{})",
            self.elapsed.as_secs_f64(),
            self.commands,
            if self.commands == 1 { "" } else { "s" }
        )
    }

    /// Whether every node's files were byte-identical to the render: nothing was applied.
    pub fn nothing(&self) -> bool {
        self.plans.iter().all(|p| p.action == Action::Nothing)
    }
}

/// A node's open connection and what it reported.
pub struct Inspected {
    pub remote: AnyRemote,
    pub observed: Observed,
}

/// `error` from node `name`: for a cluster it says which node, and whether anything changed.
fn on_node(config: &Config, name: &str, error: Error, changed_nothing: bool) -> Error {
    let error = if config.is_cluster() {
        error.on_node(name)
    } else {
        error
    };
    if changed_nothing && config.is_cluster() {
        error.with_hint_line("nothing was changed on any node")
    } else {
        error
    }
}

/// Every node, inspected: its open connection and what it reported, and the step that shows
/// it, which ends once the plans are made ([`Inspection::planned`]).
pub struct Inspection {
    pub nodes: Vec<Inspected>,
    step: Option<ui::Step>,
}

impl Inspection {
    /// Ends the inspecting step with each node's plan.
    pub fn planned(&mut self, config: &Config, plans: &[Plan]) {
        let Some(step) = self.step.take() else {
            return;
        };
        step.done(if config.is_cluster() {
            config
                .nodes()
                .iter()
                .zip(plans)
                .map(|(n, p)| format!("{}: {}", n.name, p.action.name()))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            format!("plan: {}", plans[0].action.name())
        });
    }

    /// Closes every connection.
    pub async fn close(nodes: Vec<Inspected>) -> usize {
        let mut commands = 0;
        for i in nodes {
            commands += i.remote.commands();
            i.remote.close().await;
        }
        commands
    }
}

/// Connects to every node and inspects it, all at once (`openings`: connections already on
/// their way), shown as a step unless `quiet`. Any node that cannot be reached, inspected, or
/// fails pre-flight is an error naming it; every connection is closed then.
pub async fn inspect_all(
    config: &Config,
    state: &State,
    members: &[Member],
    openings: Option<Vec<Opening>>,
    quiet: bool,
) -> Result<Inspection> {
    let mut openings = openings.map(|o| o.into_iter().map(Some).collect::<Vec<_>>());
    let opened = join_all(members.iter().map(|m| {
        let opening = openings.as_mut().and_then(|o| o[m.index].take());
        let opened = async move {
            match opening {
                Some(handle) => handle.await.expect("opening a connection does not panic"),
                None => m.via.open().await,
            }
        };
        async move {
            // One server shows its connection as a step of its own, as it always has.
            if config.is_cluster() {
                opened.await
            } else {
                m.via.connected(opened).await
            }
        }
    }))
    .await;
    let step = (!quiet).then(|| {
        ui::Step::start(if config.is_cluster() {
            format!("inspecting {} nodes", members.len())
        } else {
            "inspecting the server".to_string()
        })
    });
    let results = join_all(members.iter().zip(opened).map(|(m, opened)| async move {
        let mut remote = opened.map_err(|e| (e, None))?;
        let server = Server::of(config, m.index, state);
        match deploy::observe(&mut remote, &server).await {
            Ok(observed) => match deploy::check_preflight(&observed, &remote.describe()) {
                Ok(()) => Ok(Inspected { remote, observed }),
                Err(e) => Err((e, Some(remote))),
            },
            Err(e) => Err((e, Some(remote))),
        }
    }))
    .await;
    let mut nodes = Vec::new();
    let mut first_error = None;
    for (m, result) in members.iter().zip(results) {
        match result {
            Ok(i) => nodes.push(i),
            Err((e, remote)) => {
                if let Some(remote) = remote {
                    remote.close().await;
                }
                first_error.get_or_insert(on_node(config, &m.name, e, true));
            }
        }
    }
    if let Some(e) = first_error {
        Inspection::close(nodes).await;
        return Err(e);
    }
    Ok(Inspection { nodes, step })
}

/// Each node's plan: what its server has against what it must serve (while `cluster.port`
/// moves, with the routes to both ports).
pub fn plans(config: &Config, state: &State, inspected: &[Inspected]) -> Vec<Plan> {
    let previous = previous_route_ports(config, inspected);
    let moving = (!previous.is_empty()).then(|| config.moving_routes(previous));
    let config = moving.as_ref().unwrap_or(config);
    inspected
        .iter()
        .enumerate()
        .map(|(i, ins)| plan::plan(&deploy::server_bundle(config, i, state), &ins.observed))
        .collect()
}

/// Brings every node onto its render and proves it, as the module says. With `dry_run`,
/// prints each node's plan and changes nothing.
pub async fn converge(
    config: &Config,
    state: &mut State,
    members: &[Member],
    openings: Option<Vec<Opening>>,
    change: &Change,
) -> Result<Rolled> {
    let started = Instant::now();
    let mut inspection = inspect_all(config, state, members, openings, false).await?;
    // A route port that changes cannot move on every node at once without taking the
    // cluster apart, nor one node at a time if a moved node only dials the new port: it
    // would find no peer. So while it moves, every node dials its peers at both ports; once
    // every node listens on the new one, a second pass drops the old.
    let previous = previous_route_ports(config, &inspection.nodes);
    let moving = (!previous.is_empty()).then(|| {
        ui::note(format!(
            "cluster.port moves from {} to {}: the nodes move one at a time, each dialing its \
             peers at both ports until every node listens on {}",
            previous
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            config.cluster.port,
            config.cluster.port
        ));
        config.moving_routes(previous)
    });
    let mut rolled = Rolled {
        servers: inspection
            .nodes
            .iter()
            .map(|i| server_identity(&i.observed))
            .collect(),
        ..Rolled::default()
    };
    let result = run(
        moving.as_ref().unwrap_or(config),
        state,
        members,
        &mut inspection,
        change,
        &mut rolled,
    )
    .await;
    rolled.commands = Inspection::close(inspection.nodes).await;
    rolled.elapsed = started.elapsed();
    result?;
    if moving.is_some() && !change.dry_run {
        ui::note(format!(
            "every node listens on route port {}: dropping the routes to the old one",
            config.cluster.port
        ));
        let dropped = Change {
            proofs: vec![Proof::Settled; members.len()],
            acme: vec![None; members.len()],
            ..change.clone()
        };
        let second = Box::pin(converge(config, state, members, None, &dropped)).await?;
        rolled.changed.extend(second.changed);
        rolled.settled.extend(second.settled);
        rolled.commands += second.commands;
        rolled.plans = second.plans;
        rolled.elapsed = started.elapsed();
    }
    Ok(rolled)
}

/// The route ports other than `cluster.port` that a node with a container was last confirmed
/// to advertise: what its peers may still have to dial it at.
fn previous_route_ports(config: &Config, inspected: &[Inspected]) -> Vec<u16> {
    if !config.is_cluster() {
        return Vec::new();
    }
    let mut ports: Vec<u16> = inspected
        .iter()
        .filter(|i| i.observed.container.is_some())
        .filter_map(|i| advertised_route_port(&i.observed))
        .filter(|p| *p != config.cluster.port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The route port in the `cluster` block's `advertise` of the config the node runs.
fn advertised_route_port(observed: &Observed) -> Option<u16> {
    let conf = observed
        .content(".natsup/applied/nats-server.conf")
        .or_else(|| observed.content(CONF_FILE))?;
    route_port_in(&String::from_utf8_lossy(conf))
}

fn route_port_in(conf: &str) -> Option<u16> {
    let cluster = conf.split("\ncluster {").nth(1)?;
    let line = cluster
        .lines()
        .find(|l| l.trim_start().starts_with("advertise:"))?;
    line.trim()
        .trim_end_matches('"')
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

async fn run(
    config: &Config,
    state: &mut State,
    members: &[Member],
    inspection: &mut Inspection,
    change: &Change,
    rolled: &mut Rolled,
) -> Result<()> {
    if !change.dry_run {
        for m in members {
            if let Some(reason) = &change.acme[m.index] {
                let remote = &mut inspection.nodes[m.index].remote;
                order_acme(config, state, m, remote, reason, change.timeout).await?;
            }
        }
    }
    // A node whose clients get the ACME CA's certificate is never handed natsup's CA's
    // instead, whatever the command (a dry run skips the orders it would make).
    for m in members {
        if !(change.dry_run && change.acme[m.index].is_some()) {
            state.refuse_private_ca_for_acme(config, m.index, change.step)?;
        }
    }
    // An old credential whose grace period has ended leaves the render now, whatever the
    // command: the reload below drops it, and it is proven refused at the end.
    grace::expire(state, time::OffsetDateTime::now_utc(), change.dry_run)?;
    rolled.plans = plans(config, state, &inspection.nodes);
    // A retired route password leaves a node's URLs only with a recreate of that node: the new
    // server made no route with it, so nothing closes. A reload of its own is not worth the
    // risk of closing the node's routes: refused by every node, the URL costs only a few log
    // lines until then.
    if !change.dry_run {
        let recreated: Vec<String> = members
            .iter()
            .zip(&rolled.plans)
            .filter(|(_, p)| matches!(p.action, Action::Recreate))
            .map(|(m, _)| m.name.clone())
            .collect();
        let dropped = state.secrets.forget_retired_routes_of(&recreated);
        if !dropped.is_empty() {
            state.save_secrets()?;
            ui::note(format!(
                "node {}: recreated, it no longer dials with the retired route password",
                dropped.join(", ")
            ));
            rolled.plans = plans(config, state, &inspection.nodes);
        }
    }
    inspection.planned(config, &rolled.plans);
    let inspected = &mut inspection.nodes[..];
    show_plans(config, members, &rolled.plans, change.dry_run);
    judge_images(config, members, inspected)?;
    if change.dry_run {
        return Ok(());
    }
    // The old passwords of a rotation, to prove every node refuses them at the end.
    let rotating: Vec<Rotating> = state
        .secrets
        .pending_users()
        .into_iter()
        .filter_map(|u| {
            let password = state.secrets.password(&u).cloned()?;
            let login = state.secrets.login(&u).to_string();
            Some(Rotating {
                user: u,
                login,
                password,
            })
        })
        .collect();
    if inspected.iter().all(|i| i.observed.container.is_none()) {
        start_all(config, state, members, inspected, change, rolled).await?;
    } else {
        roll(config, state, members, inspected, change, rolled).await?;
    }
    // A password left pending (a node with nothing to apply, or an interrupted run whose
    // files already went out) is settled against the first node.
    if !state.secrets.pending_users().is_empty() {
        let settled = settle_pending(config, state, 0, &mut inspected[0].remote).await?;
        rolled.settled.extend(settled);
    }
    if config.is_cluster() {
        prove_rotated(config, state, &rotating, &rolled.settled).await?;
    }
    grace::prove_retired(config, state).await?;
    Ok(())
}

/// The image each running node would leave, against the one it gets: a downgrade across
/// JetStream's storage format is refused before anything changes ([`upgrade::judge`]; any
/// other minor downgrade is warned about in the node's plan).
fn judge_images(config: &Config, members: &[Member], inspected: &[Inspected]) -> Result<()> {
    for (m, ins) in members.iter().zip(inspected) {
        if ins.observed.container.is_none() {
            continue;
        }
        let Some(old) = ins
            .observed
            .content(".natsup/applied/docker-compose.yaml")
            .or_else(|| ins.observed.content(COMPOSE_FILE))
            .and_then(|c| plan::compose_image(&String::from_utf8_lossy(c)))
        else {
            continue;
        };
        let new = &config.nodes()[m.index].image;
        match upgrade::judge(&old, new) {
            upgrade::Verdict::Safe | upgrade::Verdict::Warn(_) => {}
            upgrade::Verdict::Refuse(why) => {
                return Err(on_node(
                    config,
                    &m.name,
                    Error::failed(
                        format!("refusing to change image {old} to {new}: {why}"),
                        Some(format!(
                            "set `image` back to {old} (or to a version that reads its data); \
                             to start over on {new}, remove the JetStream data first"
                        )),
                    ),
                    true,
                ));
            }
        }
    }
    Ok(())
}

/// Node `m` runs the nats-server version its image's tag names, as the server itself reports
/// it (the INFO it sends every client), not as Docker labels the image: shown, and an error if
/// the tag names another. A tag that names no version is only shown.
async fn prove_version(config: &Config, state: &State, m: &Member) -> Result<()> {
    let image = &config.nodes()[m.index].image;
    let who = if config.is_cluster() {
        format!("node {}", m.name)
    } else {
        "the server".to_string()
    };
    let served = served_version(config, state, m.index)
        .await
        .map_err(|e| on_node(config, &m.name, e, false))?;
    let proven = upgrade::Version::parse(&served);
    match upgrade::version_of(image) {
        Some(want) if !proven.is_some_and(|v| want.matches(&v)) => Err(on_node(
            config,
            &m.name,
            Error::failed(
                format!("{who} runs nats-server {served}, not the {want} its image {image} names"),
                Some(
                    "look at what the image's tag points to on that host (`docker image \
                     inspect`), then run `natsup up` again"
                        .to_string(),
                ),
            ),
            false,
        )),
        _ => {
            ui::note(format!("{who} runs nats-server {served} (image {image})"));
            Ok(())
        }
    }
}

/// The version node `i`'s nats-server reports in the INFO it greets a client with. A server
/// that just became ready may take a moment to accept logins: asked for a few seconds.
pub async fn served_version(config: &Config, state: &State, i: usize) -> Result<String> {
    let (target, logins) = nats_client::deployment_logins(config, i, state, None)
        .map_err(|e| Error::failed(e, None))?;
    let login = logins
        .first()
        .ok_or_else(|| Error::failed("the deployment has no user to log in with", None))?;
    let deadline = Instant::now() + VERSION_PATIENCE;
    loop {
        match nats_client::connect(&target, login).await {
            Ok(client) => {
                let version = client.server_info().version;
                drop(client);
                return Ok(version);
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::failed(
                    format!("cannot ask the server its version: {e}"),
                    None,
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// How long a server that just became ready has to take a login for [`served_version`].
const VERSION_PATIENCE: Duration = Duration::from_secs(10);

fn show_plans(config: &Config, members: &[Member], plans: &[Plan], dry_run: bool) {
    for (m, plan) in members.iter().zip(plans) {
        if config.is_cluster() {
            ui::note(format!("node {}: plan: {}", m.name, plan.action.name()));
        }
        ui::note(plan.describe(dry_run).trim_end());
    }
}

/// Orders node `m`'s certificate from the ACME CA over its connection (the http-01 token is
/// served there) and stores it. Nothing on the NATS server changes unless the CA issued.
async fn order_acme(
    config: &Config,
    state: &mut State,
    m: &Member,
    remote: &mut AnyRemote,
    reason: &str,
    ready: Duration,
) -> Result<()> {
    let node = &config.nodes()[m.index];
    let whose = if config.is_cluster() {
        format!("node {}: ", m.name)
    } else {
        String::new()
    };
    ui::note(format!(
        "{whose}ordering a certificate from the ACME CA: {reason}"
    ));
    let issued = acme::obtain(remote, config, node, &state.certs[m.index].dir, ready)
        .await
        .map_err(|e| on_node(config, &m.name, e, false))?;
    state.store_acme(m.index, issued.chain_pem, issued.key_pem)?;
    let info = &state.certs[m.index].info;
    ui::note(format!(
        "{whose}the ACME CA issued certificate {} (issuer {}, expires {})",
        info.serial,
        info.issuer,
        info.not_after.date()
    ));
    Ok(())
}

/// A fresh deployment: every node starts at once, then each must be in the cluster.
async fn start_all(
    config: &Config,
    state: &mut State,
    members: &[Member],
    inspected: &mut [Inspected],
    change: &Change,
    rolled: &mut Rolled,
) -> Result<()> {
    let step = ui::Step::start(if config.is_cluster() {
        format!(
            "uploading, validating and starting {} nodes at once",
            members.len()
        )
    } else {
        "uploading, validating and starting the server (pulls the image if needed)".to_string()
    });
    let servers: Vec<Server> = members
        .iter()
        .map(|m| Server::of(config, m.index, state))
        .collect();
    let results =
        join_all(inspected.iter_mut().zip(&servers).zip(&rolled.plans).map(
            |((ins, server), plan)| deploy::apply(&mut ins.remote, server, plan, change.timeout),
        ))
        .await;
    failpoint::hit(&format!("{}:applied", change.step));
    let mut failed = None;
    for (m, r) in members.iter().zip(results) {
        match r {
            Ok(()) => rolled.changed.push((m.name.clone(), Action::Start)),
            Err(e) => {
                failed.get_or_insert(on_node(config, &m.name, e, false));
            }
        }
    }
    if let Some(e) = failed {
        // A server that took a pending password before failing must not leave its clients
        // holding one that is no longer served.
        settle_pending(config, state, 0, &mut inspected[0].remote).await?;
        return Err(e);
    }
    step.done("done");
    if config.is_cluster() {
        let step = ui::Step::start("waiting for every node to join the cluster");
        let stuck = joined(config, state, members, FIRST_JOIN, Some(LAGGARD)).await;
        if !stuck.is_empty() {
            // A node of a new cluster that has not caught up with the JetStream meta group by
            // now (seen about once in ten fresh starts: it never hears the meta leader, or
            // creates streams placed on it without answering) holds no data yet: it is
            // started again, once, and joins as a late node does.
            for (m, why) in &stuck {
                ui::note(format!(
                    "node {}: not in the new cluster ({why}); a new node holds no data yet, so it is started again",
                    m.name
                ));
                let restart = Plan {
                    action: Action::Recreate,
                    reasons: vec!["it did not join the new cluster".into()],
                    files: Vec::new(),
                };
                let server = Server::of(config, m.index, state);
                deploy::apply(
                    &mut inspected[m.index].remote,
                    &server,
                    &restart,
                    change.timeout,
                )
                .await
                .map_err(|e| on_node(config, &m.name, e, false))?;
            }
            let again: Vec<&Member> = stuck.iter().map(|(m, _)| *m).collect();
            let still = joined(config, state, &again, REJOIN_TIMEOUT, None).await;
            if let Some((m, why)) = still.into_iter().next() {
                return Err(on_node(
                    config,
                    &m.name,
                    Error::failed(
                        format!("not in the cluster after a restart: {why}"),
                        Some(
                            "look at `docker logs` on that node (\"JetStream is not current with the meta leader\")"
                                .to_string(),
                        ),
                    ),
                    false,
                ));
            }
        }
        step.done("routes up, and every node answers for a stream placed on it");
    }
    for m in members {
        prove_serial(config, state, m, change.proofs[m.index]).await?;
        prove_version(config, state, m).await?;
    }
    Ok(())
}

/// How long the nodes of a new cluster get to join it before one that has not is started
/// again: a good start takes 1-3 s here, on two shared cores up to 10.
const FIRST_JOIN: Duration = Duration::from_secs(20);

/// How long a node of a new cluster may lag once a majority has joined. Three native
/// nats-servers started at once with fresh stores were all placeable within 0.1 s of each
/// other when the start went well (median formation 1.2 s). When it did not (6 starts in 70 on
/// nats-server 2.10.26, 1 in 60 on 2.11.11; listing every node in each node's routes did not
/// help), one node stayed out of the meta group for good, and a restart let it join in under
/// 2 s. So waiting the whole [`FIRST_JOIN`] for it only adds time.
const LAGGARD: Duration = Duration::from_secs(4);

/// Waits, at once, until each of `members` is in the cluster and answers for a stream placed
/// on it, giving up after `limit` — or, with `laggard`, that long after a majority of
/// `members` has joined; the members that did not, with why.
async fn joined<'m, M: std::borrow::Borrow<Member>>(
    config: &Config,
    state: &State,
    members: &'m [M],
    limit: Duration,
    laggard: Option<Duration>,
) -> Vec<(&'m Member, String)> {
    let started = Instant::now();
    let mut waits: FuturesUnordered<_> = members
        .iter()
        .enumerate()
        .map(|(k, m)| async move {
            let i = m.borrow().index;
            let joined = async {
                wait_in_cluster_within(config, state, i, limit).await?;
                wait_answers_placement(config, state, i, limit).await
            };
            (k, joined.await)
        })
        .collect();
    let majority = members.len() / 2 + 1;
    let mut deadline = tokio::time::Instant::from_std(started + limit);
    // `None` while a member is still waited for; then whether it joined, or why not.
    let mut outcome: Vec<Option<std::result::Result<(), String>>> = vec![None; members.len()];
    let mut lagging = false;
    loop {
        tokio::select! {
            next = waits.next() => {
                let Some((k, result)) = next else { break };
                outcome[k] = Some(result.map_err(|e| e.to_string()));
                let in_cluster = outcome.iter().filter(|o| matches!(o, Some(Ok(())))).count();
                if let Some(grace) = laggard.filter(|_| in_cluster == majority && !lagging) {
                    lagging = true;
                    deadline = deadline.min(tokio::time::Instant::now() + grace);
                }
            },
            () = tokio::time::sleep_until(deadline) => {
                let why = format!(
                    "not placeable {:.1}s after the start{}",
                    started.elapsed().as_secs_f64(),
                    if lagging { ", while a majority of the nodes was" } else { "" },
                );
                for o in outcome.iter_mut().filter(|o| o.is_none()) {
                    *o = Some(Err(why.clone()));
                }
                break;
            }
        }
    }
    members
        .iter()
        .zip(outcome)
        .filter_map(|(m, o)| match o {
            Some(Err(why)) => Some((m.borrow(), why)),
            _ => None,
        })
        .collect()
}

/// One node at a time, stopped ones first; each gated, applied, proven and back in the
/// cluster before the next.
async fn roll(
    config: &Config,
    state: &mut State,
    members: &[Member],
    inspected: &mut [Inspected],
    change: &Change,
    rolled: &mut Rolled,
) -> Result<()> {
    let mut order: Vec<usize> = (0..members.len())
        .filter(|&i| {
            rolled.plans[i].action != Action::Nothing || change.proofs[i] != Proof::Settled
        })
        .collect();
    order.sort_by_key(|&i| {
        inspected[i]
            .observed
            .container
            .as_ref()
            .is_some_and(|c| c.running())
    });
    // Which nodes run now: from the inspection, and from what this run started.
    let mut running: Vec<bool> = inspected
        .iter()
        .map(|i| i.observed.container.as_ref().is_some_and(|c| c.running()))
        .collect();
    for i in order {
        let m = &members[i];
        let action = rolled.plans[i].action;
        if matches!(action, Action::Reload | Action::Recreate) {
            gate(config, state, members, &running, i).await?;
        }
        if action != Action::Nothing {
            let step = ui::Step::start(if config.is_cluster() {
                format!("node {}: {}", m.name, applying(action))
            } else {
                applying(action).to_string()
            });
            let server = Server::of(config, i, state);
            let applied = deploy::apply(
                &mut inspected[i].remote,
                &server,
                &rolled.plans[i],
                change.timeout,
            )
            .await;
            failpoint::hit(&format!("{}:applied", change.step));
            if applied.is_ok() {
                step.done("done");
            }
            // Pending passwords are settled even when applying failed: a server that took
            // them before failing otherwise leaves clients holding a password it no longer
            // serves. The next node then starts from what this one settled.
            if !state.secrets.pending_users().is_empty() {
                let settled = settle_pending(config, state, i, &mut inspected[i].remote).await?;
                rolled.settled.extend(settled);
            }
            applied.map_err(|e| on_node(config, &m.name, e, false))?;
            rolled.changed.push((m.name.clone(), action));
            running[i] = true;
        }
        prove_serial(config, state, m, change.proofs[i]).await?;
        if matches!(action, Action::Start | Action::Recreate) {
            prove_version(config, state, m).await?;
        }
        if config.is_cluster() && action != Action::Nothing {
            let step = ui::Step::start(format!(
                "node {}: waiting until it is back in the cluster",
                m.name
            ));
            wait_in_cluster(config, state, i)
                .await
                .map_err(|e| on_node(config, &m.name, e, false))?;
            step.done("routes to every peer, JetStream answering");
        }
    }
    Ok(())
}

fn applying(action: Action) -> &'static str {
    match action {
        Action::Start => {
            "uploading, validating and starting the server (pulls the image if needed)"
        }
        Action::Recreate => "uploading, validating and recreating the container",
        Action::Reload => "uploading, validating and reloading the server",
        _ => "uploading and validating the files",
    }
}

/// How long the gate waits for the other nodes to be healthy before it refuses.
const GATE_PATIENCE: Duration = Duration::from_secs(20);

/// The health gate: before node `i` is reloaded or recreated, every *other* node runs, routes
/// to every peer, and every replicated stream has a leader and current replicas. Otherwise
/// taking `i` away could leave a second node away, and a 3-node cluster without its JetStream
/// quorum, so nothing is touched. It is asked on every run, of every node, whatever its own
/// plan: a node that failed to rejoin in an earlier run has nothing left to apply, yet it is
/// still away. One node has no other: its gate always holds.
async fn gate(
    config: &Config,
    state: &State,
    members: &[Member],
    running: &[bool],
    i: usize,
) -> Result<()> {
    let others: Vec<&Member> = members.iter().filter(|m| m.index != i).collect();
    if others.is_empty() {
        return Ok(());
    }
    // A replica that is a few writes behind is normal under load and catches up within
    // moments: the gate asks again until GATE_PATIENCE is over, and only then refuses.
    let deadline = Instant::now() + GATE_PATIENCE;
    let unhealthy = loop {
        let looks = join_all(others.iter().map(|m| async {
            if !running[m.index] {
                return Err("its container is not running".to_string());
            }
            check_in_cluster(config, state, m.index).await
        }))
        .await;
        let unhealthy: Vec<String> = others
            .iter()
            .zip(looks)
            .filter_map(|(m, look)| look.err().map(|why| format!("node {}: {why}", m.name)))
            .collect();
        if unhealthy.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break unhealthy;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    Err(Error::failed(
        format!(
            "not touching node {}: another node is not healthy, and taking a second node away \
             could cost the cluster its JetStream quorum:\n  {}",
            members[i].name,
            unhealthy.join("\n  ")
        ),
        Some(
            "bring that node back first (`natsup status` shows it; look at `docker logs` on \
             it and at its network), then run the command again"
                .to_string(),
        ),
    ))
}

/// Node `m` presents the certificate in local state, when `proof` asks.
async fn prove_serial(config: &Config, state: &State, m: &Member, proof: Proof) -> Result<()> {
    let Proof::ServesCertificate { retry } = proof else {
        return Ok(());
    };
    let want = &state.certs[m.index].info.serial;
    let served = served_serial(config, m.index).await?;
    if &served == want {
        return Ok(());
    }
    let (who, check) = if config.is_cluster() {
        (format!("node {}", m.name), "verify")
    } else {
        ("the server".to_string(), "status")
    };
    Err(Error::failed(
        format!("{who} presents certificate {served}, not the new {want}"),
        Some(format!("run `natsup {check}`, then `natsup {retry}`")),
    ))
}

/// The serial of the certificate node `i` presents now (a rustls probe, like a client).
pub async fn served_serial(config: &Config, i: usize) -> Result<String> {
    let node = &config.nodes()[i];
    let probe = tls_probe::probe(&node.addr(), &node.host, nats_client::STEP_TIMEOUT)
        .await
        .map_err(|e| Error::failed(e, None))?;
    let leaf = probe
        .chain
        .first()
        .ok_or_else(|| Error::failed("the server presented no certificate", None))?;
    Ok(pki::inspect_der(leaf)?.serial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_port_a_node_advertises() {
        let conf = "listen: \"127.0.0.21:4222\"\n\ncluster {\n  name: \"c\"\n  \
                    listen: \"127.0.0.21:7222\"\n  advertise: \"127.0.0.21:7222\"\n}\n";
        assert_eq!(route_port_in(conf), Some(7222));
        assert_eq!(
            route_port_in("x\ncluster {\n  advertise: \"[::1]:6222\"\n}\n"),
            Some(6222)
        );
        // One server has no cluster block; `client_advertise` is not the route's.
        assert_eq!(
            route_port_in("listen: \"0.0.0.0:4222\"\nclient_advertise: \"h:4222\"\n"),
            None
        );
    }
}
