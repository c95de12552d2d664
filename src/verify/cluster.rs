//! The checks across the nodes of a cluster: whether a node is in the cluster (its routes to
//! every peer are up, JetStream answers through it, every replicated stream has a leader and
//! current replicas), which is both the health gate and the wait after a node changed; and
//! `verify`'s cross-node checks (messages between every pair, an R3 KV put read back through
//! another node).

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::config::{Config, Node};
use crate::error::{Error, Result};
use crate::nats_client::{self, Endpoint, Login};
use crate::state::State;
use crate::verify;

/// How long a changed node has to rejoin the cluster before the roll stops.
pub const REJOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A user natsup may log in as to check node `i`, with JetStream allowed if any user has it.
fn checking_login(config: &Config, state: &State, i: usize) -> Result<(Endpoint, Login)> {
    let (endpoint, logins) = nats_client::deployment_logins(config, i, state, None)
        .map_err(|e| Error::failed(e, None))?;
    let login = logins
        .iter()
        .find(|l| verify::jetstream_permitted(l.permissions.as_ref()))
        .or(logins.first())
        .cloned()
        .expect("a config always has a user");
    Ok((endpoint, login))
}

/// The client address of every node but `i`: what a client of node `i` must be told about
/// once its routes are up.
fn peers(config: &Config, i: usize) -> Vec<String> {
    config
        .nodes()
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, n)| n.addr())
        .collect()
}

/// Waits until node `i` is back in the cluster: a client connected to it is told every other
/// node's client URL (nats-server sends a peer's `connect_urls` once the route to it is up),
/// and `$JS.API.INFO` answers through it (JetStream's meta group has a leader it can reach).
pub async fn wait_in_cluster(config: &Config, state: &State, i: usize) -> Result<()> {
    wait_in_cluster_within(config, state, i, REJOIN_TIMEOUT).await
}

