//! Upgrading nats-server as the people connected see it: natsup's lame-duck way against the
//! plain restart, side by side in one run (issue 18's benchmark). Run it with
//! `./scripts/bench.sh --upgrade`.
//!
//! 1. One server, over the real sshd on 127.0.0.1 and Docker: natsup (`image` changed in
//!    natsup.yaml, `up`: lame duck with the default 10 s grace, then the recreate) against the
//!    tutorial's way (the image edited in docker-compose.yaml, `docker compose up -d`: Docker's
//!    SIGTERM, nats-server exits at once). ONE_CLIENTS clients stay connected and one more
//!    connects in a loop. ROUNDS upgrades each, interleaved, the image going 2.10.26 → 2.11.11
//!    and back. Per side: the window in which a new connect fails (from a failed attempt to the
//!    next that succeeds, summed), the clients' disconnects and lame-duck notices, the longest a
//!    client was away, and the wall time.
//! 2. Three nodes (127.0.0.21-23, natsup-dev-support's `cluster::Cluster`), CROWD clients each
//!    holding the three URLs, and one more publishing to an R3 stream every 20 ms, each ack
//!    awaited. natsup's rolling upgrade (`up`: gate, lame duck, recreate, version proven, node
//!    by node) against the same roll by hand on a second cluster, the way it was done before
//!    lame duck: per node SIGTERM, `docker compose up -d` with the new image, then wait until
//!    the stream's replica on that node is current again (a careful operator's gate). ROUNDS
//!    rolls each, interleaved, up and back. Per side: total time, failed publishes, the slowest
//!    acked publish, disconnects and notices, the slowest reconnect of any client.
//!
//! Every wait is bounded; everything listens on 127.0.0.x; the support guards remove what was
//! started by pid and container id.

mod harness;

use natsup_dev_support as support;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use harness::natsup::NatsupDeployment;
use harness::tutorial::TutorialDeployment;
use harness::{Server, SshEndpoint, median, ms, ratio};
use support::cluster::{ADDRS, Cluster};
use support::load::{
    ConnectLoop, Heard, Listening, Published, Window, publish_throughout, wait_for_tls,
};
use support::workspace::{Login, text};
use support::{Sshd, free_port_on_besides, test_image, upgrade_image};
use tokio::runtime::Runtime;

/// Upgrades of each kind per side: there and back, and there again.
const ROUNDS: usize = 3;
/// Clients connected to the one server through each upgrade.
const ONE_CLIENTS: usize = 50;
/// Clients connected to the cluster through each roll.
const CROWD: usize = 200;
/// The longest any natsup command or manual roll may take before the benchmark gives up.
const LIMIT: Duration = Duration::from_secs(600);
/// After an operation, the longest the clients may take to be all back.
const BACK_LIMIT: Duration = Duration::from_secs(60);
const STREAM: &str = "UPGRADE";
const SUBJECT: &str = "upgrade.tick";

/// What the connected clients told their users during one operation.
#[derive(Default)]
struct Seen {
    disconnects: usize,
    notices: usize,
    /// The longest any client was away, from its disconnect to its next connect.
    slowest_reconnect: Duration,
    /// Clients still away when the benchmark stopped waiting.
    still_away: usize,
}

/// `count` clients of `logins` (in turn), each holding `urls`, connected 20 at a time (200
/// TLS handshakes at once on two shared cores would measure this machine).
fn crowd(
    rt: &Runtime,
    logins: &[Login],
    urls: &[async_nats::ServerAddr],
    count: usize,
) -> Vec<Listening> {
    rt.block_on(async {
        use futures_util::StreamExt;
        futures_util::stream::iter(
            (0..count).map(|i| Listening::connect(&logins[i % logins.len()], urls.to_vec())),
        )
        .buffer_unordered(20)
        .collect::<Vec<_>>()
        .await
    })
}

/// Forgets what the clients heard so far.
fn forget(crowd: &[Listening]) {
    for c in crowd {
        c.heard.lock().unwrap().clear();
    }
}

