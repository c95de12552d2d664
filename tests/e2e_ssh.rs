//! `up` and `plan` over a real sshd on 127.0.0.1 into this machine's real Docker engine
//! (issue 3). Each test has its own sshd, deployment folder and Compose project, removed by id
//! when it ends.

use natsup_dev_support as support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use natsup::config::Config;
use natsup::deploy;
use natsup::remote::{Output as RemoteOutput, Remote, SshDestination, SshRemote};
use natsup::state::{State, StateDir};
use support::standin::StandInImage;
use support::workspace::{Workspace, text};
use support::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bootstrap_then_noop_plan_and_reload_over_one_ssh_connection() {
    let sshd = Sshd::start();
    let ws = Workspace::new("ssh");
    ws.init_ssh("sshboot", &sshd);

    let out = ws.ok(&["up"]);
    assert!(
        stderr(&out).contains("started in") && stderr(&out).contains("(2 remote commands)"),
        "{}",
        text(&out)
    );
    assert!(
        stdout(&out).contains("OK: 15 of 15 checks OK"),
        "{}",
        text(&out)
    );
    assert_eq!(sshd.connections(), 1, "a bootstrap is one SSH connection");
    assert_eq!(sshd.sessions(), 2, "observe + apply:\n{}", sshd.log());
    let id = ws.project.container_id();
    let started = ws.project.started_at(&id);

    // A second up changes nothing: same container, same start, one read-only command.
    let out = ws.ok(&["up"]);
    assert!(
        stderr(&out).contains("nothing to do") && stderr(&out).contains("(1 remote command)"),
        "{}",
        text(&out)
    );
    assert_eq!(ws.project.container_id(), id);
    assert_eq!(
        ws.project.started_at(&id),
        started,
        "a no-op up restarted the server"
    );
    // ... over the connection the first run left open, with no new SSH handshake.
    assert!(stderr(&out).contains("an earlier run"), "{}", text(&out));
    assert_eq!(sshd.connections(), 1, "the second run opened a connection");
    assert_eq!(ws.runtime.masters().len(), 1, "one master is left open");

    // A master that died without cleaning up (killed, or its host rebooted) is noticed and
    // replaced.
    kill_master(&ws.runtime.masters()[0]);
    let out = ws.ok(&["up"]);
    assert!(stderr(&out).contains("nothing to do"), "{}", text(&out));
    assert_eq!(sshd.connections(), 2);
    assert_eq!(ws.runtime.masters().len(), 1, "{}", text(&out));

    // With NATSUP_SSH_PERSIST=0 a run leaves nothing open behind it.
    assert!(exit_master(&ws.runtime.masters()[0]).status.success());
    let out = ws
        .natsup()
        .args(["plan"])
        .env("NATSUP_SSH_PERSIST", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(sshd.connections(), 3);
    assert!(
        ws.runtime.masters().is_empty(),
        "NATSUP_SSH_PERSIST=0 left a master open"
    );

    let out = ws.ok(&["plan"]);
    assert!(
        stdout(&out).starts_with("action: nothing"),
        "{}",
        text(&out)
    );
    let out = ws.ok(&["plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan --json");
    assert_eq!(plan["action"], "nothing", "{plan}");

    // A new user is a reload: no restart, and the user can log in right after.
    ws.edit_config(
        "- name: webhook\n",
        "- name: webhook\n- name: analytics\n  permissions:\n    publish:\n      allow:\n      - analytics.>\n",
    );
    let out = ws.ok(&["plan"]);
    assert!(stdout(&out).starts_with("action: reload"), "{}", text(&out));
    assert!(
        !stdout(&out).contains("$2b$"),
        "plan printed a hash:\n{}",
        text(&out)
    );
    let out = ws.ok(&["up"]);
    assert!(stderr(&out).contains("reloaded"), "{}", text(&out));
    assert_eq!(ws.project.container_id(), id);
    assert_eq!(
        ws.project.started_at(&id),
        started,
        "a reload restarted the server"
    );
    assert!(ws.live_conf().contains("analytics"));
    let analytics = ws.login("analytics");
    workspace::runtime()
        .block_on(analytics.connect())
        .expect("the new user logs in after the reload");
    ws.verify(&[]);
}

#[test]
fn a_change_that_needs_a_new_container_keeps_jetstream_messages() {
    let sshd = Sshd::start();
    let ws = Workspace::deployed("sshrecreate", &sshd);
    let id = ws.project.container_id();
    let started = ws.project.started_at(&id);

    let rt = workspace::runtime();
    let login = ws.login("matchmaker");
    rt.block_on(async {
        let client = login.connect().await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "KEEP".into(),
            subjects: vec!["keep.>".into()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
        for i in 0..25 {
            js.publish(format!("keep.{i}"), "kept".into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });

    // JetStream limits cannot be reloaded on 2.10 (the reload fails with only a log
    // line), so the plan recreates.
    ws.edit_config("max_memory_store: 104857600", "max_memory_store: 209715200");
    let out = ws.ok(&["plan"]);
    assert!(
        stdout(&out).starts_with("action: recreate"),
        "{}",
        text(&out)
    );
    let out = ws.ok(&["up"]);
    assert!(stderr(&out).contains("recreated"), "{}", text(&out));
    let id2 = ws.project.container_id();
    assert_ne!(
        (id2.clone(), ws.project.started_at(&id2)),
        (id, started),
        "the container was not recreated"
    );
    let messages = rt.block_on(async {
        let client = login.connect().await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream("KEEP").await.unwrap();
        stream.info().await.unwrap().state.messages
    });
    assert_eq!(messages, 25, "JetStream messages were lost in the recreate");
}

#[test]
fn unknown_or_changed_host_keys_and_wrong_identities_are_refused() {
    let sshd = Sshd::start();
    let ws = Workspace::new("hostkey");
    ws.init_ssh("sshhostkey", &sshd);
    let empty = ws.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let known_hosts = sshd.known_hosts().display().to_string();

    // Unknown host, strict policy: refused before anything runs.
    ws.edit_config(&known_hosts, &empty.display().to_string());
    let out = ws.run(&["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains("host key"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(sshd.sessions(), 0, "a command ran on an unverified host");
    assert!(ws.project.container_ids().is_empty());

    // Changed host key: refused even when first contacts may be accepted.
    ws.edit_config(
        &empty.display().to_string(),
        &sshd.wrong_known_hosts().display().to_string(),
    );
    let out = ws.run(&["up", "--accept-new-host-key"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("host key"), "{}", text(&out));
    assert_eq!(sshd.sessions(), 0);

    // A key the server does not authorize.
    ws.edit_config(
        &sshd.wrong_known_hosts().display().to_string(),
        &known_hosts,
    );
    ws.edit_config(
        &sshd.identity().display().to_string(),
        &sshd.other_identity().display().to_string(),
    );
    let out = ws.run(&["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains("refused the SSH key"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(ws.project.container_ids().is_empty());

    // First contact with --accept-new-host-key records the key and deploys.
    ws.edit_config(
        &sshd.other_identity().display().to_string(),
        &sshd.identity().display().to_string(),
    );
    ws.edit_config(&known_hosts, &empty.display().to_string());
    ws.ok(&["up", "--accept-new-host-key"]);
    let recorded = std::fs::read_to_string(&empty).unwrap();
    let host_key = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    let host_key = host_key.split_whitespace().nth(2).unwrap();
    assert!(recorded.contains(host_key), "{recorded}");
    ws.ok(&["up"]); // and from then on the strict check passes
}

#[test]
fn a_config_nats_server_refuses_changes_nothing_live() {
    let sshd = Sshd::start();
    let ws = Workspace::new("refused");
    ws.init_ssh("sshrefused", &sshd);
    ws.ok(&["up"]);
    let id = ws.project.container_id();
    let started = ws.project.started_at(&id);
    let live_before = ws.live_conf();

    // A new user, validated by an image whose config check refuses it: the reload must not
    // happen at all.
    let refusing = StandInImage::build("refuses.c");
    ws.edit_config("- name: webhook\n", "- name: webhook\n- name: analytics\n");
    let out = ws.run(&["up", "--image", &refusing.0]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains("nats-server refused"), "{err}");
    assert!(err.contains("stand-in refuses this configuration"), "{err}");
    assert!(err.contains("nothing on the server was changed"), "{err}");
    assert_eq!(ws.live_conf(), live_before, "the live config changed");
    assert_eq!(ws.project.started_at(&id), started);
    assert!(
        !ws.remote_dir.join(".natsup/staging").exists(),
        "staging was left behind"
    );

    // A server key that does not match its certificate (a run stopped between writing the
    // two) never reaches the server: opening the state issues a new pair, and the new user
    // goes out by reload with it.
    let key = ws.state_dir().join("sshrefused/server/nats-server-key.pem");
    let other = natsup::pki::new_ca("other", time::OffsetDateTime::now_utc()).unwrap();
    std::fs::write(&key, other.key_pem().expose()).unwrap();
    let out = ws.ok(&["up"]);
    assert!(
        stderr(&out).contains("issued a server certificate") && stderr(&out).contains("reloaded"),
        "{}",
        text(&out)
    );
    assert_eq!(ws.project.started_at(&id), started);
    assert!(ws.live_conf().contains("analytics"));
}

#[test]
fn a_server_that_will_not_start_is_rolled_back() {
    let crashy = StandInImage::build("crashy.c");
    let sshd = Sshd::start();
    let ws = Workspace::deployed("sshrollback", &sshd);
    let good_image = test_image();

    let out = ws.run(&["up", "--image", &crashy.0, "--timeout", "10"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains("rolled back"), "{err}");
    let id = ws.project.container_id();
    let image = run(Command::new("docker").args(["inspect", "-f", "{{.Config.Image}}", &id]));
    assert_eq!(String::from_utf8_lossy(&image.stdout).trim(), good_image);
    let compose = std::fs::read_to_string(ws.remote_dir.join("docker-compose.yaml")).unwrap();
    assert!(!compose.contains("crashy"), "{compose}");
    ws.verify(&[]);
    let out = ws.ok(&["up"]);
    assert!(stderr(&out).contains("nothing to do"), "{}", text(&out));
}

#[test]
fn a_kept_connection_that_fails_its_first_command_is_replaced() {
    let sshd = Sshd::start();
    let ws = Workspace::deployed("sshstale", &sshd);
    assert_eq!(ws.runtime.masters().len(), 1);

    keep_connections_in(&ws);
    let config = Config::load(&ws.path().join("natsup.yaml")).unwrap();
    let target = SshDestination::from_config(config.ssh.as_ref().unwrap(), false);
    workspace::runtime().block_on(async {
        let mut remote = SshRemote::connect(&target).await.expect("connect");
        assert!(remote.reused(), "the kept connection was not picked up");
        // It dies between the check and the first command, as a master does whose server
        // rebooted: the check only asks the local master process, the command reaches the
        // server and gets a reset.
        assert!(
            exit_master(&remote.control_socket().unwrap())
                .status
                .success()
        );
        let out = remote
            .run("probe", "echo still-here", b"")
            .await
            .expect("the read-only first command runs on a new connection");
        assert_eq!(out.stdout.trim(), "still-here");
        assert!(!remote.reused());
        assert_eq!(remote.commands(), 1);
        remote.close().await;
    });
    assert_eq!(sshd.connections(), 2);
    assert_eq!(ws.runtime.masters().len(), 1, "the new connection is kept");
}

/// Makes this test process (which drives `SshRemote` itself) look for and keep SSH
/// connections in the workspace's runtime dir, which the workspace closes at the end.
fn keep_connections_in(ws: &Workspace) {
    // SAFETY: nextest runs each test in a process of its own, and this runs before the test
    // starts any thread that reads the environment.
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", &ws.runtime.0) };
}

/// SIGKILLs the master behind `socket`, which leaves the socket file behind as a crash would.
fn kill_master(socket: &Path) {
    let out = run(Command::new("ssh")
        .arg("-S")
        .arg(socket)
        .args(["-O", "check", "x"]));
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let pid: i32 = text
        .split("pid=")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {text:?}"));
    run(Command::new("kill").args(["-9", &pid.to_string()]));
    for _ in 0..50 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        socket.exists(),
        "the socket of a killed master stays behind"
    );
}

/// Forwards to the real SSH remote, but cuts the connection during the apply: either the
/// server sees the upload end halfway (`Truncate`), or the SSH master is killed while the
/// remote script runs (`KillMaster`).
struct Cutting {
    inner: SshRemote,
    how: Cut,
}

#[derive(Clone, Copy)]
enum Cut {
    Truncate,
    KillMaster,
}

impl Remote for Cutting {
    async fn run(
        &mut self,
        step: &str,
        script: &str,
        stdin: &[u8],
    ) -> natsup::error::Result<RemoteOutput> {
        if stdin.is_empty() {
            return self.inner.run(step, script, stdin).await;
        }
        match self.how {
            Cut::Truncate => {
                self.inner
                    .run(step, script, &stdin[..stdin.len() / 2])
                    .await
            }
            Cut::KillMaster => {
                let socket = self.inner.control_socket().expect("control socket");
                let killer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(300));
                    exit_master(&socket);
                });
                let result = self.inner.run(step, script, stdin).await;
                killer.join().unwrap();
                result
            }
        }
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn commands(&self) -> usize {
        self.inner.commands()
    }
}

/// Runs one converge (observe, plan, apply) through a cutting remote, as `up` would.
fn cut_up(ws: &Workspace, how: Cut) -> natsup::error::Result<()> {
    let config = Config::load(&ws.path().join("natsup.yaml")).unwrap();
    let dir = StateDir::new(&ws.state_dir(), &config.name);
    let (state, _) = State::ensure(&config, &dir, time::OffsetDateTime::now_utc()).unwrap();
    let ssh = config.ssh.as_ref().unwrap();
    workspace::runtime().block_on(async {
        let inner = SshRemote::connect(&SshDestination::from_config(ssh, false)).await?;
        let mut remote = Cutting { inner, how };
        let node = deploy::Server::of(&config, 0, &state);
        let observed = deploy::observe(&mut remote, &node).await?;
        let plan = natsup::plan::plan(&node.bundle, &observed);
        assert_ne!(plan.action, natsup::plan::Action::Nothing);
        deploy::apply(&mut remote, &node, &plan, Duration::from_secs(20)).await
    })
}

#[test]
fn ssh_cut_mid_upload_leaves_the_old_config_live_and_the_next_up_clean() {
    let sshd = Sshd::start();
    let ws = Workspace::deployed("sshcut", &sshd);
    keep_connections_in(&ws);
    let id = ws.project.container_id();
    let started = ws.project.started_at(&id);
    let live_before = ws.live_conf();
    let matchmaker = ws.login("matchmaker");

    // The upload ends halfway: the server refuses it and nothing live changes.
    ws.edit_config("- name: webhook\n", "- name: webhook\n- name: analytics\n");
    let err = cut_up(&ws, Cut::Truncate).expect_err("a truncated upload was applied");
    let err = err.to_string();
    assert!(
        err.contains("cut short") || err.contains("does not match what natsup sent"),
        "{err}"
    );
    assert_eq!(ws.live_conf(), live_before);
    assert_eq!(ws.project.started_at(&id), started);
    assert!(!ws.remote_dir.join(".natsup/staging").exists());
    workspace::runtime()
        .block_on(matchmaker.connect())
        .expect("the old config still serves its users");

    // The next up is clean: it applies the change by reload.
    let out = ws.ok(&["up"]);
    assert!(stderr(&out).contains("reloaded"), "{}", text(&out));
    assert!(ws.live_conf().contains("analytics"));
    assert_eq!(ws.project.started_at(&id), started);

    // The SSH master dies while the remote script runs: the server side finishes or rolls
    // back on its own (it ignores the hangup), and the next up converges either way.
    ws.edit_config(
        "- name: analytics\n",
        "- name: analytics\n- name: billing\n",
    );
    let _ = cut_up(&ws, Cut::KillMaster);
    std::thread::sleep(Duration::from_secs(2));
    let out = ws.ok(&["up"]);
    let err = stderr(&out);
    assert!(
        err.contains("nothing to do") || err.contains("reloaded"),
        "{}",
        text(&out)
    );
    assert!(ws.live_conf().contains("billing"));
    assert_eq!(ws.project.started_at(&id), started);
    ws.verify(&[]);
}

#[test]
fn a_first_start_that_fails_leaves_nothing_running_and_the_next_up_starts() {
    let crashy = StandInImage::build("crashy.c");
    let sshd = Sshd::start();
    let ws = Workspace::new("firstfail");
    ws.init_ssh("sshfirstfail", &sshd);

    let out = ws.run(&["up", "--image", &crashy.0, "--timeout", "10"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("did not start"), "{}", text(&out));
    assert!(
        ws.project.container_ids().is_empty(),
        "a crash-looping first container was left behind"
    );

    let out = ws.ok(&["up"]);
    assert!(stderr(&out).contains("started in"), "{}", text(&out));
    ws.verify(&[]);
}
