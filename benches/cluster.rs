//! A three-node cluster against one server, and what its clients see, in one run (issue 12's
//! benchmark, with issue 16's floor). Run it with `./scripts/bench.sh --cluster`.
//!
//! Three sshd on 127.0.0.21, .22 and .23 and three `network: host` Compose projects
//! (natsup-dev-support's `cluster::Cluster`, as `tests/e2e_cluster.rs` uses it); a fourth sshd on
//! 127.0.0.21 with its own Compose project for the one-node deployment. Then:
//! 1. bootstrap, BOOTSTRAP_RUNS times each, interleaved (the order rotating every run); the
//!    median and the worst run of each, and their ratios:
//!    - the floor's native part, the cluster's own formation: three native nats-server
//!      processes (NATSUP_TEST_NATS_SERVER) started with the files `natsup render` makes for a
//!      3-node cluster (TLS and the route login; only the paths changed), timed from the first
//!      start until an R3 KV bucket is placed: once JetStream answers at all (account info,
//!      asked every 100 ms: before a meta leader exists no request is ever answered), the
//!      bucket is asked for, and asked again only while JetStream answers 10005 (no peers:
//!      the meta leader has not heard from every node yet);
//!    - a fresh 3-node `natsup up` and a fresh 1-node `natsup up` (each including the verify
//!      `up` ends with);
//! 2. a rolling `renew-cert --force` across the 3 nodes, RUNS times, with CROWD clients connected
//!    (spread over the four users, each holding the three URLs): the disconnects the client
//!    library reports, and a prober of matchmaker connecting (three URLs, async-nats shuffles
//!    them) in a loop during the operation: its slowest connect and its failures;
//! 3. RUNS times: a client holding the three URLs publishes every 20 ms (each publish flushed,
//!    2 s bound); the container of the node its connection is on is `docker kill`ed; the time
//!    from running `docker kill` until a publish succeeds with the client on another node (the
//!    kill itself, ~50 ms, included: the client is often on another node before it returns),
//!    and the publishes that failed from the kill until then. `natsup up` brings the node back before the next run.
//!
//! Every wait is bounded; everything listens on 127.0.0.x; the support guards remove what was
//! started by pid and container id.

mod harness;

use natsup_dev_support as support;

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{
    CreateKeyValueError, CreateStreamError, CreateStreamErrorKind,
};
use harness::{median, ms, ratio};
use support::cluster::{ADDRS, Cluster, connect_all};
use support::workspace::{Login, Workspace, text};
use support::{NatsServer, Sshd, free_port, nats_server_check_config};

const USERS: [&str; 4] = ["matchmaker", "matchmaker_httpd", "gameserver", "webhook"];
/// Runs of each bootstrap (the median and the worst are reported).
const BOOTSTRAP_RUNS: usize = 5;
/// Runs of each later measurement (the median is reported).
const RUNS: usize = 3;
/// The longest the native servers may take to place an R3 bucket.
const FORMATION_LIMIT: Duration = Duration::from_secs(60);
/// Clients held connected through the rolling renew-cert.
const CROWD: usize = 200;
/// The longest any natsup command may take before the benchmark gives up on it.
const NATSUP_LIMIT: Duration = Duration::from_secs(300);
/// The longest wait for a publish to succeed after a node is killed.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);

/// `natsup ARGS` in `ws`, killed (by pid) if it outlives NATSUP_LIMIT; panics unless it
/// succeeds. Returns its wall time and output.
fn natsup(ws: &Workspace, args: &[&str]) -> (Duration, Output) {
    let (took, out) = natsup_run(ws, args);
    assert!(
        out.status.success(),
        "natsup {args:?} failed ({}):\n{}",
        out.status,
        text(&out)
    );
    (took, out)
}

/// `natsup ARGS` in `ws`, killed (by pid) if it outlives NATSUP_LIMIT; its wall time and
/// output, whether it succeeded or not.
fn natsup_run(ws: &Workspace, args: &[&str]) -> (Duration, Output) {
    ws.run_within(args, NATSUP_LIMIT)
}

/// A fresh 1-node deployment on 127.0.0.21 (its own sshd, Compose project and port).
fn single(sshd: &Sshd) -> Workspace {
    let ws = Workspace::new("cb1");
    ws.init_ssh("cb1", sshd);
    let yaml = ws.config();
    assert!(
        yaml.contains("127.0.0.1"),
        "natsup.yaml has no 127.0.0.1:\n{yaml}"
    );
    ws.set_config(&yaml.replace("127.0.0.1", ADDRS[0]));
    ws
}

