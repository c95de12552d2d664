//! natsup with hundreds of connected gameservers, against the tutorial's way (edit, copy,
//! `docker compose restart`), side by side in one run (issue 10's benchmark). Run it with
//! `./scripts/bench.sh --scale`.
//!
//! At each size N (NATSUP_BENCH_SCALE_SIZES, default 50,200,500), on a fresh deployment of
//! each way, N clients spread over the four users stay connected, each publishing and
//! receiving every 200 ms, one in ten writing to a JetStream stream and counting acks
//! (natsup-dev-support's `load::Crowd`, `Work::Mixed`). Then, in this order:
//! - memory: the container's memory before and with the N clients (`docker stats`);
//! - no-op: `natsup up` with nothing to do (the tutorial: its steps re-run), idle and with
//!   the N clients, and the disconnects it caused; `natsup verify`, idle and with N;
//! - webhook's password rotated, then the certificate renewed (`natsup rotate-passwords
//!   --user webhook`, `natsup renew-cert --force`; the tutorial: the edit, copy and restart):
//!   disconnects of the clients the operation does not concern (webhook's own clients wait
//!   for the new password, as a redeployed service would), acked messages missing from the
//!   stream, and a probe client of matchmaker connecting in a loop (async-nats' 5 s connect
//!   timeout): its slowest connect and its failures;
//! - reconnect storm: `docker restart` of the container; from the server's first TLS
//!   handshake until all N clients are back (their own reconnect, async-nats defaults), and
//!   the attempts refused with `Authentication Timeout`.
//!
//! NATSUP_BENCH_BCRYPT_COST, when set, adds `auth: {bcrypt_cost: N}` to natsup.yaml before
//! the first `up`.

mod harness;

use natsup_dev_support as support;

use std::process::Output;
use std::time::{Duration, Instant};

use harness::natsup::NatsupDeployment;
use harness::tutorial::TutorialDeployment;
use harness::{Server, SshEndpoint, median, ms, ratio};
use support::load::{self, ConnectLoop, Crowd, Load, Window, Work, wait_for_tls};
use support::{Sshd, test_image};
use tokio::runtime::Runtime;

const USERS: [&str; 4] = ["matchmaker", "matchmaker_httpd", "gameserver", "webhook"];
/// The probe client's user: neither operation concerns it.
const PROBE: &str = "matchmaker";
/// Runs of each no-op measurement (the median is reported).
const RUNS: usize = 3;
/// The longest wait for clients to come back after an operation or a restart.
const BACK_LIMIT: Duration = Duration::from_secs(120);
/// A gameserver backend's clients: each publishes once per 200 ms (at 500 clients a shorter
/// period would measure the publishers, not the server), one in ten to the stream waiting for
/// the ack; four connect at once at first (more would only queue on the server's bcrypt and,
/// past its 2 s auth timeout, be refused).
const FLEET: Load = Load {
    work: Work::Mixed {
        jetstream_every: 10,
    },
    period: Duration::from_millis(200),
    connecting_at_once: 4,
};

fn sizes() -> Vec<usize> {
    std::env::var("NATSUP_BENCH_SCALE_SIZES")
        .unwrap_or_else(|_| "50,200,500".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("NATSUP_BENCH_SCALE_SIZES: {s:?} is not a number"))
        })
        .collect()
}

fn bcrypt_cost() -> Option<u32> {
    std::env::var("NATSUP_BENCH_BCRYPT_COST").ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("NATSUP_BENCH_BCRYPT_COST: {v:?} is not a number"))
    })
}

/// 500 connections need more than the usual soft limit of 1024 descriptors with room to
/// spare: take the hard limit.
fn raise_nofile_limit() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// How one run of an operation went.
struct Run {
    took: Duration,
    /// Why it failed (exit code and the last line of its output), if it did.
    error: Option<String>,
}

impl Run {
    fn of(took: Duration, out: &Output) -> Run {
        let error = (!out.status.success()).then(|| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let last = text
                .lines()
                .rev()
                .find(|l| l.to_lowercase().contains("error"))
                .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
                .unwrap_or("")
                .trim()
                .chars()
                .take(120)
                .collect::<String>();
            format!("exit {}: {last}", out.status.code().unwrap_or(-1))
        });
        Run { took, error }
    }

    fn ok(took: Duration) -> Run {
        Run { took, error: None }
    }
}

