//! A cluster: one deployment on several servers (`nodes` in natsup.yaml). Each node is one
//! server as the rest of natsup knows it: its view of the config ([`Config::node_view`]), its
//! state, its [`deploy::Node`], its SSH connection. This module only decides the order:
//!
//! - every node is inspected at once, over one SSH connection each; if any cannot be inspected
//!   or fails its pre-flight checks, that node is named and nothing changes anywhere;
//! - a fresh cluster (no node has a container yet) starts all nodes at once;
//! - otherwise nodes change one at a time, stopped ones first, and the next starts only once
//!   the changed node is back in the cluster ([`wait_in_cluster`]): its clients are told
//!   about every peer (the routes are up) and JetStream answers through it. So at most one
//!   node is ever away, and a 3-node cluster keeps its JetStream quorum throughout.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::config::{Config, host_port};
use crate::deploy::{self, Node};
use crate::error::{Error, Result};
use crate::nats_client::{self, Endpoint, Login};
use crate::observed::Observed;
use crate::operation::{self, Proof};
use crate::plan::{self, Action, Plan};
use crate::remote::{AnyRemote, Remote, SshDestination, Via};
use crate::state::State;
use crate::ui;
use crate::verify;

/// How long a changed node has to rejoin the cluster before the roll stops.
pub const REJOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// One node of a cluster, ready to be worked on.
pub struct Member {
    pub name: String,
    pub view: Config,
    pub state: State,
    pub via: Via,
}

impl Member {
    pub fn node(&self) -> Node {
        Node::of(&self.view, &self.state)
    }
}

/// The nodes of an open cluster session.
pub fn members(nodes: &[(Config, State)], accept_new_host_key: bool) -> Vec<Member> {
    nodes
        .iter()
        .map(|(view, state)| Member {
            name: view.nodes[view.this_node.expect("a node's view")]
                .name
                .clone(),
            via: Via::Ssh(SshDestination::from_config(
                view.ssh.as_ref().expect("a node always has ssh"),
                accept_new_host_key,
            )),
            view: view.clone(),
            state: state.clone(),
        })
        .collect()
}

/// `error` with the node it happened on, and that nothing changed anywhere.
fn on_node(name: &str, error: Error, changed_nothing: bool) -> Error {
    let hint = match (error.hint(), changed_nothing) {
        (Some(h), true) => Some(format!("{h}\nnothing was changed on any node")),
        (None, true) => Some("nothing was changed on any node".to_string()),
        (h, false) => h,
    };
    Error::Failed {
        message: format!("node {name}: {error}"),
        hint,
    }
}

/// A node's open connection and what it reported.
pub struct Inspected {
    pub remote: AnyRemote,
    pub observed: Observed,
    pub plan: Plan,
}

/// Connects to every node and inspects it, all at once. Any node that cannot be reached,
/// inspected, or fails pre-flight is an error naming it; every connection is closed then.
pub async fn inspect_all(members: &[Member]) -> Result<Vec<Inspected>> {
    let step = ui::Step::start(format!("inspecting {} nodes", members.len()));
    let results = join_all(members.iter().map(|m| async move {
        let mut remote = m.via.open().await.map_err(|e| (e, None))?;
        let node = m.node();
        match deploy::observe(&mut remote, &node).await {
            Ok(observed) => match deploy::check_preflight(&observed, &remote.describe()) {
                Ok(()) => {
                    let plan = plan::plan(&node.bundle, &observed);
                    Ok(Inspected {
                        remote,
                        observed,
                        plan,
                    })
                }
                Err(e) => Err((e, Some(remote))),
            },
            Err(e) => Err((e, Some(remote))),
        }
    }))
    .await;
    let mut inspected = Vec::new();
    let mut first_error = None;
    for (m, result) in members.iter().zip(results) {
        match result {
            Ok(i) => inspected.push(i),
            Err((e, remote)) => {
                if let Some(remote) = remote {
                    remote.close().await;
                }
                first_error.get_or_insert(on_node(&m.name, e, true));
            }
        }
    }
    if let Some(e) = first_error {
        for i in inspected {
            i.remote.close().await;
        }
        return Err(e);
    }
    step.done(
        members
            .iter()
            .zip(&inspected)
            .map(|(m, i)| format!("{}: {}", m.name, i.plan.action.name()))
            .collect::<Vec<_>>()
            .join(", "),
    );
    Ok(inspected)
}

