//! `up --local`: the same executor against this machine's Docker, no SSH at all (issue 3).

use natsup_dev_support as support;

use std::net::TcpListener;

use support::workspace::{Workspace, text};
use support::*;

#[test]
fn up_local_with_a_config_needs_no_ssh() {
    let ws = Workspace::new("local");
    ws.init_local("localcfg");
    assert!(!ws.config().contains("ssh:"), "{}", ws.config());

    // --dry-run shows the plan and starts nothing.
    let out = ws.ok(&["up", "--local", "--dry-run"]);
    assert!(text(&out).contains("plan: start"), "{}", text(&out));
    assert!(
        text(&out).contains("Added nats-config/nats-server.conf"),
        "{}",
        text(&out)
    );
    assert!(
        ws.project.container_ids().is_empty(),
        "--dry-run started a container"
    );
    assert!(!ws.remote_dir.exists(), "--dry-run wrote to the server");
    let out = ws.ok(&["up", "--local"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("OK: 15 of 15 checks OK"),
        "{}",
        text(&out)
    );
    // status --json: the documented keys (README, "JSON output").
    let out = ws.ok(&["status", "--local", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = status
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "deployment",
        "target",
        "container",
        "certificate",
        "in_sync",
        "pending_action",
        "files_differing",
        "ca_phase",
        "users",
    ] {
        assert!(keys.contains(&key), "status --json lacks {key}: {status}");
    }
    assert_eq!(status["in_sync"], true);
    assert_eq!(status["pending_action"], "nothing");
    assert_eq!(status["certificate"]["matches_local"], true);
    assert_eq!(status["container"]["state"], "running");
    let rotated = status["users"][0]["password_rotated_at"].as_str().unwrap();
    time::OffsetDateTime::parse(rotated, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("password_rotated_at {rotated:?} is not RFC 3339: {e}"));

    // rotate-passwords --dry-run changes no password, here or on the server.
    let before = ws.login("webhook").password;
    let live = ws.live_conf();
    let out = ws.ok(&[
        "rotate-passwords",
        "--local",
        "--user",
        "webhook",
        "--dry-run",
    ]);
    assert!(
        text(&out).contains("would rotate the passwords of: webhook"),
        "{}",
        text(&out)
    );
    assert_eq!(ws.login("webhook").password, before);
    assert_eq!(ws.live_conf(), live);
    let secrets = std::fs::read_to_string(ws.state_dir().join("localcfg/secrets.yaml")).unwrap();
    assert!(
        !secrets.contains("pending"),
        "--dry-run saved a pending password"
    );

    // renew-cert: not due, so nothing without --force; --dry-run says what it would do.
    let cert = std::fs::read(ws.state_dir().join("localcfg/server/nats-server-cert.pem")).unwrap();
    let out = ws.ok(&["renew-cert", "--local"]);
    assert!(text(&out).contains("no renewal needed"), "{}", text(&out));
    let out = ws.ok(&["renew-cert", "--local", "--force", "--dry-run"]);
    assert!(text(&out).contains("would renew"), "{}", text(&out));
    assert_eq!(
        std::fs::read(ws.state_dir().join("localcfg/server/nats-server-cert.pem")).unwrap(),
        cert
    );
    assert_eq!(ws.live_conf(), live);

    // Without --local, a config with no ssh section says what to do.
    let out = ws.run(&["up"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--local"), "{}", text(&out));
    ws.verify(&[]);

    // A stopped container is started again: same container, and readiness is judged on this
    // start's log lines, not the old "Server is ready".
    let id = ws.project.container_id();
    run(std::process::Command::new("docker").args(["stop", &id]));
    let out = ws.ok(&["up", "--local"]);
    assert!(
        text(&out).contains("the container is exited"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("started in"), "{}", text(&out));
    assert_eq!(ws.project.container_id(), id);
    ws.verify(&[]);
}

/// Held while a test uses 127.0.0.1:4222, the one fixed port of the suite: the built-in local
/// deployment publishes there, and that is what the test checks. A checkout of natsup's tests
/// in another folder, run at the same time on this machine, waits for it instead of finding
/// the port taken. An abstract Unix socket is the lock: one name per machine (per network
/// namespace), no file to leave behind, released when the process ends however it ends.
fn hold_port_4222() -> std::os::unix::net::UnixListener {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    use std::time::{Duration, Instant};
    let name = SocketAddr::from_abstract_name(b"natsup-test-127.0.0.1:4222").unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match UnixListener::bind_addr(&name) {
            Ok(held) => return held,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("another test held 127.0.0.1:4222 for 5 minutes: {e}"),
        }
    }
}

/// With no natsup.yaml at all: the built-in `local` deployment on 127.0.0.1:4222, files in
/// ~/natsup-local; afterwards the other commands find it without a config file.
#[test]
fn up_local_without_a_config_uses_the_built_in_deployment() {
    let _held = hold_port_4222();
    assert!(
        TcpListener::bind("127.0.0.1:4222").is_ok(),
        "127.0.0.1:4222 is taken on this machine: this test needs it free \
         (the built-in local deployment publishes there)"
    );
    let ws = Workspace::new("builtin");
    let remote_dir = ws.path().join("home/natsup-local");
    std::fs::create_dir_all(ws.path().join("home")).unwrap();
    let project = ComposeProject::new(&remote_dir);

    let out = ws.ok(&["up", "--local", "--image", &test_image()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tls://localhost:4222"),
        "{}",
        text(&out)
    );
    assert!(remote_dir.join("docker-compose.yaml").is_file());
    assert_eq!(project.container_ids().len(), 1);
    assert!(ws.state_dir().join("local/ca/rootCA.pem").is_file());
    let compose = std::fs::read_to_string(remote_dir.join("docker-compose.yaml")).unwrap();
    assert!(compose.contains("127.0.0.1:4222:4222"), "{compose}");

    // env, verify and a second up work with no natsup.yaml.
    let out = ws.ok(&["env", "gameserver"]);
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(env.contains("NATS_HOST=localhost"), "{env}");
    ws.verify(&[]);
    let out = ws.ok(&["up", "--local", "--image", &test_image()]);
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    // The built-in deployment remembers the image it runs (there is no natsup.yaml to hold
    // it): `status` is in sync and a plain `up --local` changes nothing, rather than going
    // back to the default image, which no registry here could pull.
    let out = ws.ok(&["status", "--local"]);
    assert!(text(&out).contains("in sync"), "{}", text(&out));
    let out = ws.ok(&["up", "--local"]);
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
}

/// A deployment made by a natsup that kept no owner record (issue 17, item 4), with no `id`
/// in its config: the next `up` is a no-op on the real server (same container, same start),
/// records the state's owner, and changes nothing else of the state; another config of the
/// same name for other servers is then refused it before anything is touched.
#[test]
fn an_old_state_without_an_owner_record_keeps_working() {
    let ws = Workspace::new("oldowner");
    ws.init_local("oldowner");
    let yaml: Vec<String> = ws
        .config()
        .lines()
        .filter(|l| !l.starts_with("id: "))
        .map(String::from)
        .collect();
    ws.set_config(&(yaml.join("\n") + "\n"));
    ws.ok(&["up", "--local"]);
    let id = ws.project.container_ids().pop().expect("a container");
    let started = ws.project.started_at(&id);
    let state = ws.state_dir().join("oldowner");
    let record = state.join(natsup::state::OWNER_FILE);
    std::fs::remove_file(&record).unwrap();
    let files = |dir: &std::path::Path| {
        let mut all = Vec::new();
        for sub in ["ca", "server"] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap() {
                let p = e.unwrap().path();
                all.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
        all.push((
            dir.join("secrets.yaml"),
            std::fs::read(dir.join("secrets.yaml")).unwrap(),
        ));
        all.sort();
        all
    };
    let before = files(&state);

    let out = ws.ok(&["up", "--local"]);
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    assert_eq!(ws.project.container_ids(), vec![id.clone()]);
    assert_eq!(ws.project.started_at(&id), started);
    assert_eq!(files(&state), before);
    assert!(
        record.is_file(),
        "the first up after the upgrade recorded no owner"
    );

    // A copy for another host (`--local` has no ssh: only its host and remote dir tell it).
    // Its project is this test's, so that whatever it would start is removed.
    let elsewhere = ws.path().join("server/elsewhere");
    let _other_project = ComposeProject::new(&elsewhere);
    let other = ws
        .config()
        .replace("host: 127.0.0.1", "host: 127.0.0.9")
        .replace(
            &ws.remote_dir.display().to_string(),
            &elsewhere.display().to_string(),
        );
    std::fs::write(ws.path().join("other.yaml"), other).unwrap();
    let out = ws.run(&["-c", "other.yaml", "up", "--local"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("names none of those servers"),
        "{}",
        text(&out)
    );
    assert_eq!(files(&state), before);
    assert_eq!(ws.project.started_at(&id), started);
}