/// One way of running the server, as the benchmark drives it.
trait Way {
    fn server(&self) -> Server;
    fn password(&self, user: &str) -> String;
    fn container(&self) -> String;
    /// Apply again with nothing changed.
    fn noop(&mut self) -> Run;
    /// natsup verify; the tutorial has none.
    fn verify(&mut self) -> Option<Run>;
    fn rotate_webhook(&mut self) -> Run;
    fn renew_cert(&mut self) -> Run;
}

struct Natsup(NatsupDeployment);

impl Way for Natsup {
    fn server(&self) -> Server {
        Server {
            port: self.0.port,
            ca_pem: self.0.ca_pem(),
        }
    }
    fn password(&self, user: &str) -> String {
        self.0.password(user)
    }
    fn container(&self) -> String {
        self.0.project.container_id()
    }
    fn noop(&mut self) -> Run {
        let (took, out) = self.0.run(&["-q", "up"]);
        Run::of(took, &out)
    }
    fn verify(&mut self) -> Option<Run> {
        let (took, out) = self.0.run(&["verify"]);
        Some(Run::of(took, &out))
    }
    fn rotate_webhook(&mut self) -> Run {
        let (took, out) = self.0.run(&["rotate-passwords", "--user", "webhook"]);
        Run::of(took, &out)
    }
    fn renew_cert(&mut self) -> Run {
        let (took, out) = self.0.run(&["renew-cert", "--force"]);
        Run::of(took, &out)
    }
}

struct Tutorial(TutorialDeployment);

impl Way for Tutorial {
    fn server(&self) -> Server {
        Server {
            port: self.0.port,
            ca_pem: self.0.ca_pem(),
        }
    }
    fn password(&self, user: &str) -> String {
        self.0.password(user)
    }
    fn container(&self) -> String {
        self.0.project.container_id()
    }
    fn noop(&mut self) -> Run {
        Run::ok(self.0.step("rerun"))
    }
    fn verify(&mut self) -> Option<Run> {
        None
    }
    fn rotate_webhook(&mut self) -> Run {
        Run::ok(self.0.step("rotate-webhook-password"))
    }
    fn renew_cert(&mut self) -> Run {
        Run::ok(self.0.step("renew-cert"))
    }
}

/// Timed runs of a no-op (median), and whether any failed.
struct Repeated {
    median: Duration,
    error: Option<String>,
}

fn repeated(runs: usize, mut f: impl FnMut() -> Run) -> Repeated {
    let mut times = Vec::new();
    let mut error = None;
    for _ in 0..runs {
        let run = f();
        times.push(run.took);
        error = error.or(run.error);
    }
    Repeated {
        median: median(times),
        error,
    }
}

struct Operation {
    run: Run,
    /// Until the change is live and the probe user connects.
    wall: Duration,
    /// Of the clients the operation does not concern.
    disconnects: usize,
    probe: Window,
    auth_timeouts: usize,
    /// Acked messages so far, and how many of them the stream lacks.
    acked: u64,
    lost: u64,
    /// Whether every client was connected again within BACK_LIMIT.
    all_back: bool,
}

struct Storm {
    /// From `docker restart` returning to the server's first TLS handshake.
    ready_after: Option<Duration>,
    /// From ready until the last client is back; None if some were not back in BACK_LIMIT.
    all_back: Option<Duration>,
    still_away: usize,
    auth_timeouts: usize,
    failed_attempts: usize,
    /// The most frequent reasons of the failed attempts.
    reasons: Vec<(String, usize)>,
    acked: u64,
    lost: u64,
}

struct Figures {
    connect_all: Duration,
    memory_idle: f64,
    memory_loaded: f64,
    nofile: String,
    noop_idle: Repeated,
    noop_loaded: Repeated,
    noop_disconnects: usize,
    verify_idle: Option<Repeated>,
    verify_loaded: Option<Repeated>,
    rotate: Operation,
    renew: Operation,
    storm: Storm,
    received: u64,
}