/// What one `up` did across the cluster.
#[derive(Debug, Default)]
pub struct Rolled {
    /// The nodes changed, with their action, in the order they were changed.
    pub changed: Vec<(String, Action)>,
    pub commands: usize,
    pub elapsed: Duration,
}

impl Rolled {
    pub fn summary(&self) -> String {
        let what = if self.changed.is_empty() {
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
}

/// Brings every node onto its render: all at once for a fresh cluster, else one at a time,
/// each back in the cluster before the next. `proofs[i]` is what node i must show beyond
/// settled passwords. With `dry_run`, prints each node's plan and changes nothing.
pub async fn converge(
    members: &mut [Member],
    proofs: &[Proof],
    dry_run: bool,
    timeout: Duration,
) -> Result<Rolled> {
    let started = Instant::now();
    let mut inspected = inspect_all(members).await?;
    for (m, i) in members.iter().zip(&inspected) {
        ui::note(format!("node {}: plan: {}", m.name, i.plan.action.name()));
        ui::note(i.plan.describe(dry_run).trim_end());
    }
    let mut rolled = Rolled::default();
    let result = if dry_run {
        Ok(())
    } else if inspected.iter().all(|i| i.observed.container.is_none()) {
        start_all(members, &mut inspected, timeout, &mut rolled).await
    } else {
        roll(members, &mut inspected, proofs, timeout, &mut rolled).await
    };
    for i in inspected {
        rolled.commands += i.remote.commands();
        i.remote.close().await;
    }
    rolled.elapsed = started.elapsed();
    result.map(|()| rolled)
}

/// A fresh cluster: every node starts at once (a lone node of a clustered JetStream waits
/// for its peers anyway), then each must be in the cluster.
async fn start_all(
    members: &mut [Member],
    inspected: &mut [Inspected],
    timeout: Duration,
    rolled: &mut Rolled,
) -> Result<()> {
    let step = ui::Step::start(format!(
        "uploading, validating and starting {} nodes at once",
        members.len()
    ));
    let results = join_all(members.iter().zip(inspected.iter_mut()).map(|(m, i)| {
        let node = m.node();
        async move { deploy::apply(&mut i.remote, &node, &i.plan, timeout).await }
    }))
    .await;
    for (m, r) in members.iter().zip(results) {
        r.map_err(|e| on_node(&m.name, e, false))?;
        rolled.changed.push((m.name.clone(), Action::Start));
    }
    step.done("done");
    let step = ui::Step::start("waiting for every node to join the cluster");
    let waits = join_all(members.iter().map(|m| wait_in_cluster(m, members))).await;
    for (m, w) in members.iter().zip(waits) {
        w.map_err(|e| on_node(&m.name, e, false))?;
    }
    step.done("routes up and JetStream answering on every node");
    // A password left pending by an interrupted run went out with the start: settle it.
    if let Some(Member {
        view, state, via, ..
    }) = members.first_mut()
        && !state.secrets.pending_users().is_empty()
    {
        operation::settle_pending(via, view, state).await?;
    }
    Ok(())
}

/// One node at a time, stopped ones first; each proven and back in the cluster before the next.
async fn roll(
    members: &mut [Member],
    inspected: &mut [Inspected],
    proofs: &[Proof],
    timeout: Duration,
    rolled: &mut Rolled,
) -> Result<()> {
    let mut order: Vec<usize> = (0..members.len())
        .filter(|&i| inspected[i].plan.action != Action::Nothing || proofs[i] != Proof::Settled)
        .collect();
    order.sort_by_key(|&i| {
        inspected[i]
            .observed
            .container
            .as_ref()
            .is_some_and(|c| c.running())
    });
    for i in order {
        let action = inspected[i].plan.action;
        let name = members[i].name.clone();
        if action != Action::Nothing {
            let step = ui::Step::start(format!("node {name}: {}", applying(action)));
            let node = members[i].node();
            let applied =
                deploy::apply(&mut inspected[i].remote, &node, &inspected[i].plan, timeout).await;
            if applied.is_ok() {
                step.done("done");
            }
            // Pending passwords are settled even when applying failed (operation::prove).
            let Member {
                view, state, via, ..
            } = &mut members[i];
            operation::settle_pending(via, view, state).await?;
            // Every node shares the passwords: the next node starts from what this one settled.
            let secrets = members[i].state.secrets.clone();
            for m in members.iter_mut() {
                m.state.secrets = secrets.clone();
            }
            applied.map_err(|e| on_node(&name, e, false))?;
            rolled.changed.push((name.clone(), action));
        }
        if let Proof::ServesCertificate { retry } = proofs[i] {
            let served = operation::served_serial(&members[i].view).await?;
            if served != members[i].state.server_info.serial {
                return Err(Error::failed(
                    format!(
                        "node {name} presents certificate {served}, not the new {}",
                        members[i].state.server_info.serial
                    ),
                    Some(format!("run `natsup verify`, then `natsup {retry}`")),
                ));
            }
        }
        if matches!(
            action,
            Action::Start | Action::Recreate | Action::Reload | Action::Files
        ) {
            let step = ui::Step::start(format!(
                "node {name}: waiting until it is back in the cluster"
            ));
            wait_in_cluster(&members[i], members)
                .await
                .map_err(|e| on_node(&name, e, false))?;
            step.done("routes to every peer, JetStream answering");
        }
    }
    Ok(())
}

fn applying(action: Action) -> &'static str {
    match action {
        Action::Start => "uploading, validating and starting the server",
        Action::Recreate => "uploading, validating and recreating the container",
        Action::Reload => "uploading, validating and reloading the server",
        _ => "uploading and validating the files",
    }
}

/// A user natsup may log in as to check a node, with JetStream allowed if any user has it.
fn checking_login(view: &Config, state: &State) -> Result<(Endpoint, Login)> {
    let (endpoint, logins) =
        nats_client::deployment_logins(view, state, None).map_err(|e| Error::failed(e, None))?;
    let login = logins
        .iter()
        .find(|l| verify::jetstream_permitted(l.permissions.as_ref()))
        .or(logins.first())
        .cloned()
        .expect("a config always has a user");
    Ok((endpoint, login))
}

/// Waits until `member` is back in the cluster: a client connected to it is told every other
/// node's client URL (nats-server sends a peer's `connect_urls` once the route to it is up),
/// and `$JS.API.INFO` answers through it (JetStream's meta group has a leader it can reach).
pub async fn wait_in_cluster(member: &Member, all: &[Member]) -> Result<()> {
    let peers: Vec<String> = all
        .iter()
        .filter(|m| m.name != member.name)
        .map(|m| host_port(&m.view.host, m.view.port))
        .collect();
    let (endpoint, login) = checking_login(&member.view, &member.state)?;
    let deadline = Instant::now() + REJOIN_TIMEOUT;
    loop {
        let last = match in_cluster(&endpoint, &login, &peers).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(Error::failed(
                format!(
                    "not back in the cluster after {}s: {last}",
                    REJOIN_TIMEOUT.as_secs()
                ),
                Some(
                    "look at `docker logs` on that node; the other nodes were not touched"
                        .to_string(),
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One look (no waiting) at whether `member` is in the cluster, as [`wait_in_cluster`] asks.
pub async fn check_in_cluster(member: &Member, all: &[Member]) -> Result<(), String> {
    let peers: Vec<String> = all
        .iter()
        .filter(|m| m.name != member.name)
        .map(|m| host_port(&m.view.host, m.view.port))
        .collect();
    let (endpoint, login) =
        checking_login(&member.view, &member.state).map_err(|e| e.to_string())?;
    in_cluster(&endpoint, &login, &peers).await
}

async fn in_cluster(endpoint: &Endpoint, login: &Login, peers: &[String]) -> Result<(), String> {
    let client = nats_client::connect(endpoint, login).await?;
    let urls = client.server_info().connect_urls;
    let missing: Vec<&String> = peers.iter().filter(|p| !urls.contains(p)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "no route yet to {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if verify::jetstream_permitted(login.permissions.as_ref()) {
        let js = async_nats::jetstream::new(client);
        tokio::time::timeout(nats_client::STEP_TIMEOUT, js.query_account())
            .await
            .map_err(|_| "JetStream did not answer".to_string())?
            .map_err(|e| format!("JetStream: {e}"))?;
        tokio::time::timeout(nats_client::STEP_TIMEOUT, streams_current(&js))
            .await
            .map_err(|_| "JetStream did not list the streams".to_string())??;
    }
    Ok(())
}

/// Every replicated stream of the account has a leader and every replica is current: the
/// node that came back has caught up, so taking another node away keeps every stream's
/// quorum.
async fn streams_current(js: &async_nats::jetstream::Context) -> Result<(), String> {
    use futures_util::StreamExt;
    let mut streams = js.streams();
    while let Some(info) = streams.next().await {
        let info = info.map_err(|e| format!("listing streams: {e}"))?;
        let Some(cluster) = &info.cluster else {
            continue;
        };
        let name = &info.config.name;
        if info.config.num_replicas > 1 && cluster.leader.is_none() {
            return Err(format!("stream {name} has no leader yet"));
        }
        if let Some(peer) = cluster.replicas.iter().find(|p| !p.current || p.offline) {
            return Err(format!(
                "stream {name}: the replica on {} is {}",
                peer.name,
                if peer.offline {
                    "offline"
                } else {
                    "catching up"
                }
            ));
        }
    }
    Ok(())
}

/// `verify` for a cluster: every node's own checks (certificate, every user's login and RTT,
/// as `verify` runs them for one server), scoped `<node>/<scope>`, then across the cluster:
/// each node routes to every other, a message published on each node arrives on every other,
/// and an R3 KV put on one node is read back through another (placing an R3 bucket is the
/// JetStream meta leader's job, so that also proves there is one).
pub async fn verify(
    members: &[Member],
    limits: &verify::Thresholds,
    depth: verify::Depth,
) -> verify::Report {
    use verify::{Check, Report, Status};
    let per_node = join_all(members.iter().map(|m| async move {
        let (endpoint, logins) = nats_client::deployment_logins(&m.view, &m.state, None)
            .expect("a node's view always gives a valid URL");
        verify::verify(&endpoint, &logins, limits, depth).await
    }))
    .await;
    let mut checks = Vec::new();
    let mut days: Option<i64> = None;
    for (m, report) in members.iter().zip(per_node) {
        if let Some(d) = report.cert_days_left {
            days = Some(days.map_or(d, |x| x.min(d)));
        }
        checks.extend(report.checks.into_iter().map(|c| Check {
            scope: format!("{}/{}", m.name, c.scope),
            ..c
        }));
    }
    checks.extend(across(members).await);
    let status = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Unknown);
    Report {
        url: members
            .iter()
            .map(|m| format!("tls://{}", host_port(&m.view.host, m.view.port)))
            .collect::<Vec<_>>()
            .join(","),
        status,
        cert_days_left: days,
        cert_serial: None,
        checks,
    }
}

fn cluster_check(
    scope: &str,
    check: &'static str,
    status: verify::Status,
    started: Option<Instant>,
    detail: impl Into<String>,
) -> verify::Check {
    verify::Check {
        scope: scope.to_string(),
        check,
        status,
        seconds: started.map(|s| s.elapsed().as_secs_f64()),
        detail: detail.into(),
    }
}

/// The checks across nodes: routes, messages between every pair, R3 KV through two nodes.
async fn across(members: &[Member]) -> Vec<verify::Check> {
    use verify::Status;
    let mut checks = Vec::new();
    let mut clients = Vec::new();
    for m in members {
        let peers: Vec<String> = members
            .iter()
            .filter(|o| o.name != m.name)
            .map(|o| host_port(&o.view.host, o.view.port))
            .collect();
        let login = checking_login(&m.view, &m.state);
        let client = match &login {
            Ok((endpoint, login)) => nats_client::connect(endpoint, login).await,
            Err(e) => Err(e.to_string()),
        };
        match client {
            Ok(client) => {
                let urls = client.server_info().connect_urls;
                let missing: Vec<&str> = peers
                    .iter()
                    .filter(|p| !urls.contains(p))
                    .map(|s| s.as_str())
                    .collect();
                checks.push(if missing.is_empty() {
                    cluster_check(
                        &m.name,
                        "routes",
                        Status::Ok,
                        None,
                        format!("routes to every other node ({})", peers.join(", ")),
                    )
                } else {
                    cluster_check(
                        &m.name,
                        "routes",
                        Status::Critical,
                        None,
                        format!("no route to {}", missing.join(", ")),
                    )
                });
                let login = login.expect("connected").1;
                clients.push(Some((client, login)));
            }
            Err(e) => {
                checks.push(cluster_check(
                    &m.name,
                    "routes",
                    Status::Critical,
                    None,
                    format!("cannot connect: {e}"),
                ));
                clients.push(None);
            }
        }
    }
    checks.push(messages_across(members, &clients).await);
    checks.extend(kv_across(members, &clients).await);
    checks
}

/// Every node subscribes to one subject; each publishes until every other node has its message.
async fn messages_across(
    members: &[Member],
    clients: &[Option<(async_nats::Client, Login)>],
) -> verify::Check {
    use futures_util::StreamExt;
    use verify::Status;
    let started = Instant::now();
    let name = "messages_across";
    let Some(Some((first, login))) = clients.first() else {
        return cluster_check("cluster", name, Status::Critical, None, "no client");
    };
    if clients.iter().any(Option::is_none) {
        return cluster_check(
            "cluster",
            name,
            Status::Critical,
            None,
            "a node could not be reached",
        );
    }
    let Some(subject) = nats_client::echo_subject(login.permissions.as_ref(), &first.new_inbox())
    else {
        return cluster_check(
            "cluster",
            name,
            Status::Ok,
            None,
            "skipped: no subject the user may both publish and subscribe to",
        );
    };
    let mut subs = Vec::new();
    for (client, _) in clients.iter().flatten() {
        match client.subscribe(subject.clone()).await {
            Ok(s) => subs.push(s),
            Err(e) => {
                return cluster_check("cluster", name, Status::Critical, None, e.to_string());
            }
        }
        let _ = client.flush().await;
    }
    let n = members.len();
    // received[i][j]: node i got node j's message.
    let mut received = vec![vec![false; n]; n];
    for (i, row) in received.iter_mut().enumerate() {
        row[i] = true;
    }
    let deadline = Instant::now() + nats_client::STEP_TIMEOUT;
    while Instant::now() < deadline && received.iter().flatten().any(|r| !r) {
        for (j, (client, _)) in clients.iter().flatten().enumerate() {
            if (0..n).any(|i| !received[i][j]) {
                let _ = client
                    .publish(subject.clone(), j.to_string().into_bytes().into())
                    .await;
                let _ = client.flush().await;
            }
        }
        // Each subscriber takes what arrives within 100 ms of its last message.
        let results = join_all(subs.iter_mut().enumerate().map(|(i, sub)| async move {
            let mut got = Vec::new();
            while let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(100), sub.next()).await
            {
                if let Some(j) = std::str::from_utf8(&msg.payload)
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                {
                    got.push(j);
                }
            }
            (i, got)
        }))
        .await;
        for (i, got) in results {
            for j in got {
                if j < n {
                    received[i][j] = true;
                }
            }
        }
    }
    let missing: Vec<String> = (0..n)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .filter(|&(i, j)| !received[i][j])
        .map(|(i, j)| format!("{} -> {}", members[j].name, members[i].name))
        .collect();
    if missing.is_empty() {
        cluster_check(
            "cluster",
            name,
            Status::Ok,
            Some(started),
            format!("a message published on each of {n} nodes arrived on every other"),
        )
    } else {
        cluster_check(
            "cluster",
            name,
            Status::Critical,
            None,
            format!("never arrived: {}", missing.join(", ")),
        )
    }
}

/// An R3 (or, with fewer nodes, R-all) KV bucket made and written through the first node, read
/// through the second, then removed.
async fn kv_across(
    members: &[Member],
    clients: &[Option<(async_nats::Client, Login)>],
) -> Vec<verify::Check> {
    use verify::Status;
    let started = Instant::now();
    let replicas = members.len().min(3);
    let (Some(Some((writer, login))), reader) = (
        clients.first(),
        clients
            .get(1)
            .and_then(Option::as_ref)
            .or(clients[0].as_ref()),
    ) else {
        return vec![cluster_check(
            "cluster",
            "kv_replicated",
            Status::Critical,
            None,
            "the first node could not be reached",
        )];
    };
    if !verify::jetstream_permitted(login.permissions.as_ref()) {
        return vec![cluster_check(
            "cluster",
            "kv_replicated",
            Status::Ok,
            None,
            "skipped: no user may use the JetStream API",
        )];
    }
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).expect("the OS random number generator failed");
    let bucket = format!("natsup_verify_r{replicas}_{}", hex::encode(suffix));
    let js = async_nats::jetstream::new(writer.clone());
    let reader_js = async_nats::jetstream::new(reader.expect("some client").0.clone());
    let result = tokio::time::timeout(nats_client::STEP_TIMEOUT * 2, async {
        // Just after the cluster formed, the meta leader may not have heard from every peer
        // yet and refuses to place replicas on it ("peer offline", 10005): asked again.
        let mut tries = 0;
        let kv = loop {
            match js
                .create_key_value(async_nats::jetstream::kv::Config {
                    bucket: bucket.clone(),
                    history: 1,
                    max_age: Duration::from_secs(60),
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
            {
                Ok(kv) => break kv,
                Err(e) if tries < 40 && e.to_string().contains("10005") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(format!("cannot create an R{replicas} KV bucket: {e}")),
            }
        };
        let value = bucket.as_bytes().to_vec();
        crate::verify::put_when_visible(&kv, "check", value.clone()).await?;
        let read = reader_js
            .get_key_value(&bucket)
            .await
            .map_err(|e| format!("the bucket is not visible through another node: {e}"))?;
        let got = read
            .get("check")
            .await
            .map_err(|e| format!("KV get through another node failed: {e}"))?;
        if got.as_deref() != Some(&value[..]) {
            return Err("the other node read something other than what was put".to_string());
        }
        let mut stream = js
            .get_stream(format!("KV_{bucket}"))
            .await
            .map_err(|e| format!("stream info: {e}"))?;
        let leader = stream
            .info()
            .await
            .map_err(|e| format!("stream info: {e}"))?
            .cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .unwrap_or_default();
        Ok::<String, String>(leader)
    })
    .await
    .unwrap_or_else(|_| Err("JetStream did not answer within 10 s".to_string()));
    let _ = js.delete_key_value(&bucket).await;
    let (first, second) = (
        &members[0].name,
        &members.get(1).unwrap_or(&members[0]).name,
    );
    match result {
        Ok(leader) => vec![
            cluster_check(
                "cluster",
                "kv_replicated",
                Status::Ok,
                Some(started),
                format!("an R{replicas} KV put through {first} was read back through {second}"),
            ),
            cluster_check(
                "cluster",
                "meta_leader",
                if leader.is_empty() {
                    Status::Warning
                } else {
                    Status::Ok
                },
                None,
                format!(
                    "the JetStream meta leader placed an R{replicas} bucket; its stream leader is {}",
                    if leader.is_empty() {
                        "unknown"
                    } else {
                        &leader
                    }
                ),
            ),
        ],
        Err(e) => vec![
            cluster_check("cluster", "kv_replicated", Status::Critical, None, &e),
            cluster_check(
                "cluster",
                "meta_leader",
                Status::Critical,
                None,
                format!("an R{replicas} bucket could not be placed: {e}"),
            ),
        ],
    }
}
