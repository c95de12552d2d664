//! A three-node cluster against one server, and what its clients see, in one run (issue 12's
//! benchmark). Run it with `./scripts/bench.sh --cluster`.
//!
//! Three sshd on 127.0.0.21, .22 and .23 and three `network: host` Compose projects
//! (natsup-dev-support's `cluster::Cluster`, as `tests/e2e_cluster.rs` uses it); a fourth sshd on
//! 127.0.0.21 with its own Compose project for the one-node deployment. Then:
//! 1. bootstrap: a fresh 3-node `natsup up` and a fresh 1-node `natsup up` (each including the
//!    verify `up` ends with), interleaved, alternating which goes first, RUNS times each; the
//!    medians and their ratio;
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

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::{median, ms, ratio};
use support::Sshd;
use support::cluster::{ADDRS, Cluster, connect_all};
use support::workspace::{Login, Workspace, text};

const USERS: [&str; 4] = ["matchmaker", "matchmaker_httpd", "gameserver", "webhook"];
/// Runs of each measurement (the median is reported).
const RUNS: usize = 3;
/// Clients held connected through the rolling renew-cert.
const CROWD: usize = 200;
/// The longest any natsup command may take before the benchmark gives up on it.
const NATSUP_LIMIT: Duration = Duration::from_secs(300);
/// The longest wait for a publish to succeed after a node is killed.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);

/// `natsup ARGS` in `ws`, killed (by pid) if it outlives NATSUP_LIMIT; panics unless it
/// succeeds. Returns its wall time and output.
fn natsup(ws: &Workspace, args: &[&str]) -> (Duration, Output) {
    let mut cmd = ws.natsup();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let child = cmd.spawn().expect("spawn natsup");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(NATSUP_LIMIT) {
        Ok(out) => out.expect("natsup output"),
        Err(_) => {
            // SAFETY: a signal to the child this benchmark spawned, by its pid.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("natsup {args:?} took longer than {NATSUP_LIMIT:?}: killed");
        }
    };
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "natsup {args:?} failed ({}):\n{}",
        out.status,
        text(&out)
    );
    (took, out)
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

fn main() {
    natsup::install_crypto_provider();
    let started = Instant::now();
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let sshd_single = Sshd::start_at(ADDRS[0], "");

    // 1. Bootstrap, interleaved; the last cluster stays up for the rest.
    let (mut three, mut one) = (Vec::new(), Vec::new());
    let mut cluster = None;
    for run in 0..RUNS {
        eprintln!("bootstrap run {}", run + 1);
        let mut measure_three = || {
            let cl = Cluster::named("cb");
            cl.configure();
            let (took, out) = natsup(&cl.ws, &["up"]);
            assert!(
                text(&out).contains("starting 3 nodes at once"),
                "{}",
                text(&out)
            );
            // Where the time went (natsup's timed steps), on stderr.
            for line in text(&out).lines().filter(|l| l.trim_end().ends_with("s)")) {
                eprintln!("  3-node up: {line}");
            }
            three.push(took);
            cl
        };
        let mut measure_one = || {
            let ws = single(&sshd_single);
            one.push(natsup(&ws, &["up"]).0);
        };
        // Drop the previous cluster first: one deployment's containers at a time.
        drop(cluster.take());
        if run % 2 == 0 {
            cluster = Some(measure_three());
            measure_one();
        } else {
            measure_one();
            cluster = Some(measure_three());
        }
    }
    let cl = cluster.expect("a cluster");
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

    let (m3, m1) = (median(three.clone()), median(one.clone()));
    let list = |v: &[Duration]| v.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ");
    println!("### A 3-node cluster against one server ({RUNS} runs each, interleaved)\n");
    println!("| figure | measured |");
    println!("|---|---|");
    println!(
        "| bootstrap: 3-node `up` / 1-node `up` (median; each `up` includes its verify) | {} / {} = {} (runs: {} / {}) |",
        ms(m3),
        ms(m1),
        ratio(m3, m1),
        list(&three),
        list(&one),
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
    println!(
        "\nWhole benchmark: {:.0} s.",
        started.elapsed().as_secs_f64()
    );
}