/// What the clients heard since [`forget`], once every one is back (or BACK_LIMIT passed).
fn seen(crowd: &[Listening]) -> Seen {
    let deadline = Instant::now() + BACK_LIMIT;
    loop {
        let mut seen = Seen::default();
        for c in crowd {
            let mut away_since = None;
            for (at, heard) in c.heard() {
                match heard {
                    Heard::LameDuck => seen.notices += 1,
                    Heard::Disconnected => {
                        seen.disconnects += 1;
                        away_since.get_or_insert(at);
                    }
                    Heard::Connected => {
                        if let Some(since) = away_since.take() {
                            seen.slowest_reconnect = seen.slowest_reconnect.max(at - since);
                        }
                    }
                }
            }
            seen.still_away += usize::from(away_since.is_some());
        }
        if seen.still_away == 0 || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One upgrade of one server, watched.
struct Single {
    wall: Duration,
    window: Window,
    seen: Seen,
}

fn single(
    rt: &Runtime,
    server: &Server,
    password: &str,
    clients: &[Listening],
    upgrade: &mut dyn FnMut() -> Duration,
) -> Single {
    forget(clients);
    let probe = ConnectLoop::start(rt, &server.login("matchmaker", password));
    std::thread::sleep(Duration::from_millis(500));
    let took = upgrade();
    let wall = took + wait_for_tls(rt, &server.login("matchmaker", password));
    let seen = seen(clients);
    std::thread::sleep(Duration::from_millis(500));
    Single {
        wall,
        window: probe.stop(rt),
        seen,
    }
}

/// One roll of a cluster, watched.
struct Roll {
    wall: Duration,
    published: Published,
    seen: Seen,
}

fn roll(
    rt: &Runtime,
    writer: &async_nats::Client,
    clients: &[Listening],
    operation: &mut dyn FnMut() -> Duration,
) -> Roll {
    forget(clients);
    let js = {
        let _runtime = rt.enter();
        async_nats::jetstream::new(writer.clone())
    };
    let (stop, task) = publish_throughout(rt, &js, SUBJECT);
    std::thread::sleep(Duration::from_millis(500));
    let wall = operation();
    let seen = seen(clients);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let published = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("the publisher stops within 20 s")
            .unwrap()
    });
    Roll {
        wall,
        published,
        seen,
    }
}

/// A 3-node cluster deployed by natsup, with its R3 stream and a writer holding the three URLs.
fn cluster(name: &str, taken: &[u16]) -> (Cluster, u16) {
    let cl = Cluster::named(name);
    let mut busy = vec![cl.port];
    busy.extend_from_slice(taken);
    let route_port = free_port_on_besides(&ADDRS, &busy);
    cl.ws
        .set_config(&cl.yaml(route_port, |i| cl.sshd[i].port()));
    let (took, out) = cl.ws.run_within(&["up"], LIMIT);
    assert!(
        out.status.success(),
        "natsup up ({name}, {took:?}):\n{}",
        text(&out)
    );
    (cl, route_port)
}