struct Renew {
    wall: Duration,
    disconnects: usize,
    slowest: Duration,
    probes: usize,
    failed: usize,
}

/// One rolling renew-cert with `crowd` connected and a prober connecting in a loop.
fn renew(rt: &tokio::runtime::Runtime, cl: &Cluster, logins: &[Login]) -> Renew {
    let disconnects = Arc::new(AtomicUsize::new(0));
    let crowd = rt.block_on(async {
        use futures_util::StreamExt;
        // 20 at a time: 200 TLS handshakes at once on two shared cores measure this machine.
        futures_util::stream::iter(
            (0..CROWD)
                .map(|i| connect_all(&logins[i % logins.len()], cl.urls(), disconnects.clone())),
        )
        .buffer_unordered(20)
        .collect::<Vec<_>>()
        .await
    });
    let stop = Arc::new(AtomicBool::new(false));
    let prober = rt.spawn({
        let (login, urls, stop) = (logins[0].clone(), cl.urls(), stop.clone());
        async move {
            let (mut slowest, mut probes, mut failed) = (Duration::ZERO, 0, 0);
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                let ok = match tokio::time::timeout(
                    Duration::from_secs(10),
                    login.options().connect(urls.clone()),
                )
                .await
                {
                    Ok(Ok(c)) => tokio::time::timeout(Duration::from_secs(5), c.flush())
                        .await
                        .is_ok_and(|r| r.is_ok()),
                    _ => false,
                };
                probes += 1;
                if ok {
                    slowest = slowest.max(t.elapsed());
                } else {
                    failed += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (slowest, probes, failed)
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let (wall, _) = natsup(&cl.ws, &["renew-cert", "--force"]);
    // Let reconnects (if any) happen and be counted.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    let (slowest, probes, failed) = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), prober)
            .await
            .expect("the prober stops within 20 s")
            .unwrap()
    });
    drop(crowd);
    Renew {
        wall,
        disconnects: disconnects.load(Ordering::SeqCst),
        slowest,
        probes,
        failed,
    }
}

struct Failover {
    node: String,
    back_on: String,
    first_ok: Duration,
    failed: usize,
    /// How long `docker kill` itself took.
    kill_took: Duration,
}

/// A client on the three URLs publishing every 20 ms; its node's container killed.
fn failover(rt: &tokio::runtime::Runtime, cl: &Cluster, login: &Login) -> Failover {
    let client = rt.block_on(connect_all(login, cl.urls(), Arc::new(AtomicUsize::new(0))));
    let node = client.server_info().server_name.clone();
    let index = ["n1", "n2", "n3"]
        .iter()
        .position(|n| *n == node)
        .unwrap_or_else(|| panic!("the client is on {node:?}, not a node of the cluster"));
    let stop = Arc::new(AtomicBool::new(false));
    // (when each publish finished, whether it got through, the node the client was on then)
    let publisher = rt.spawn({
        let (client, stop) = (client.clone(), stop.clone());
        async move {
            let mut attempts = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let sent = client.publish("game.tick", "t".into()).await.is_ok()
                    && tokio::time::timeout(Duration::from_secs(2), client.flush())
                        .await
                        .is_ok_and(|r| r.is_ok());
                attempts.push((Instant::now(), sent, client.server_info().server_name));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            attempts
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let container = cl.projects[index].container_id();
    let kill_sent = Instant::now();
    support::run(Command::new("timeout").args(["30", "docker", "kill", &container]));
    // `docker kill` has returned: the container is dead.
    let killed = Instant::now();
    let deadline = killed + FAILOVER_LIMIT;
    // Poll what the publisher recorded by asking the client: once a flush succeeds on another
    // node, the failover is over.
    while Instant::now() < deadline {
        let back = client.server_info().server_name != node
            && rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(2), client.flush())
                    .await
                    .is_ok_and(|r| r.is_ok())
            });
        if back {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let attempts = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), publisher)
            .await
            .expect("the publisher stops within 10 s")
            .unwrap()
    });
    // The first publish that got through on another node, and the failures since the kill was
    // sent until then.
    let after: Vec<_> = attempts
        .iter()
        .filter(|(at, _, _)| *at > kill_sent)
        .collect();
    let first = after
        .iter()
        .position(|(_, ok, on)| *ok && *on != node)
        .unwrap_or_else(|| panic!("no publish succeeded within {FAILOVER_LIMIT:?} of the kill"));
    let first_ok = after[first].0 - kill_sent;
    let failed = after[..first].iter().filter(|(_, ok, _)| !*ok).count();
    let back_on = client.server_info().server_name.clone();
    assert_ne!(back_on, node, "the client is still on the killed node");
    drop(client);
    // The killed node back, and the cluster whole again, before the next run.
    let (_, out) = natsup(&cl.ws, &["up"]);
    let up = text(&out);
    assert!(
        up.contains(&format!("{node} started")) || up.contains(&format!("{node} recreated")),
        "{up}"
    );
    Failover {
        node,
        back_on,
        first_ok,
        failed,
        kill_took: killed - kill_sent,
    }
}

