//! Day-2 operations as the people connected see them, natsup against the tutorial's way (edit
//! the config, copy it, `docker-compose restart`), side by side in one run (issue 4's
//! benchmark). Run it with `./scripts/bench.sh`.
//!
//! For password rotation (gameserver) and certificate renewal, while each runs:
//! - 20 clients of the other users stay connected, publishing and receiving every 20 ms; we
//!   count the disconnects the client library reports;
//! - one more client of an unaffected user connects in a tight loop; the failed-connect
//!   window is the total time from a failed attempt to the next one that succeeds;
//! - wall time is until the change is live and a new client connects.

mod harness;

use natsup_dev_support as support;

use std::time::Duration;

use harness::natsup::NatsupDeployment;
use harness::tutorial::TutorialDeployment;
use harness::{Server, SshEndpoint, ms, ratio};
use support::load::{ConnectLoop, Crowd, Load, Window, wait_for_tls};
use support::workspace::Login;
use support::{Sshd, test_image};
use tokio::runtime::Runtime;

/// Connected clients of unaffected users (NATSUP_BENCH_CLIENTS overrides: the reload stall
/// grows with it).
fn clients() -> usize {
    std::env::var("NATSUP_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}
const UNAFFECTED: [&str; 3] = ["matchmaker", "matchmaker_httpd", "webhook"];

struct Outcome {
    wall: Duration,
    disconnects: usize,
    window: Window,
}

/// Runs `operation` with the crowd and the connect loop watching.
fn watched(
    rt: &Runtime,
    server: &Server,
    password: &dyn Fn(&str) -> String,
    operation: &mut dyn FnMut() -> Duration,
) -> Outcome {
    let logins: Vec<Login> = UNAFFECTED
        .iter()
        .map(|u| server.login(u, &password(u)))
        .collect();
    // Each publishing to a subject of its own and receiving it back every 20 ms.
    let crowd = Crowd::start_with(
        rt,
        &logins,
        clients(),
        Load::echo(Duration::from_millis(20)),
    );
    let probe = ConnectLoop::start(rt, &server.login("matchmaker", &password("matchmaker")));
    std::thread::sleep(Duration::from_millis(500));
    let took = operation();
    let wall = took + wait_for_tls(rt, &server.login("gameserver", &password("gameserver")));
    // Let reconnects (if any) happen and be counted.
    std::thread::sleep(Duration::from_secs(1));
    let window = probe.stop(rt);
    let report = crowd.stop(rt);
    let (disconnects, received) = (report.disconnects, report.received);
    assert!(
        received > 0 || clients() == 0,
        "the crowd received nothing: the benchmark is broken"
    );
    Outcome {
        wall,
        disconnects,
        window,
    }
}

fn main() {
    natsup::install_crypto_provider();
    let rt = Runtime::new().expect("tokio");
    let image = test_image();
    let sshd = Sshd::start();
    let ssh = SshEndpoint::direct(&sshd);

    let ours = NatsupDeployment::new(&ssh, &image);
    ours.run_ok(&["up"]);
    let our_server = Server {
        port: ours.port,
        ca_pem: ours.ca_pem(),
    };
    let our_password = |user: &str| ours.password(user);

    let mut theirs = TutorialDeployment::new(&ssh, &image);
    theirs.step("bootstrap");
    let their_server = Server {
        port: theirs.port,
        ca_pem: theirs.ca_pem(),
    };
    wait_for_tls(
        &rt,
        &their_server.login("matchmaker", &theirs.password("matchmaker")),
    );

    eprintln!("password rotation");
    let ours_rotate = watched(&rt, &our_server, &our_password, &mut || {
        ours.run_ok(&["rotate-passwords", "--user", "gameserver"]).0
    });
    let theirs_rotate = {
        // After the edit, gameserver's new password is the one that must work.
        let mut after = theirs.passwords();
        after.gameserver_rotated = true;
        let lookup = |user: &str| after.get(user);
        watched(&rt, &their_server, &lookup, &mut || {
            theirs.step("rotate-password")
        })
    };

    eprintln!("certificate renewal");
    let ours_renew = watched(&rt, &our_server, &our_password, &mut || {
        ours.run_ok(&["renew-cert", "--force"]).0
    });
    let theirs_renew = {
        let now = theirs.passwords();
        let lookup = |user: &str| now.get(user);
        watched(&rt, &their_server, &lookup, &mut || {
            theirs.step("renew-cert")
        })
    };

    println!(
        "### Day-2 operations with {} connected clients of unaffected users\n",
        clients()
    );
    println!(
        "| operation | disconnects (natsup / tutorial) | failed-connect window (natsup / tutorial) \
         | failed attempts (natsup / tutorial) | slowest connect (natsup / tutorial) \
         | wall time (natsup / tutorial) | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, a, b) in [
        ("rotate gameserver's password", &ours_rotate, &theirs_rotate),
        ("renew the server certificate", &ours_renew, &theirs_renew),
    ] {
        println!(
            "| {name} | {} / {} | {} / {} | {} of {} / {} of {} | {} / {} | {} / {} | {} |",
            a.disconnects,
            b.disconnects,
            ms(a.window.failed_for),
            ms(b.window.failed_for),
            a.window.failures,
            a.window.attempts,
            b.window.failures,
            b.window.attempts,
            ms(a.window.slowest),
            ms(b.window.slowest),
            ms(a.wall),
            ms(b.wall),
            ratio(a.wall, b.wall),
        );
    }
}
