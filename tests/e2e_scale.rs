//! Hundreds of connected clients through day-2 operations (issue 10), over the real sshd and
//! Docker: on every reload nats-server re-checks each connected client's bcrypt password
//! while new connections wait, so what a reload costs grows with the crowd and the bcrypt
//! cost. At natsup's default cost (4) a rotation under 240 clients disconnects none of the
//! clients it does not concern, times none out, and leaves no acknowledged message behind.

use natsup_dev_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::load::{self, Crowd};
use support::workspace::{Login, Workspace, runtime, text};
use support::*;

/// Clients of the users a rotation of `webhook` does not concern.
const CROWD: usize = 240;
const UNAFFECTED: [&str; 3] = ["matchmaker", "matchmaker_httpd", "gameserver"];

/// A client of an unaffected user connecting in a loop (async-nats' default 5 s connect
/// timeout, as a gameserver has): the slowest connect, and how many failed and why.
struct Prober {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Duration, Vec<String>, usize)>,
}

impl Prober {
    fn start(rt: &tokio::runtime::Runtime, login: Login) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let task = rt.spawn({
            let stop = stop.clone();
            async move {
                let (mut slowest, mut failures, mut attempts) = (Duration::ZERO, Vec::new(), 0);
                // Bounded: at most 2000 attempts, whatever the operation takes.
                while !stop.load(Ordering::SeqCst) && attempts < 2000 {
                    attempts += 1;
                    let started = Instant::now();
                    match login.options().connect(login.url()).await {
                        Ok(client) => {
                            let _ = client.flush().await;
                        }
                        Err(e) => failures.push(natsup::error::chain(&e)),
                    }
                    slowest = slowest.max(started.elapsed());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (slowest, failures, attempts)
            }
        });
        Prober { stop, task }
    }

    fn stop(self, rt: &tokio::runtime::Runtime) -> (Duration, Vec<String>, usize) {
        self.stop.store(true, Ordering::SeqCst);
        rt.block_on(self.task).expect("prober task")
    }
}

#[test]
fn rotation_under_hundreds_of_clients_disconnects_and_times_out_nobody_else() {
    let sshd = Sshd::start();
    let ws = Workspace::deployed("scale", &sshd);
    let rt = runtime();
    let logins: Vec<Login> = UNAFFECTED.iter().map(|u| ws.login(u)).collect();
    load::create_stream(&rt, &logins[0]);

    // Every user's hash is at the default cost, and status says so.
    let status: serde_json::Value =
        serde_json::from_slice(&ws.run(&["status", "--json"]).stdout).expect("status json");
    for user in status["users"].as_array().expect("users") {
        assert_eq!(user["bcrypt_cost"], 4, "{user}");
    }

    // nats-server in the real image may hold thousands of connections: Go raises its soft
    // open-files limit to the hard one, and Docker gives the container the daemon's.
    let pid = run(std::process::Command::new("docker").args([
        "inspect",
        "-f",
        "{{.State.Pid}}",
        &ws.project.container_id(),
    ]));
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let open_files: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .expect("Max open files");
    assert!(
        open_files >= 4096,
        "nats-server may open only {open_files} files: a few thousand clients need more"
    );

    let connecting = Instant::now();
    let crowd = Crowd::start_every(&rt, &logins, CROWD, Duration::from_millis(500));
    eprintln!("{CROWD} clients connected in {:?}", connecting.elapsed());
    let prober = Prober::start(&rt, ws.login("matchmaker"));
    std::thread::sleep(Duration::from_secs(1));
    let rotating = Instant::now();
    let out = ws.ok(&["rotate-passwords", "--user", "webhook"]);
    let took = rotating.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let (slowest, failures, attempts) = prober.stop(&rt);
    let report = crowd.stop(&rt);
    eprintln!(
        "rotate-passwords under {CROWD} clients: {took:?}; slowest new connect {slowest:?} of \
         {attempts}; {} acked",
        report.acked
    );

    assert!(text(&out).contains("rotated: webhook"), "{}", text(&out));
    assert_eq!(
        report.disconnects, 0,
        "unaffected clients were disconnected"
    );
    assert_eq!(
        report.errors, 0,
        "publishes or reads failed during the rotation"
    );
    assert!(
        report.acked >= CROWD as u64,
        "the crowd barely worked: {} acks",
        report.acked
    );
    assert_eq!(
        load::stream_messages(&rt, &logins[0]),
        report.acked,
        "acknowledged messages are missing from the stream"
    );
    assert!(
        failures.is_empty(),
        "new connections failed during the rotation ({} of {attempts}): {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

/// Hashes from an older natsup (cost 11) are made again at the config's cost by the next
/// `up`, of the same passwords: one reload, and the connected clients never notice.
#[test]
fn a_changed_bcrypt_cost_is_one_reload_that_disconnects_nobody() {
    let sshd = Sshd::start();
    let ws = Workspace::new("cost");
    ws.init_ssh("cost", &sshd);
    ws.edit_config("bcrypt_cost: 4", "bcrypt_cost: 11");
    ws.ok(&["up"]);
    assert!(ws.live_conf().contains("\"$2b$11$"), "{}", ws.live_conf());
    let id = ws.project.container_id();
    let started = ws.project.started_at(&id);
    let rt = runtime();
    let logins: Vec<Login> = ["matchmaker", "gameserver"]
        .iter()
        .map(|u| ws.login(u))
        .collect();
    load::create_stream(&rt, &logins[0]);
    let crowd = Crowd::start_every(&rt, &logins, 10, Duration::from_millis(100));

    ws.edit_config("bcrypt_cost: 11", "bcrypt_cost: 4");
    let plan = ws.ok(&["plan"]);
    assert!(text(&plan).contains("action: reload"), "{}", text(&plan));
    let out = ws.ok(&["up"]);
    std::thread::sleep(Duration::from_millis(500));
    let report = crowd.stop(&rt);

    assert!(
        text(&out).contains("again at bcrypt cost 4")
            || text(&plan).contains("again at bcrypt cost 4"),
        "natsup did not say it re-hashed: {}{}",
        text(&plan),
        text(&out)
    );
    assert_eq!(report.disconnects, 0, "re-hashing disconnected clients");
    assert_eq!(report.errors, 0);
    assert_eq!(
        ws.project.started_at(&id),
        started,
        "re-hashing restarted the server"
    );
    let live = ws.live_conf();
    assert!(
        live.contains("\"$2b$04$") && !live.contains("$2b$11$"),
        "{live}"
    );
    // The passwords themselves did not change: the clients' own logins still work.
    for login in &logins {
        rt.block_on(login.connect())
            .expect("the same password still logs in");
    }
}