/// Acked so far, and how many of those the stream lacks (read in this order, every message
/// acked before the first read is stored before the second).
fn kept(rt: &Runtime, fleet: &Crowd, way: &dyn Way, server: &Server) -> (u64, u64) {
    let acked = fleet.acked();
    let stored = load::stream_messages(rt, &server.login(PROBE, &way.password(PROBE)));
    (acked, acked.saturating_sub(stored))
}

/// Runs `op` with the fleet and a probe client watching. `concerns` is the user whose
/// password the operation replaces: its clients wait for the new one.
fn watched(
    rt: &Runtime,
    way: &mut dyn Way,
    fleet: &Crowd,
    concerns: Option<&str>,
    op: fn(&mut dyn Way) -> Run,
) -> Operation {
    let server = way.server();
    let probe_password = way.password(PROBE);
    if let Some(user) = concerns {
        fleet.passwords().set(user, None);
    }
    let before = fleet.snapshot();
    let probe_login = server.login(PROBE, &probe_password);
    let probe = ConnectLoop::start(rt, &probe_login);
    std::thread::sleep(Duration::from_millis(500));
    let run = op(way);
    let wall = run.took + wait_for_tls(rt, &probe_login);
    if let Some(user) = concerns {
        fleet.passwords().set(user, Some(way.password(user)));
    }
    // Let reconnects (if any) happen and be counted.
    std::thread::sleep(Duration::from_secs(1));
    let probe = probe.stop(rt);
    let all_back = fleet.settle(BACK_LIMIT);
    let (acked, lost) = kept(rt, fleet, way, &server);
    Operation {
        run,
        wall,
        disconnects: fleet.disconnects_since(&before, concerns),
        probe,
        auth_timeouts: fleet.auth_timeouts_since(&before),
        acked,
        lost,
        all_back,
    }
}

