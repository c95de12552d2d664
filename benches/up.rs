//! `natsup up` against the tutorial's manual steps, side by side in one run, over the same
//! real sshd and Docker engine (issue 3's benchmark). Run it with `./scripts/bench.sh`.
//!
//! Three cases, each run ROUNDS times with natsup and the baseline interleaved:
//! - fresh bootstrap: nothing on the server yet, until a TLS client connects;
//! - re-run: the same command again, with nothing changed: right after, when it reuses the SSH
//!   connection the first run left open, and cold (`NATSUP_SSH_PERSIST=0`), on its own;
//! - config change: one user added, until that user can connect (cold).
//!
//! Then the no-op re-run alone against its ≤ 0.3 s target: `natsup -q up` with nothing to do,
//! reusing the open connection and cold, beside a bare `ssh HOST true` (median of 10 each).
//!
//! For each: wall time, SSH connections and remote sessions (counted from the sshd's own log,
//! scp/sftp transfers included), and container restarts (Docker's StartedAt).
//!
//! With NATSUP_BASELINE_BIN set (`./scripts/bench.sh --baseline`), the other side is that
//! natsup binary instead of the tutorial: the same cases, BASELINE_ROUNDS times (or
//! NATSUP_BENCH_ROUNDS), the two binaries interleaved (which goes first alternates), and the
//! no-op alone for both, so a change to natsup is measured against the build before it in one
//! run.

mod harness;

use natsup_dev_support as support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::natsup::{NatsupDeployment, natsup_bin};
use harness::tutorial::TutorialDeployment;
use harness::{Server, SshEndpoint, median, ms, ratio};
use support::load::wait_for_tls;
use support::{Sshd, test_image};

const ROUNDS: usize = 3;
/// Rounds against a baseline binary: two builds of natsup differ less than natsup and the
/// tutorial do, so more rounds, to see past this shared machine's noise.
const BASELINE_ROUNDS: usize = 5;
/// The cases, in the order each round runs them.
const CASES: [&str; 4] = [
    "fresh bootstrap",
    "re-run, nothing changed (right after)",
    "re-run, nothing changed (cold)",
    "config change (add a user, cold)",
];

#[derive(Default)]
struct Figures {
    wall: Vec<Duration>,
    connections: usize,
    sessions: usize,
    /// Whether the last round restarted the container (0 or 1).
    restarts: usize,
}

impl Figures {
    fn record(&mut self, wall: Duration, sshd: &Sshd, before: (usize, usize), restarted: bool) {
        self.wall.push(wall);
        // The same per round; the last round's counts are reported.
        self.connections = sshd.connections() - before.0;
        self.sessions = sshd.sessions() - before.1;
        self.restarts = restarted as usize;
    }
}

/// One way's figures for each of [`CASES`].
#[derive(Default)]
struct Side([Figures; 4]);

fn counts(sshd: &Sshd) -> (usize, usize) {
    (sshd.connections(), sshd.sessions())
}

/// What the benchmark runs against.
struct Bench<'a> {
    rt: tokio::runtime::Runtime,
    image: String,
    sshd: &'a Sshd,
    ssh: &'a SshEndpoint,
}

