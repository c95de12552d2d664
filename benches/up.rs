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

mod harness;

use natsup_dev_support as support;

use std::time::Duration;

use harness::natsup::NatsupDeployment;
use harness::tutorial::TutorialDeployment;
use harness::{Server, SshEndpoint, median, ms, ratio};
use support::load::wait_for_tls;
use support::{Sshd, test_image};

const ROUNDS: usize = 3;

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

#[derive(Default)]
struct Case {
    natsup: Figures,
    tutorial: Figures,
}

fn counts(sshd: &Sshd) -> (usize, usize) {
    (sshd.connections(), sshd.sessions())
}

fn main() {
    natsup::install_crypto_provider();
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let image = test_image();
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
    let (mut fresh, mut rerun, mut cold, mut change) = (
        Case::default(),
        Case::default(),
        Case::default(),
        Case::default(),
    );

    for round in 0..ROUNDS {
        eprintln!("round {} of {ROUNDS}", round + 1);

        let ours = NatsupDeployment::new(&ssh, &image);
        let before = counts(&sshd);
        let (took, _) = ours.run_ok(&["up"]);
        let server = Server {
            port: ours.port,
            ca_pem: ours.ca_pem(),
        };
        let took = took
            + wait_for_tls(
                &rt,
                &server.login("matchmaker", &ours.password("matchmaker")),
            );
        fresh.natsup.record(took, &sshd, before, false);
        let id = ours.project.container_id();
        let started = ours.project.started_at(&id);

        // One natsup run until `user` connects over TLS, and the sshd's counts before it.
        let timed = |cold_run: bool, user: &str| {
            let before = counts(&sshd);
            let (took, _) = if cold_run {
                ours.run_cold(&["up"])
            } else {
                ours.run_ok(&["up"])
            };
            let took = took + wait_for_tls(&rt, &server.login(user, &ours.password(user)));
            let restarted = ours.project.started_at(&id) != started;
            (took, before, restarted)
        };
        let (took, before, restarted) = timed(false, "matchmaker");
        rerun.natsup.record(took, &sshd, before, restarted);
        let (took, before, restarted) = timed(true, "matchmaker");
        cold.natsup.record(took, &sshd, before, restarted);
        ours.add_user("analytics");
        let (took, before, restarted) = timed(true, "analytics");
        change.natsup.record(took, &sshd, before, restarted);
        drop(ours);

        let mut theirs = TutorialDeployment::new(&ssh, &image);
        let before = counts(&sshd);
        let took = theirs.step("bootstrap");
        let server = Server {
            port: theirs.port,
            ca_pem: theirs.ca_pem(),
        };
        let took = took
            + wait_for_tls(
                &rt,
                &server.login("matchmaker", &theirs.password("matchmaker")),
            );
        fresh.tutorial.record(took, &sshd, before, false);
        let id = theirs.project.container_id();
        let started = theirs.project.started_at(&id);

        // One step of the script until `user` connects over TLS, and the sshd's counts before.
        let mut timed = |step: &str, user: &str| {
            let before = counts(&sshd);
            let took = theirs.step(step);
            let took = took + wait_for_tls(&rt, &server.login(user, &theirs.password(user)));
            let restarted = theirs.project.started_at(&id) != started;
            (took, before, restarted)
        };
        let (took, before, restarted) = timed("rerun", "matchmaker");
        rerun.tutorial.record(took, &sshd, before, restarted);
        let (took, before, restarted) = timed("rerun", "matchmaker");
        cold.tutorial.record(took, &sshd, before, restarted);
        let (took, before, restarted) = timed("change-config", "analytics");
        change.tutorial.record(took, &sshd, before, restarted);
    }

    let delay = match delay_ms {
        0 => "none".to_string(),
        ms => format!("{ms} ms each way on SSH"),
    };
    let shell = if plain_shell {
        "; remote shell without ~/.bashrc"
    } else {
        ""
    };
    println!(
        "### `up` vs the tutorial's steps (added delay: {delay}{shell}; median of {ROUNDS})\n"
    );
    println!(
        "| case | natsup | tutorial script | ratio | SSH connections (natsup / tutorial) \
         | remote sessions (natsup / tutorial) | container restarts (natsup / tutorial) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, case) in [
        ("fresh bootstrap", &fresh),
        ("re-run, nothing changed (right after)", &rerun),
        ("re-run, nothing changed (cold)", &cold),
        ("config change (add a user, cold)", &change),
    ] {
        let (a, b) = (
            median(case.natsup.wall.clone()),
            median(case.tutorial.wall.clone()),
        );
        println!(
            "| {name} | {} | {} | {} | {} / {} | {} / {} | {} / {} |",
            ms(a),
            ms(b),
            ratio(a, b),
            case.natsup.connections,
            case.tutorial.connections,
            case.natsup.sessions,
            case.tutorial.sessions,
            case.natsup.restarts,
            case.tutorial.restarts,
        );
    }

    noop_alone(&ssh, shell);
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