fn storm(rt: &Runtime, way: &dyn Way, fleet: &Crowd) -> Storm {
    let server = way.server();
    let before = fleet.snapshot();
    support::restart_container(&way.container());
    let restarted = Instant::now();
    let ready = load::tls_ready(rt, server.port, Duration::from_secs(60));
    // A client may finish its handshake between two polls: the server was ready by then.
    let ready = match (ready, fleet.first_back(before.at)) {
        (Some(r), Some(c)) => Some(r.min(c)),
        (r, c) => r.or(c),
    };
    let last = fleet.wait_all_back(before.at, BACK_LIMIT);
    let still_away = fleet.len() - fleet.connected();
    let storm_figures = |acked, lost| Storm {
        ready_after: ready.map(|r| r.saturating_duration_since(restarted)),
        all_back: ready.zip(last).map(|(r, l)| l.saturating_duration_since(r)),
        still_away,
        auth_timeouts: fleet.auth_timeouts_since(&before),
        failed_attempts: fleet.failed_attempts_since(&before),
        reasons: fleet.reasons_since(&before).into_iter().take(3).collect(),
        acked,
        lost,
    };
    fleet.settle(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let (acked, lost) = kept(rt, fleet, way, &server);
    storm_figures(acked, lost)
}

fn measure(rt: &Runtime, way: &mut dyn Way, n: usize) -> Figures {
    let server = way.server();
    load::create_stream(rt, &server.login(PROBE, &way.password(PROBE)));
    let container = way.container();
    let memory_idle = support::container_memory_mib(&container);
    way.noop(); // warm-up: natsup opens its SSH master here
    let noop_idle = repeated(RUNS, || way.noop());
    let verify_idle = way
        .verify()
        .is_some()
        .then(|| repeated(RUNS, || way.verify().expect("verify")));

    let logins: Vec<_> = USERS
        .iter()
        .map(|user| server.login(user, &way.password(user)))
        .collect();
    let fleet = Crowd::start_with(rt, &logins, n, FLEET);
    eprintln!("  {n} clients connected in {}", ms(fleet.connect_time));
    std::thread::sleep(Duration::from_secs(1));
    let memory_loaded = support::container_memory_mib(&container);
    let nofile = support::container_nofile(&container);

    let before = fleet.snapshot();
    let noop_loaded = repeated(RUNS, || way.noop());
    std::thread::sleep(Duration::from_millis(500));
    let noop_disconnects = fleet.disconnects_since(&before, None);
    let verify_loaded = verify_idle
        .as_ref()
        .map(|_| repeated(RUNS, || way.verify().expect("verify")));

    eprintln!("  rotate webhook's password");
    let rotate = watched(rt, way, &fleet, Some("webhook"), |w| w.rotate_webhook());
    eprintln!("  renew the certificate");
    let renew = watched(rt, way, &fleet, None, |w| w.renew_cert());
    eprintln!("  restart the container");
    let storm = storm(rt, way, &fleet);
    let received = fleet.received();
    let fleet_connect = fleet.connect_time;
    let _ = fleet.stop(rt);
    Figures {
        connect_all: fleet_connect,
        memory_idle,
        memory_loaded,
        nofile,
        noop_idle,
        noop_loaded,
        noop_disconnects,
        verify_idle,
        verify_loaded,
        rotate,
        renew,
        storm,
        received,
    }
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map(ms).unwrap_or_else(|| "—".into())
}

fn failed(error: &Option<String>) -> String {
    error
        .as_ref()
        .map(|e| format!(" (failed: {})", e.replace('|', "/")))
        .unwrap_or_default()
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let image = test_image();
    let sshd = Sshd::start();
    let ssh = SshEndpoint::direct(&sshd);
    let started = Instant::now();

    let mut results = Vec::new();
    for n in sizes() {
        eprintln!("{n} clients: natsup");
        let ours = NatsupDeployment::new(&ssh, &image);
        if let Some(cost) = bcrypt_cost() {
            ours.append_config(&format!("auth:\n  bcrypt_cost: {cost}\n"));
        }
        ours.run_ok(&["up"]);
        let mut ours = Natsup(ours);
        let figures_ours = measure(&rt, &mut ours, n);
        drop(ours);

        eprintln!("{n} clients: tutorial");
        let mut theirs = TutorialDeployment::new(&ssh, &image);
        theirs.step("bootstrap");
        let mut theirs = Tutorial(theirs);
        wait_for_tls(&rt, &theirs.server().login(PROBE, &theirs.password(PROBE)));
        let figures_theirs = measure(&rt, &mut theirs, n);
        drop(theirs);
        results.push((n, figures_ours, figures_theirs));
    }
    report(&results, started.elapsed());
}

fn report(results: &[(usize, Figures, Figures)], took: Duration) {
    let cost = bcrypt_cost()
        .map(|c| format!("bcrypt cost {c} (NATSUP_BENCH_BCRYPT_COST)"))
        .unwrap_or_else(|| "natsup's default bcrypt cost".into());
    println!(
        "### Scale: N connected clients over four users, each publishing every 200 ms \
         ({cost}; run took {:.0} s)\n",
        took.as_secs_f64()
    );

    for (title, pick) in [
        (
            "rotate webhook's password",
            (|f: &Figures| &f.rotate) as fn(&Figures) -> &Operation,
        ),
        ("renew the server certificate", |f: &Figures| &f.renew),
    ] {
        println!("#### {title} (natsup / tutorial)\n");
        println!(
            "| clients | disconnects of others | acked messages lost | slowest new connect \
             | failed connects | refused: auth timeout | wall time | ratio |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for (n, ours, theirs) in results {
            let (a, b) = (pick(ours), pick(theirs));
            println!(
                "| {n} | {} / {} | {} of {} / {} of {} | {} / {} | {} of {} / {} of {} \
                 | {} / {} | {}{}{} / {}{} | {} |",
                a.disconnects,
                b.disconnects,
                a.lost,
                a.acked,
                b.lost,
                b.acked,
                ms(a.probe.slowest),
                ms(b.probe.slowest),
                a.probe.failures,
                a.probe.attempts,
                b.probe.failures,
                b.probe.attempts,
                a.auth_timeouts,
                b.auth_timeouts,
                ms(a.wall),
                failed(&a.run.error),
                if a.all_back {
                    ""
                } else {
                    " (clients not all back)"
                },
                ms(b.wall),
                if b.all_back {
                    ""
                } else {
                    " (clients not all back)"
                },
                ratio(a.wall, b.wall),
            );
        }
        println!();
    }

    println!("#### Reconnect storm: `docker restart` under N clients (natsup / tutorial)\n");
    println!(
        "| clients | all back after the server is ready | ratio | refused: auth timeout \
         | failed attempts | ready after restart | acked messages lost |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (n, ours, theirs) in results {
        let (a, b) = (&ours.storm, &theirs.storm);
        let back = |s: &Storm| match s.all_back {
            Some(d) => ms(d),
            None => format!("{} not back in {} s", s.still_away, BACK_LIMIT.as_secs()),
        };
        let storm_ratio = match (a.all_back, b.all_back) {
            (Some(x), Some(y)) => ratio(x, y),
            _ => "—".into(),
        };
        println!(
            "| {n} | {} / {} | {storm_ratio} | {} / {} | {} / {} | {} / {} | {} of {} / {} of {} |",
            back(a),
            back(b),
            a.auth_timeouts,
            b.auth_timeouts,
            a.failed_attempts,
            b.failed_attempts,
            opt_ms(a.ready_after),
            opt_ms(b.ready_after),
            a.lost,
            a.acked,
            b.lost,
            b.acked,
        );
    }
    println!();
    println!("Failed reconnect attempts in the storm, by what the client said (top 3):\n");
    for (n, ours, theirs) in results {
        for (way, f) in [("natsup", ours), ("tutorial", theirs)] {
            let reasons: Vec<String> = f
                .storm
                .reasons
                .iter()
                .map(|(r, c)| format!("{c}× `{r}`"))
                .collect();
            println!("- {n} clients, {way}: {}", reasons.join(", "));
        }
    }
    println!();

    println!(
        "#### No-op apply with N clients: `natsup -q up` / the tutorial's steps re-run \
         (median of {RUNS})\n"
    );
    println!(
        "| clients | natsup idle | natsup with N | ratio | disconnects | tutorial idle \
         | tutorial with N | ratio | disconnects |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (n, a, b) in results {
        println!(
            "| {n} | {}{} | {}{} | {} | {} | {} | {} | {} | {} |",
            ms(a.noop_idle.median),
            failed(&a.noop_idle.error),
            ms(a.noop_loaded.median),
            failed(&a.noop_loaded.error),
            ratio(a.noop_loaded.median, a.noop_idle.median),
            a.noop_disconnects,
            ms(b.noop_idle.median),
            ms(b.noop_loaded.median),
            ratio(b.noop_loaded.median, b.noop_idle.median),
            b.noop_disconnects,
        );
    }
    println!();

    println!("#### `natsup verify` (15 checks, loopback; median of {RUNS})\n");
    println!("| clients | idle | with N clients |");
    println!("|---|---|---|");
    for (n, a, _) in results {
        let show = |r: &Option<Repeated>| {
            r.as_ref()
                .map(|r| format!("{}{}", ms(r.median), failed(&r.error)))
                .unwrap_or_else(|| "—".into())
        };
        println!(
            "| {n} | {} | {} |",
            show(&a.verify_idle),
            show(&a.verify_loaded)
        );
    }
    println!();

    println!("#### nats-server's memory (`docker stats`) and the fleet\n");
    println!(
        "| clients | natsup: idle → with N | tutorial: idle → with N | ratio (with N) \
         | open-file limit in the container | first connect of all N | messages received back \
         (natsup / tutorial) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (n, a, b) in results {
        println!(
            "| {n} | {:.1} → {:.1} MiB | {:.1} → {:.1} MiB | {:.2}× | {} / {} | {} / {} | {} / {} |",
            a.memory_idle,
            a.memory_loaded,
            b.memory_idle,
            b.memory_loaded,
            a.memory_loaded / b.memory_loaded,
            a.nofile,
            b.nofile,
            ms(a.connect_all),
            ms(b.connect_all),
            a.received,
            b.received,
        );
    }
    println!();
}