/// The JetStream API error code behind a failed KV bucket creation, if the server answered one
/// (a bucket is a stream: its creation fails as the stream's).
fn jetstream_code(e: &CreateKeyValueError) -> Option<ErrorCode> {
    let stream = std::error::Error::source(e)?.downcast_ref::<CreateStreamError>()?;
    match stream.kind() {
        CreateStreamErrorKind::JetStream(e) => Some(e.error_code()),
        _ => None,
    }
}

/// The cluster's own formation, natively: the files `natsup render` makes for a fresh 3-node
/// cluster on 127.0.0.21-23 (TLS for clients and routes, the route login), with only the
/// paths changed to this machine's; three nats-server processes started from them; the time
/// from the first start until a client (holding the three URLs) has an R3 KV bucket placed.
/// Until a server listens, the client's connect fails and is tried again; until JetStream
/// answers, account info is asked again; the bucket is asked for again only on JetStream's
/// 10005 (no peers: the meta leader has not heard from every node yet). Anything else is a
/// failed run, reported with why, the servers' logs on stderr.
fn native_formation(rt: &tokio::runtime::Runtime) -> Outcome {
    let ws = Workspace::new("nf");
    let (port, route) = (free_port(), free_port());
    let nodes: String = (0..3)
        .map(|i| {
            format!(
                "- name: n{n}\n  host: {a}\n  ssh: root@{a}\n  bind: {a}\n",
                n = i + 1,
                a = ADDRS[i]
            )
        })
        .collect();
    ws.set_config(&format!(
        "name: nf\nport: {port}\nnetwork: host\ncluster:\n  port: {route}\nnodes:\n{nodes}"
    ));
    natsup(&ws, &["render"]);
    let confs: Vec<_> = (1..=3)
        .map(|n| {
            let dir = ws.path().join(format!("natsup-out/n{n}/nats-config"));
            let store = ws.path().join(format!("store-n{n}"));
            let conf = std::fs::read_to_string(dir.join("nats-server.conf")).unwrap_or_else(|e| {
                panic!("natsup render wrote no n{n}/nats-config/nats-server.conf: {e}")
            });
            // The container's paths (natsup's render.rs: files in /config, JetStream in /data),
            // as this machine has them.
            let local = conf
                .replace("\"/config/", &format!("\"{}/", dir.display()))
                .replace("\"/data\"", &format!("\"{}\"", store.display()));
            assert!(
                !local.contains("\"/config") && !local.contains("\"/data"),
                "a container path is left in n{n}'s config:\n{local}"
            );
            let path = ws.path().join(format!("n{n}.conf"));
            std::fs::write(&path, local).expect("write the native config");
            nats_server_check_config(&path)
                .unwrap_or_else(|e| panic!("nats-server -t refused n{n}'s config:\n{e}"));
            path
        })
        .collect();
    let login = ws.login(USERS[0]);
    let urls: Vec<async_nats::ServerAddr> = ADDRS
        .iter()
        .map(|a| format!("tls://{a}:{port}").parse().unwrap())
        .collect();

    let started = Instant::now();
    let servers: Vec<NatsServer> = confs.iter().map(|c| NatsServer::spawn(c)).collect();
    let logs = |servers: &[NatsServer]| {
        servers
            .iter()
            .enumerate()
            .map(|(i, s)| format!("n{}:\n{}", i + 1, s.log()))
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let placed = rt.block_on(async {
        let deadline = started + FORMATION_LIMIT;
        let client = loop {
            match tokio::time::timeout(
                Duration::from_secs(2),
                login.options().connect(urls.clone()),
            )
            .await
            {
                Ok(Ok(client)) => break client,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                other => return Err(format!("no server took a client: {other:?}")),
            }
        };
        let connected = started.elapsed();
        let js = async_nats::jetstream::new(client.clone());
        // Until the cluster has a JetStream meta leader, no server answers the JetStream API,
        // and a request sent then is never answered, not even once the leader is elected
        // (seen here: account info asked 0.05 s after the start, the leader elected at
        // 0.2-0.3 s, no answer in 10 s). So account info is asked every 100 ms (a round trip
        // here takes a few ms; the wait overstates the formation by at most that) until one
        // answers; only then is the bucket asked for.
        let answering = loop {
            match tokio::time::timeout(Duration::from_millis(100), js.query_account()).await {
                Ok(Ok(_)) => break started.elapsed(),
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(_) => {}
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "JetStream did not answer within {FORMATION_LIMIT:?} (client on {})",
                    client.server_info().server_name
                ));
            }
        };
        let mut no_peers = 0;
        loop {
            let sent = started.elapsed();
            let create = js.create_key_value(async_nats::jetstream::kv::Config {
                bucket: "formation".into(),
                num_replicas: 3,
                ..Default::default()
            });
            // Longer than the two requests it makes (account info, stream create), each bound
            // by async-nats' 5 s, so their own errors show.
            match tokio::time::timeout(Duration::from_secs(15), create).await {
                Ok(Ok(_)) => return Ok((started.elapsed(), answering, no_peers)),
                Ok(Err(e))
                    if jetstream_code(&e) == Some(ErrorCode::CLUSTER_NO_PEERS)
                        && Instant::now() < deadline =>
                {
                    no_peers += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => {
                    let what = match other {
                        Ok(Err(e)) => format!("{e} (after {no_peers} answers of 10005)"),
                        _ => "no answer in 15 s".to_string(),
                    };
                    // What still answers, to tell a stuck client from a stuck cluster.
                    let account = tokio::time::timeout(Duration::from_secs(6), js.query_account())
                        .await
                        .map(|r| r.map(|_| "answers").map_err(|e| e.to_string()));
                    let stream = tokio::time::timeout(
                        Duration::from_secs(6),
                        js.get_stream("KV_formation"),
                    )
                    .await
                    .map(|r| {
                        r.map(|s| format!("{:?}", s.cached_info().cluster))
                            .map_err(|e| e.to_string())
                    });
                    return Err(format!(
                        "the R3 bucket, through {} (connected {:.2} s after the start, JetStream answering at {:.2} s, asked at {:.2} s), at {:.2} s: {what}; then account info: {account:?}; stream KV_formation: {stream:?}",
                        client.server_info().server_name,
                        connected.as_secs_f64(),
                        answering.as_secs_f64(),
                        sent.as_secs_f64(),
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
        }
    });
    match placed {
        Ok((took, answering, no_peers)) => {
            eprintln!(
                "  native formation: JetStream answering after {}, the bucket placed after {no_peers} answers of 10005",
                ms(answering)
            );
            Ok(took)
        }
        Err(e) => {
            eprintln!("native formation failed: {e}\n{}", logs(&servers));
            Err(e)
        }
    }
}

/// A bootstrap's wall time, or why it failed.
type Outcome = Result<Duration, String>;

/// The last line of a failed command's output that names an error (or its last line).
fn why(out: &Output) -> String {
    let text = text(out);
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("CRITICAL") || l.to_lowercase().contains("error"))
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim()
        .to_string();
    format!("exit {}: {line}", out.status.code().unwrap_or(-1))
}

fn main() {
    natsup::install_crypto_provider();
    let started = Instant::now();
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    // NATSUP_BENCH_FORMATION_ONLY=N: only N native formations, each one's time or failure
    // (a quick look at the cluster's own formation, without natsup or Docker).
    if let Some(runs) = std::env::var("NATSUP_BENCH_FORMATION_ONLY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let outcomes: Vec<Outcome> = (0..runs.min(100))
            .map(|run| {
                let outcome = native_formation(&rt);
                eprintln!("native formation {}: {}", run + 1, shown(&outcome));
                outcome
            })
            .collect();
        let placed = ok(&outcomes);
        let (median_, worst_) = if placed.is_empty() {
            ("—".to_string(), "—".to_string())
        } else {
            (ms(median(placed.clone())), ms(worst(&placed)))
        };
        println!(
            "native formation, {} runs: {} placed an R3 bucket (median {median_}, worst {worst_}), {} failed",
            outcomes.len(),
            placed.len(),
            outcomes.len() - placed.len()
        );
        return;
    }
    let sshd_single = Sshd::start_at(ADDRS[0], "");

    // 1. Bootstrap, interleaved, the order rotating; the last cluster that came up stays up
    //    for the rest. A failed bootstrap is a result (issue 16's flake), not the end.
    let (mut native, mut three, mut one): (Vec<Outcome>, Vec<Outcome>, Vec<Outcome>) =
        Default::default();
    let mut cluster = None;
    for run in 0..BOOTSTRAP_RUNS {
        eprintln!("bootstrap run {}", run + 1);
        // Drop the previous cluster first: one cluster's containers at a time.
        drop(cluster.take());
        for step in 0..3 {
            match (run + step) % 3 {
                0 => {
                    let outcome = native_formation(&rt);
                    eprintln!("  native formation: {}", shown(&outcome));
                    native.push(outcome);
                }
                1 => {
                    let cl = Cluster::named("cb");
                    cl.configure();
                    let (took, out) = natsup_run(&cl.ws, &["up"]);
                    // Where the time went (natsup's timed steps), on stderr.
                    for line in text(&out).lines().filter(|l| l.trim_end().ends_with("s)")) {
                        eprintln!("  3-node up: {line}");
                    }
                    let outcome = if !out.status.success() {
                        eprintln!("3-node up failed:\n{}", text(&out));
                        Err(why(&out))
                    } else {
                        assert!(
                            text(&out).contains("starting 3 nodes at once"),
                            "{}",
                            text(&out)
                        );
                        cluster = Some(cl);
                        Ok(took)
                    };
                    eprintln!("  3-node up: {}", shown(&outcome));
                    three.push(outcome);
                }
                _ => {
                    let ws = single(&sshd_single);
                    let (took, out) = natsup_run(&ws, &["up"]);
                    let outcome = if out.status.success() {
                        Ok(took)
                    } else {
                        eprintln!("1-node up failed:\n{}", text(&out));
                        Err(why(&out))
                    };
                    eprintln!("  1-node up: {}", shown(&outcome));
                    one.push(outcome);
                }
            }
        }
    }
    // The last run's cluster, or (if that bootstrap failed) another one, untimed.
    let cl = cluster.unwrap_or_else(|| {
        let cl = Cluster::named("cb");
        cl.configure();
        natsup(&cl.ws, &["up"]);
        cl
    });
    natsup(&cl.ws, &["verify"]);
    let logins: Vec<Login> = USERS.iter().map(|u| cl.ws.login(u)).collect();

    // 2. Rolling renew-cert with the crowd connected.
    let renews: Vec<Renew> = (0..RUNS)
        .map(|run| {
            eprintln!("renew-cert run {}", run + 1);
            renew(&rt, &cl, &logins)
        })
        .collect();

    // 3. A client's node killed.
    let gameserver = &logins[2];
    let failovers: Vec<Failover> = (0..RUNS)
        .map(|run| {
            eprintln!("failover run {}", run + 1);
            failover(&rt, &cl, gameserver)
        })
        .collect();
    natsup(&cl.ws, &["verify"]);

    let (m3, m1) = (median(ok(&three)), median(ok(&one)));
    let list = |v: &[Duration]| v.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ");
    let outcomes = |v: &[Outcome]| v.iter().map(shown).collect::<Vec<_>>().join(", ");
    println!(
        "### A 3-node cluster against one server (bootstrap: {BOOTSTRAP_RUNS} runs each, the rest: {RUNS}; interleaved)\n"
    );
    println!("| figure | measured |");
    println!("|---|---|");
    println!(
        "| bootstrap: 3-node `up` / 1-node `up` (median; each `up` includes its verify) | {} / {} = {} (runs: {} / {}) |",
        ms(m3),
        ms(m1),
        ratio(m3, m1),
        outcomes(&three),
        outcomes(&one),
    );
    println!(
        "| rolling `renew-cert --force`, {CROWD} clients connected (4 users, three URLs each): wall time (median) | {} (runs: {}) |",
        ms(median(renews.iter().map(|r| r.wall).collect())),
        list(&renews.iter().map(|r| r.wall).collect::<Vec<_>>()),
    );
    println!(
        "| … disconnects among the {CROWD}, per run | {} |",
        renews
            .iter()
            .map(|r| r.disconnects.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
    println!(
        "| … slowest new connect of a prober connecting in a loop, per run (failed of attempts) | {} |",
        renews
            .iter()
            .map(|r| format!("{} ({} of {})", ms(r.slowest), r.failed, r.probes))
            .collect::<Vec<_>>()
            .join(", "),
    );
    println!(
        "| client's node killed: from running `docker kill` to the first successful publish through another node (median) | {} (runs: {}) |",
        ms(median(failovers.iter().map(|f| f.first_ok).collect())),
        failovers
            .iter()
            .map(|f| format!(
                "{} killed → {} on {} (the kill itself {})",
                f.node,
                ms(f.first_ok),
                f.back_on,
                ms(f.kill_took)
            ))
            .collect::<Vec<_>>()
            .join(", "),
    );
    println!(
        "| … publishes (every 20 ms, 2 s flush bound) that failed from the kill until then, per run | {} |",
        failovers
            .iter()
            .map(|f| f.failed.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
    floor_report(&native, &three, &one);
    println!(
        "\nWhole benchmark: {:.0} s.",
        started.elapsed().as_secs_f64()
    );
}

/// The slowest of some runs.
fn worst(runs: &[Duration]) -> Duration {
    runs.iter().copied().max().unwrap_or_default()
}

/// The runs that succeeded.
fn ok(outcomes: &[Outcome]) -> Vec<Duration> {
    outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().copied())
        .collect()
}

/// A run as the report shows it.
fn shown(outcome: &Outcome) -> String {
    match outcome {
        Ok(took) => ms(*took),
        Err(_) => "failed".into(),
    }
}

/// A fresh 3-node bootstrap against its floor: one node's bootstrap plus the cluster's own
/// formation (issue 16), median and worst run of each, side by side. Medians and worst runs
/// are of the runs that succeeded; the failures are counted, with why.
fn floor_report(native: &[Outcome], three: &[Outcome], one: &[Outcome]) {
    let list = |v: &[Outcome]| v.iter().map(shown).collect::<Vec<_>>().join(", ");
    let failed = |v: &[Outcome]| v.iter().filter(|o| o.is_err()).count();
    let (n, t, o) = (ok(native), ok(three), ok(one));
    if n.is_empty() || t.is_empty() || o.is_empty() {
        println!(
            "\nNo floor: some bootstrap never succeeded (native: {}; 3-node: {}; 1-node: {}).",
            list(native),
            list(three),
            list(one)
        );
    } else {
        let (mn, m3, m1) = (median(n.clone()), median(t.clone()), median(o.clone()));
        let (wn, w3, w1) = (worst(&n), worst(&t), worst(&o));
        println!(
            "\n#### Fresh 3-node bootstrap against its floor: one node's bootstrap + the cluster's own formation ({} runs each, interleaved)\n",
            native.len()
        );
        println!("| | median | worst run | ÷ 1-node `up` (median / worst) | failed | runs |");
        println!("|---|---|---|---|---|---|");
        println!(
            "| native formation: 3 nats-server processes from natsup's rendered files, start → first R3 KV placement | {} | {} | {} / {} | {} | {} |",
            ms(mn),
            ms(wn),
            ratio(mn, m1),
            ratio(wn, w1),
            failed(native),
            list(native)
        );
        println!(
            "| natsup: fresh 1-node `up` (its verify included) | {} | {} | 1.00× / 1.00× | {} | {} |",
            ms(m1),
            ms(w1),
            failed(one),
            list(one)
        );
        println!(
            "| floor: 1-node `up` + native formation | {} | {} | {} / {} | | |",
            ms(m1 + mn),
            ms(w1 + wn),
            ratio(m1 + mn, m1),
            ratio(w1 + wn, w1),
        );
        println!(
            "| natsup: fresh 3-node `up` (its verify included) | {} | {} | {} / {} | {} | {} |",
            ms(m3),
            ms(w3),
            ratio(m3, m1),
            ratio(w3, w1),
            failed(three),
            list(three)
        );
        println!(
            "\n3-node `up` over its floor: {} at the median, {} for the worst runs; over the native formation alone: {} / {}.",
            ratio(m3, m1 + mn),
            ratio(w3, w1 + wn),
            ratio(m3, mn),
            ratio(w3, wn),
        );
    }
    for (what, runs) in [
        ("native formation", native),
        ("3-node `up`", three),
        ("1-node `up`", one),
    ] {
        for (i, outcome) in runs.iter().enumerate() {
            if let Err(e) = outcome {
                println!("- {what}, run {}, failed: {}", i + 1, e.replace('|', "/"));
            }
        }
    }
}