impl Bench<'_> {
    /// One round of the four cases with natsup binary `bin`, each until a TLS client connects.
    fn natsup_round(&self, bin: &Path, side: &mut Side) {
        let (rt, sshd) = (&self.rt, self.sshd);
        let ours = NatsupDeployment::with_bin(self.ssh, &self.image, bin);
        let before = counts(sshd);
        let (took, _) = ours.run_ok(&["up"]);
        let server = Server {
            port: ours.port,
            ca_pem: ours.ca_pem(),
        };
        let took = took
            + wait_for_tls(
                rt,
                &server.login("matchmaker", &ours.password("matchmaker")),
            );
        side.0[0].record(took, sshd, before, false);
        let id = ours.project.container_id();
        let started = ours.project.started_at(&id);

        // One natsup run until `user` connects over TLS, and the sshd's counts before it.
        let timed = |cold_run: bool, user: &str| {
            let before = counts(sshd);
            let (took, _) = if cold_run {
                ours.run_cold(&["up"])
            } else {
                ours.run_ok(&["up"])
            };
            let took = took + wait_for_tls(rt, &server.login(user, &ours.password(user)));
            let restarted = ours.project.started_at(&id) != started;
            (took, before, restarted)
        };
        let (took, before, restarted) = timed(false, "matchmaker");
        side.0[1].record(took, sshd, before, restarted);
        let (took, before, restarted) = timed(true, "matchmaker");
        side.0[2].record(took, sshd, before, restarted);
        ours.add_user("analytics");
        let (took, before, restarted) = timed(true, "analytics");
        side.0[3].record(took, sshd, before, restarted);
    }

    /// One round of the tutorial's steps for the same four cases.
    fn tutorial_round(&self, side: &mut Side) {
        let (rt, sshd) = (&self.rt, self.sshd);
        let mut theirs = TutorialDeployment::new(self.ssh, &self.image);
        let before = counts(sshd);
        let took = theirs.step("bootstrap");
        let server = Server {
            port: theirs.port,
            ca_pem: theirs.ca_pem(),
        };
        let took = took
            + wait_for_tls(
                rt,
                &server.login("matchmaker", &theirs.password("matchmaker")),
            );
        side.0[0].record(took, sshd, before, false);
        let id = theirs.project.container_id();
        let started = theirs.project.started_at(&id);

        // One step of the script until `user` connects over TLS, and the sshd's counts before.
        let mut timed = |step: &str, user: &str| {
            let before = counts(sshd);
            let took = theirs.step(step);
            let took = took + wait_for_tls(rt, &server.login(user, &theirs.password(user)));
            let restarted = theirs.project.started_at(&id) != started;
            (took, before, restarted)
        };
        let (took, before, restarted) = timed("rerun", "matchmaker");
        side.0[1].record(took, sshd, before, restarted);
        let (took, before, restarted) = timed("rerun", "matchmaker");
        side.0[2].record(took, sshd, before, restarted);
        let (took, before, restarted) = timed("change-config", "analytics");
        side.0[3].record(took, sshd, before, restarted);
    }
}

/// The cases' table: `ours` against `theirs`, under the column names `a` and `b`, and `pair`
/// ("a / b") in the count columns.
fn cases_table(a: &str, b: &str, pair: &str, ours: &Side, theirs: &Side) {
    println!(
        "| case | {a} | {b} | ratio | SSH connections ({pair}) \
         | remote sessions ({pair}) | container restarts ({pair}) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, name) in CASES.iter().enumerate() {
        let (x, y) = (&ours.0[i], &theirs.0[i]);
        let (mx, my) = (median(x.wall.clone()), median(y.wall.clone()));
        println!(
            "| {name} | {} | {} | {} | {} / {} | {} / {} | {} / {} |",
            ms(mx),
            ms(my),
            ratio(mx, my),
            x.connections,
            y.connections,
            x.sessions,
            y.sessions,
            x.restarts,
            y.restarts,
        );
    }
}

fn main() {
    natsup::install_crypto_provider();
    // NATSUP_BENCH_PLAIN_SHELL=1: the remote login shell skips ~/.bashrc (bash reads it for
    // SSH commands unless SHLVL says it is nested). On this machine root's .bashrc runs
    // `pyenv init`, ~150 ms that every remote command of both sides pays; a fresh VPS's costs
    // next to nothing.
    let plain_shell = std::env::var("NATSUP_BENCH_PLAIN_SHELL").is_ok_and(|v| v == "1");
    let sshd = Sshd::start_with(if plain_shell { "SetEnv SHLVL=1\n" } else { "" });
    // NATSUP_BENCH_SSH_DELAY_MS: every byte of SSH waits this long each way (see
    // harness/delay_proxy.py); NATS traffic stays on plain loopback.
    let delay_ms: u32 = std::env::var("NATSUP_BENCH_SSH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let ssh = if delay_ms > 0 {
        SshEndpoint::delayed(&sshd, delay_ms)
    } else {
        SshEndpoint::direct(&sshd)
    };
    let bench = Bench {
        rt: tokio::runtime::Runtime::new().expect("tokio"),
        image: test_image(),
        sshd: &sshd,
        ssh: &ssh,
    };
    let delay = match delay_ms {
        0 => "none".to_string(),
        ms => format!("{ms} ms each way on SSH"),
    };
    let shell = if plain_shell {
        "; remote shell without ~/.bashrc"
    } else {
        ""
    };
    let this = natsup_bin();
    if let Some(baseline) = std::env::var_os("NATSUP_BASELINE_BIN").map(PathBuf::from) {
        assert!(
            baseline.is_file(),
            "NATSUP_BASELINE_BIN={} is not a file",
            baseline.display()
        );
        against_baseline(&bench, &this, &baseline, &format!("{delay}{shell}"));
        return;
    }

    let (mut ours, mut theirs) = (Side::default(), Side::default());
    for round in 0..ROUNDS {
        eprintln!("round {} of {ROUNDS}", round + 1);
        bench.natsup_round(&this, &mut ours);
        bench.tutorial_round(&mut theirs);
    }
    println!(
        "### `up` vs the tutorial's steps (added delay: {delay}{shell}; median of {ROUNDS})\n"
    );
    cases_table(
        "natsup",
        "tutorial script",
        "natsup / tutorial",
        &ours,
        &theirs,
    );

    noop_alone(&ssh, shell);
}

