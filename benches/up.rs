//! `natsup up` against the tutorial's manual steps, side by side in one run, over the same
//! real sshd and Docker engine (issue 3's benchmark). Run it with `./scripts/bench.sh`.
//!
//! Three cases, each run ROUNDS times with natsup and the baseline interleaved:
//! - fresh bootstrap: nothing on the server yet, until a TLS client connects;
//! - re-run: the same command again, with nothing changed;
//! - config change: one user added, until that user can connect.
//!
//! For each: wall time, SSH connections and remote sessions (counted from the sshd's own log,
//! scp/sftp transfers included), and container restarts (Docker's StartedAt).

#[path = "../tests/support/mod.rs"]
mod support;

mod harness;

use std::time::Duration;

use harness::clients::{Server, wait_for_tls};
use harness::natsup::NatsupDeployment;
use harness::tutorial::TutorialDeployment;
use harness::{SshEndpoint, median, ms, ratio};
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
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let image = test_image();
    let sshd = Sshd::start();
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
    let (mut fresh, mut rerun, mut change) = (Case::default(), Case::default(), Case::default());

    for round in 0..ROUNDS {
        eprintln!("round {} of {ROUNDS}", round + 1);

        let ours = NatsupDeployment::new(&ssh, &image);
        let before = counts(&sshd);
        let (took, _) = ours.run_ok(&["up"]);
        let server = Server {
            port: ours.port,
            ca_pem: ours.ca_pem(),
        };
        let took = took + wait_for_tls(&rt, &server, "matchmaker", &ours.password("matchmaker"));
        fresh.natsup.record(took, &sshd, before, false);
        let id = ours.project.container_id();
        let started = ours.project.started_at(&id);

        let before = counts(&sshd);
        let (took, _) = ours.run_ok(&["up"]);
        let took = took + wait_for_tls(&rt, &server, "matchmaker", &ours.password("matchmaker"));
        rerun
            .natsup
            .record(took, &sshd, before, ours.project.started_at(&id) != started);

        ours.add_user("analytics");
        let before = counts(&sshd);
        let (took, _) = ours.run_ok(&["up"]);
        let took = took + wait_for_tls(&rt, &server, "analytics", &ours.password("analytics"));
        change
            .natsup
            .record(took, &sshd, before, ours.project.started_at(&id) != started);
        drop(ours);

        let mut theirs = TutorialDeployment::new(&ssh, &image);
        let before = counts(&sshd);
        let took = theirs.step("bootstrap");
        let server = Server {
            port: theirs.port,
            ca_pem: theirs.ca_pem(),
        };
        let took = took + wait_for_tls(&rt, &server, "matchmaker", &theirs.password("matchmaker"));
        fresh.tutorial.record(took, &sshd, before, false);
        let id = theirs.project.container_id();
        let started = theirs.project.started_at(&id);

        let before = counts(&sshd);
        let took = theirs.step("rerun");
        let took = took + wait_for_tls(&rt, &server, "matchmaker", &theirs.password("matchmaker"));
        rerun.tutorial.record(
            took,
            &sshd,
            before,
            theirs.project.started_at(&id) != started,
        );

        let before = counts(&sshd);
        let took = theirs.step("change-config");
        let took = took + wait_for_tls(&rt, &server, "analytics", &theirs.password("analytics"));
        let restarted = theirs.project.started_at(&id) != started;
        change.tutorial.record(took, &sshd, before, restarted);
    }

    let delay = match delay_ms {
        0 => "none".to_string(),
        ms => format!("{ms} ms each way on SSH"),
    };
    println!("### `up` vs the tutorial's steps (added delay: {delay}; median of {ROUNDS})\n");
    println!(
        "| case | natsup | tutorial script | ratio | SSH connections (natsup / tutorial) \
         | remote sessions (natsup / tutorial) | container restarts (natsup / tutorial) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, case) in [
        ("fresh bootstrap", &fresh),
        ("re-run, nothing changed", &rerun),
        ("config change (add a user)", &change),
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
}