/// [`wait_in_cluster`], giving up after `limit`.
pub async fn wait_in_cluster_within(
    config: &Config,
    state: &State,
    i: usize,
    limit: Duration,
) -> Result<()> {
    let peers = peers(config, i);
    let (endpoint, login) = checking_login(config, state, i)?;
    let deadline = Instant::now() + limit;
    loop {
        let last = match in_cluster(&endpoint, &login, &peers).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(Error::failed(
                format!("not back in the cluster after {}s: {last}", limit.as_secs()),
                Some(
                    "look at `docker logs` on that node; the other nodes were not touched"
                        .to_string(),
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How long one placement probe waits for its create to be answered before another is tried.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Waits until a stream placed on node `i` alone (by its server tag, [`crate::render::node_tag`])
/// is created and answered, then removes every probe stream it made.
///
/// In a new cluster the node that starts last joins the JetStream meta group after the others
/// elected its leader, and catches up from the leader's snapshot (nats-server 2.10 compacts the
/// meta log on every added peer and every removed stream). The leader already places streams on
/// that node meanwhile; a stream assignment that reaches a node inside a snapshot is marked as
/// answered there (`setStreamAssignmentRecovering` in nats-server's jetstream_cluster.go), so
/// the node creates the stream, leads it, and never answers its create. Seen here: of 110 fresh
/// starts of three nats-servers 0.3-0.7 s apart followed by `verify`'s twelve KV buckets at
/// once, 12 left every bucket placed on the last node unanswered ("JetStream did not answer
/// within 10 s"), while routes were up and `$JS.API.INFO` answered, since the meta leader
/// answers that for every node. A create placed on the node and answered by it shows the node
/// is past that catch-up.
pub async fn wait_answers_placement(
    config: &Config,
    state: &State,
    i: usize,
    limit: Duration,
) -> Result<()> {
    let (endpoint, login) = checking_login(config, state, i)?;
    if !verify::jetstream_permitted(login.permissions.as_ref()) {
        return Ok(());
    }
    let node = &config.nodes()[i].name;
    let deadline = Instant::now() + limit;
    let mut probes = Vec::new();
    let result = loop {
        let last = match answers_placement(&endpoint, &login, node, &mut probes).await {
            Ok(()) => break Ok(()),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            break Err(Error::failed(
                format!(
                    "no stream placed on it was answered within {}s: {last}",
                    limit.as_secs()
                ),
                Some(
                    "look at `docker logs` on that node (\"JetStream is not current with the meta leader\")"
                        .to_string(),
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    remove_probes(&endpoint, &login, &probes).await;
    result
}

/// Creates one R1 stream placed on `node` by its tag; `probes` gets its name first, since a
/// create that is not answered may still have made the stream.
async fn answers_placement(
    endpoint: &Endpoint,
    login: &Login,
    node: &str,
    probes: &mut Vec<String>,
) -> Result<(), String> {
    use async_nats::jetstream::stream;
    let client = nats_client::connect(endpoint, login).await?;
    let mut js = async_nats::jetstream::new(client);
    js.set_timeout(PROBE_TIMEOUT);
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).expect("the OS random number generator failed");
    let name = format!("natsup_probe_{node}_{}", hex::encode(suffix));
    probes.push(name.clone());
    js.create_stream(stream::Config {
        name,
        storage: stream::StorageType::Memory,
        num_replicas: 1,
        placement: Some(stream::Placement {
            cluster: None,
            tags: vec![crate::render::node_tag(node)],
        }),
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|e| format!("a stream placed on it: {e}"))
}

/// Deletes the probe streams (best effort: one that was never made is "not found").
async fn remove_probes(endpoint: &Endpoint, login: &Login, probes: &[String]) {
    let Ok(client) = nats_client::connect(endpoint, login).await else {
        return;
    };
    let js = async_nats::jetstream::new(client);
    for name in probes {
        let _ = tokio::time::timeout(nats_client::STEP_TIMEOUT, js.delete_stream(name)).await;
    }
}

/// One look (no waiting) at whether node `i` is in the cluster, as [`wait_in_cluster`] asks:
/// the health the gate asks of every other node before one is taken away.
pub async fn check_in_cluster(config: &Config, state: &State, i: usize) -> Result<(), String> {
    let (endpoint, login) = checking_login(config, state, i).map_err(|e| e.to_string())?;
    in_cluster(&endpoint, &login, &peers(config, i)).await
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
    config: &Config,
    state: &State,
    per_node: Vec<verify::Report>,
) -> verify::Report {
    use verify::{Check, Report, Status};
    let mut checks = Vec::new();
    let mut days: Option<i64> = None;
    for (node, report) in config.nodes().iter().zip(per_node) {
        if let Some(d) = report.cert_days_left {
            days = Some(days.map_or(d, |x| x.min(d)));
        }
        checks.extend(report.checks.into_iter().map(|c| Check {
            scope: format!("{}/{}", node.name, c.scope),
            ..c
        }));
    }
    checks.extend(across(config, state).await);
    let status = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Unknown);
    Report {
        url: config.client_urls().join(","),
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
async fn across(config: &Config, state: &State) -> Vec<verify::Check> {
    use verify::Status;
    let members = config.nodes();
    let mut checks = Vec::new();
    let mut clients = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let peers = peers(config, i);
        let login = checking_login(config, state, i);
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
    checks.push(meta_leader(config, state).await);
    checks
}

/// The JetStream meta leader, read from every node's own JSZ (`meta_cluster.leader`) as the
/// system user: OK when every node names the same leader, and it is a node of the config.
/// A follower learns a new leader from its first append (a leader elected a moment ago is not
/// yet known to all), so an answer short of that is asked again for up to 5 s.
async fn meta_leader(config: &Config, state: &State) -> verify::Check {
    let started = Instant::now();
    loop {
        let check = meta_leader_once(config, state, started).await;
        if check.status == verify::Status::Ok || started.elapsed() > Duration::from_secs(5) {
            return check;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn meta_leader_once(config: &Config, state: &State, started: Instant) -> verify::Check {
    use verify::Status;
    let answers = join_all(
        (0..config.nodes().len()).map(|i| crate::system_account::node_figures(config, state, i)),
    )
    .await;
    let mut leaders: Vec<(String, Option<String>)> = Vec::new();
    let mut failed = Vec::new();
    for (node, answer) in config.nodes().iter().zip(answers) {
        match answer {
            Ok(f) => leaders.push((node.name.clone(), f.meta.and_then(|m| m.leader))),
            Err(e) => failed.push(format!("{}: {e}", node.name)),
        }
    }
    let check = |status, detail: String| {
        cluster_check("cluster", "meta_leader", status, Some(started), detail)
    };
    if !failed.is_empty() {
        // A server that runs a config from before natsup's system account refuses its user:
        // the next `up` gives it the account, so that is a warning, not a failure.
        let not_yet = failed
            .iter()
            .all(|e| nats_client::is_auth_error(e) || e.contains("no system user"));
        return check(
            if not_yet {
                Status::Warning
            } else {
                Status::Critical
            },
            if not_yet {
                format!(
                    "the meta leader could not be read: the servers do not take natsup's \
                     system user yet (`natsup up` gives it to them): {}",
                    failed.join("; ")
                )
            } else {
                format!("the meta leader could not be read: {}", failed.join("; "))
            },
        );
    }
    let none: Vec<&str> = leaders
        .iter()
        .filter(|(_, l)| l.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    if !none.is_empty() {
        return check(
            Status::Critical,
            format!("no JetStream meta leader known to {}", none.join(", ")),
        );
    }
    let named: std::collections::BTreeSet<&str> =
        leaders.iter().filter_map(|(_, l)| l.as_deref()).collect();
    let leader = named.iter().next().copied().unwrap_or_default();
    if named.len() > 1 {
        return check(
            Status::Critical,
            format!(
                "the nodes disagree on the JetStream meta leader: {}",
                leaders
                    .iter()
                    .map(|(n, l)| format!("{n} names {}", l.as_deref().unwrap_or("none")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if config.nodes().iter().all(|n| n.name != leader) {
        return check(
            Status::Critical,
            format!("the JetStream meta leader is {leader}, which is not a node of the config"),
        );
    }
    check(
        Status::Ok,
        format!("the JetStream meta leader is {leader} (every node's JSZ names it)"),
    )
}

/// Every node subscribes to one subject; each publishes until every other node has its message.
async fn messages_across(
    members: &[Node],
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
    members: &[Node],
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
        // yet and refuses to place replicas on it: asked again.
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
                Err(e)
                    if tries < 40
                        && crate::jetstream::error_code(&e)
                            == Some(crate::jetstream::NO_PEERS_FOR_PLACEMENT) =>
                {
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
        Ok(leader) => vec![cluster_check(
            "cluster",
            "kv_replicated",
            Status::Ok,
            Some(started),
            format!(
                "an R{replicas} KV put through {first} was read back through {second}; its \
                 stream leader is {}",
                if leader.is_empty() {
                    "unknown"
                } else {
                    &leader
                }
            ),
        )],
        Err(e) => vec![cluster_check(
            "cluster",
            "kv_replicated",
            Status::Critical,
            None,
            &e,
        )],
    }
}