/// This build of natsup against the `baseline` binary: the four cases, then the no-op alone.
fn against_baseline(bench: &Bench, this: &Path, baseline: &Path, conditions: &str) {
    // NATSUP_BENCH_ROUNDS: more rounds, for a difference smaller than the noise.
    let rounds = std::env::var("NATSUP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BASELINE_ROUNDS);
    let (mut ours, mut theirs) = (Side::default(), Side::default());
    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        if round % 2 == 0 {
            bench.natsup_round(this, &mut ours);
            bench.natsup_round(baseline, &mut theirs);
        } else {
            bench.natsup_round(baseline, &mut theirs);
            bench.natsup_round(this, &mut ours);
        }
    }
    println!(
        "### `up`, this build against a baseline (added delay: {conditions}; median of {rounds}, interleaved)\n"
    );
    println!("- this build: `{}`", this.display());
    println!("- baseline: `{}`\n", baseline.display());
    cases_table(
        "this build",
        "baseline",
        "this build / baseline",
        &ours,
        &theirs,
    );
    // Every run, in order (two builds differ by less than this machine's noise can hide).
    println!();
    let list = |f: &Figures| f.wall.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ");
    for (i, name) in CASES.iter().enumerate() {
        println!(
            "- {name}: this build {}; baseline {}",
            list(&ours.0[i]),
            list(&theirs.0[i])
        );
    }

    const RUNS: usize = 10;
    let a = NatsupDeployment::with_bin(bench.ssh, &bench.image, this);
    let b = NatsupDeployment::with_bin(bench.ssh, &bench.image, baseline);
    a.run_ok(&["-q", "up"]);
    b.run_ok(&["-q", "up"]);
    let mut walls: [Vec<Duration>; 5] = Default::default();
    for _ in 0..RUNS {
        walls[0].push(a.run_ok(&["-q", "up"]).0);
        walls[1].push(b.run_ok(&["-q", "up"]).0);
        walls[2].push(a.run_cold(&["-q", "up"]).0);
        walls[3].push(b.run_cold(&["-q", "up"]).0);
        walls[4].push(bench.ssh.bare_command());
    }
    let [warm_a, warm_b, cold_a, cold_b, bare] = walls.map(median);
    println!(
        "\n### no-op `natsup -q up` on its own, this build against the baseline (median of {RUNS}, interleaved)\n"
    );
    println!("| run | this build | baseline | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| reusing the connection an earlier run left open | {} | {} | {} |",
        ms(warm_a),
        ms(warm_b),
        ratio(warm_a, warm_b)
    );
    println!(
        "| cold (`NATSUP_SSH_PERSIST=0`) | {} | {} | {} |",
        ms(cold_a),
        ms(cold_b),
        ratio(cold_a, cold_b)
    );
    println!("| bare `ssh HOST true` | {} | | |", ms(bare));
}

/// `natsup -q up` with nothing to do, on its own (no TLS client added to its time), warm and
/// cold, beside the cost of one bare SSH command on the same endpoint.
fn noop_alone(ssh: &SshEndpoint, shell: &str) {
    const RUNS: usize = 10;
    let image = test_image();
    let ours = NatsupDeployment::new(ssh, &image);
    ours.run_ok(&["-q", "up"]);
    let (mut warm, mut cold, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        warm.push(ours.run_ok(&["-q", "up"]).0);
        cold.push(ours.run_cold(&["-q", "up"]).0);
        bare.push(ssh.bare_command());
    }
    let (warm, cold, bare) = (median(warm), median(cold), median(bare));
    println!("\n### no-op `natsup -q up` on its own (median of {RUNS}{shell}; target ≤ 300 ms)\n");
    println!("| run | wall time | vs a bare `ssh HOST true` |");
    println!("|---|---|---|");
    println!(
        "| reusing the connection an earlier run left open | {} | {} |",
        ms(warm),
        ratio(warm, bare)
    );
    println!(
        "| cold (`NATSUP_SSH_PERSIST=0`) | {} | {} |",
        ms(cold),
        ratio(cold, bare)
    );
    println!("| bare `ssh HOST true` | {} | 1.00× |", ms(bare));
}