fn stream(rt: &Runtime, writer: &async_nats::Client) {
    rt.block_on(async {
        let js = async_nats::jetstream::new(writer.clone());
        js.create_stream(async_nats::jetstream::stream::Config {
            name: STREAM.into(),
            subjects: vec![SUBJECT.into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("an R3 stream");
    });
}

/// The roll by hand, node by node: the image edited in the node's docker-compose.yaml, the
/// old server ended with SIGTERM (natsup's containers stop through lame duck; this is the
/// stop they had before it), `docker compose up -d`, then the wait until the stream's
/// replica on the node is current again. Bounded; panics if a step fails.
fn plain_roll(rt: &Runtime, cl: &Cluster, writer: &async_nats::Client, from: &str, to: &str) {
    for (i, dir) in cl.dirs.iter().enumerate() {
        let file = dir.join("docker-compose.yaml");
        let yaml = std::fs::read_to_string(&file).expect("the node's docker-compose.yaml");
        assert!(yaml.contains(from), "{} has no {from}", file.display());
        std::fs::write(&file, yaml.replace(from, to)).expect("write docker-compose.yaml");
        let id = cl.projects[i].container_id();
        let project = support::compose_project_of(&id);
        // Without this, `unless-stopped` would start the old server again once it exits.
        docker(&["update", "--restart=no", &id]);
        docker(&["kill", "-s", "TERM", &id]);
        let deadline = Instant::now() + Duration::from_secs(15);
        while docker(&["inspect", "-f", "{{.State.Running}}", &id]) == "true" {
            assert!(
                Instant::now() < deadline,
                "n{} did not exit on SIGTERM",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = support::run(
            Command::new("timeout")
                .args(["120", "sh", "-c"])
                .arg(
                    "if docker compose version >/dev/null 2>&1; then docker compose -p \"$1\" up -d; \
                     else docker-compose -p \"$1\" up -d; fi",
                )
                .args(["compose", &project])
                .current_dir(dir),
        );
        assert!(
            out.status.success(),
            "compose up -d on n{}: {}",
            i + 1,
            text(&out)
        );
        wait_current(rt, writer, &format!("n{}", i + 1));
    }
}

/// Waits (60 s at most) until the stream has a leader and `node`'s replica is current.
fn wait_current(rt: &Runtime, writer: &async_nats::Client, node: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(async {
        let js = async_nats::jetstream::new(writer.clone());
        loop {
            if let Ok(Ok(mut s)) =
                tokio::time::timeout(Duration::from_secs(2), js.get_stream(STREAM)).await
                && let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(2), s.info()).await
                && let Some(cluster) = &info.cluster
                && cluster.leader.is_some()
                && (cluster.leader.as_deref() == Some(node)
                    || cluster
                        .replicas
                        .iter()
                        .any(|r| r.name == node && r.current && !r.offline))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{node}'s replica of {STREAM} not current within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// `docker ARGS` (bounded), its trimmed stdout; panics if it fails.
fn docker(args: &[&str]) -> String {
    let out = support::run(Command::new("timeout").arg("60").arg("docker").args(args));
    assert!(out.status.success(), "docker {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn main() {
    natsup::install_crypto_provider();
    let started = Instant::now();
    let rt = Runtime::new().expect("tokio");
    let images = [test_image(), upgrade_image()];
    // Round r goes from images[r % 2] to the other.
    let step = |r: usize| (images[r % 2].clone(), images[(r + 1) % 2].clone());

    // 1. One server.
    let sshd = Sshd::start();
    let ssh = SshEndpoint::direct(&sshd);
    let ours = NatsupDeployment::new(&ssh, &images[0]);
    ours.run_ok(&["up"]);
    let our_server = Server {
        port: ours.port,
        ca_pem: ours.ca_pem(),
    };
    let our_password = ours.password("matchmaker");
    let mut theirs = TutorialDeployment::new(&ssh, &images[0]);
    theirs.step("bootstrap");
    let their_server = Server {
        port: theirs.port,
        ca_pem: theirs.ca_pem(),
    };
    let their_password = theirs.password("matchmaker");
    wait_for_tls(&rt, &their_server.login("matchmaker", &their_password));
    let url = |s: &Server| vec![format!("tls://127.0.0.1:{}", s.port).parse().unwrap()];
    let our_clients = crowd(
        &rt,
        &[our_server.login("matchmaker", &our_password)],
        &url(&our_server),
        ONE_CLIENTS,
    );
    let their_clients = crowd(
        &rt,
        &[their_server.login("matchmaker", &their_password)],
        &url(&their_server),
        ONE_CLIENTS,
    );
    let (mut ours_single, mut theirs_single) = (Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        let (from, to) = step(r);
        eprintln!("one server, round {}: {from} → {to}", r + 1);
        ours_single.push(single(
            &rt,
            &our_server,
            &our_password,
            &our_clients,
            &mut || {
                ours.edit_config(&from, &to);
                ours.run_ok(&["up"]).0
            },
        ));
        theirs_single.push(single(
            &rt,
            &their_server,
            &their_password,
            &their_clients,
            &mut || {
                theirs.set_image(&to);
                theirs.step("upgrade")
            },
        ));
    }
    drop((our_clients, their_clients));

    // 2. Three nodes, two clusters side by side.
    let (ours_cl, route) = cluster("ua", &[]);
    let (plain_cl, _) = cluster("ub", &[ours_cl.port, route]);
    let setup = |cl: &Cluster| {
        let logins: Vec<Login> = ["matchmaker", "matchmaker_httpd", "gameserver", "webhook"]
            .iter()
            .map(|u| cl.ws.login(u))
            .collect();
        let clients = crowd(&rt, &logins, &cl.urls(), CROWD);
        let writer = crowd(&rt, &logins[2..3], &cl.urls(), 1).remove(0).client;
        stream(&rt, &writer);
        (clients, writer)
    };
    let (our_crowd, our_writer) = setup(&ours_cl);
    let (plain_crowd, plain_writer) = setup(&plain_cl);
    let (mut ours_rolls, mut plain_rolls) = (Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        let (from, to) = step(r);
        eprintln!("cluster, round {}: {from} → {to}", r + 1);
        ours_rolls.push(roll(&rt, &our_writer, &our_crowd, &mut || {
            ours_cl.ws.edit_config(&from, &to);
            let (took, out) = ours_cl.ws.run_within(&["up"], LIMIT);
            assert!(out.status.success(), "natsup up:\n{}", text(&out));
            took
        }));
        plain_rolls.push(roll(&rt, &plain_writer, &plain_crowd, &mut || {
            let t = Instant::now();
            plain_roll(&rt, &plain_cl, &plain_writer, &from, &to);
            t.elapsed()
        }));
    }

    report_single(&ours_single, &theirs_single);
    report_rolls(&ours_rolls, &plain_rolls);
    println!(
        "\nWhole benchmark: {:.0} s.",
        started.elapsed().as_secs_f64()
    );
}

/// Each run's figure, joined.
fn runs<T>(items: &[T], figure: impl Fn(&T) -> String) -> String {
    items.iter().map(figure).collect::<Vec<_>>().join(", ")
}

/// A table row of durations: each side's median, its runs, and the ratio.
fn duration_row<T>(name: &str, ours: &[T], theirs: &[T], f: impl Fn(&T) -> Duration) {
    let (a, b) = (
        median(ours.iter().map(&f).collect()),
        median(theirs.iter().map(&f).collect()),
    );
    println!(
        "| {name} | {} ({}) | {} ({}) | {} |",
        ms(a),
        runs(ours, |x| ms(f(x))),
        ms(b),
        runs(theirs, |x| ms(f(x))),
        ratio(a, b)
    );
}

/// A table row of counts: each side's runs.
fn count_row<T>(name: &str, ours: &[T], theirs: &[T], f: impl Fn(&T) -> String) {
    println!("| {name} | {} | {} | |", runs(ours, &f), runs(theirs, &f));
}

fn report_single(ours: &[Single], theirs: &[Single]) {
    println!(
        "### Upgrading one server's nats-server, {ONE_CLIENTS} clients connected ({ROUNDS} upgrades each, interleaved, 2.10.26 → 2.11.11 and back)\n"
    );
    println!(
        "| figure (median; the runs) | natsup `up` (lame duck, grace 10 s) | `docker compose up -d` (SIGTERM) | ratio |"
    );
    println!("|---|---|---|---|");
    duration_row("window in which a new connect fails", ours, theirs, |s| {
        s.window.failed_for
    });
    duration_row("longest a connected client was away", ours, theirs, |s| {
        s.seen.slowest_reconnect
    });
    duration_row(
        "wall time, until a new client connects",
        ours,
        theirs,
        |s| s.wall,
    );
    count_row("failed connects of attempts", ours, theirs, |s| {
        format!("{} of {}", s.window.failures, s.window.attempts)
    });
    seen_rows(ONE_CLIENTS, ours, theirs, |s| &s.seen);
}

/// The rows of what the clients told their users, for both kinds of operation.
fn seen_rows<T>(clients: usize, ours: &[T], theirs: &[T], seen: impl Fn(&T) -> &Seen) {
    count_row(
        &format!("disconnects of the {clients} clients"),
        ours,
        theirs,
        |x| seen(x).disconnects.to_string(),
    );
    count_row("lame-duck notices they heard", ours, theirs, |x| {
        seen(x).notices.to_string()
    });
    count_row("clients not back within 60 s", ours, theirs, |x| {
        seen(x).still_away.to_string()
    });
}

fn report_rolls(ours: &[Roll], plain: &[Roll]) {
    println!(
        "\n### Rolling nats-server upgrade of 3 nodes, {CROWD} clients connected (three URLs each), R3 publishes every 20 ms ({ROUNDS} rolls each, interleaved, 2.10.26 → 2.11.11 and back)\n"
    );
    println!(
        "| figure (median; the runs) | natsup `up` (gate, lame duck, recreate) | by hand (SIGTERM, `docker compose up -d`, wait for the replica) | ratio |"
    );
    println!("|---|---|---|---|");
    duration_row("total time", ours, plain, |r| r.wall);
    duration_row("slowest acked publish", ours, plain, |r| {
        r.published.slowest
    });
    duration_row("slowest reconnect of a client", ours, plain, |r| {
        r.seen.slowest_reconnect
    });
    count_row("failed publishes of all", ours, plain, |r| {
        let p = &r.published;
        format!("{} of {}", p.failed.len(), p.failed.len() + p.acked)
    });
    seen_rows(CROWD, ours, plain, |r| &r.seen);
    for (side, rolls) in [("natsup", ours), ("by hand", plain)] {
        for (i, r) in rolls.iter().enumerate() {
            for f in &r.published.failed {
                println!("- {side}, roll {}: a publish failed: {f}", i + 1);
            }
        }
    }
}
