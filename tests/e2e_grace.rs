//! `rotate-passwords --grace` against a live server over the real sshd (issue 18): the rotated
//! user's connected clients stay connected through the rotation, `env` hands out the new
//! credential at once, the old one still works until the grace ends, and the next `up` after
//! that retires it and proves it refused.

use natsup_dev_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::cluster::{Cluster, connect_all};
use support::load::{Watched, watched};
use support::workspace::{Workspace, runtime, text};
use support::*;

/// As many connected clients of the rotated user as the issue asks for.
const CLIENTS: usize = 50;

fn disconnects(clients: &[Watched]) -> usize {
    clients
        .iter()
        .map(|c| c.disconnects.load(Ordering::SeqCst))
        .sum()
}

/// Every client still makes a round trip to the server.
fn all_answer(rt: &tokio::runtime::Runtime, clients: &[Watched]) -> usize {
    rt.block_on(async {
        let mut ok = 0;
        for c in clients {
            if tokio::time::timeout(Duration::from_secs(5), c.client.flush())
                .await
                .is_ok_and(|r| r.is_ok())
            {
                ok += 1;
            }
        }
        ok
    })
}

#[test]
fn a_rotation_with_a_grace_period_disconnects_none_of_the_rotated_users_clients() {
    let sshd = Sshd::start();
    let ws = Workspace::deployed("gracehold", &sshd);
    let id = ws.project.container_id();
    let started = ws.project.started_at(&id);
    let rt = runtime();
    let old = ws.login("gameserver");
    assert_eq!(old.user, "gameserver");
    let clients: Vec<Watched> = (0..CLIENTS).map(|_| watched(&rt, &old)).collect();

    let t = Instant::now();
    let out = ws.ok(&["rotate-passwords", "--user", "gameserver", "--grace", "1h"]);
    let took = t.elapsed();
    assert!(text(&out).contains("rotated: gameserver"), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        disconnects(&clients),
        0,
        "clients of the rotated user were disconnected:\n{}",
        text(&out)
    );
    assert_eq!(
        all_answer(&rt, &clients),
        CLIENTS,
        "a client stopped answering"
    );
    assert_eq!(
        ws.project.started_at(&id),
        started,
        "the rotation restarted the server"
    );

    eprintln!(
        "figures: rotate-passwords --grace 1h with {CLIENTS} connected clients of the user: \
         {:.1}s, {} disconnects",
        took.as_secs_f64(),
        disconnects(&clients)
    );
    // env hands out the new credential at once: a login of its own, which connects.
    let new = ws.login("gameserver");
    assert_ne!(new.password, old.password);
    assert!(
        new.user.starts_with("gameserver__"),
        "the new password's login: {}",
        new.user
    );
    rt.block_on(new.connect())
        .expect("the new credential from env connects");
    // The nats CLI's context holds the same.
    let out = ws.ok(&["context", "--user", "gameserver"]);
    let path = text(&out)
        .split('(')
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("context path")
        .to_string();
    let ctx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(ctx["user"], new.user.as_str());
    assert_eq!(ctx["password"], new.password.as_str());
    // The old one still works during the grace, for new connections too.
    rt.block_on(old.connect())
        .expect("the old credential still connects during the grace");

    // status shows both, and when the old one expires.
    let status = text(&ws.ok(&["status"]));
    assert!(
        status.contains(&new.user) && status.contains("current"),
        "{status}"
    );
    assert!(
        status.lines().any(|l| l.contains("login:")
            && l.contains("gameserver ")
            && l.contains("valid until")),
        "{status}"
    );

    // An `up` during the grace changes nothing and keeps everyone.
    let out = ws.ok(&["up"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        disconnects(&clients),
        0,
        "up during the grace:\n{}",
        text(&out)
    );
    rt.block_on(old.connect())
        .expect("the old credential still connects after an up during the grace");
    ws.verify(&[]);

    // A second rotation with a grace while this one runs is refused, saying until when.
    let out = ws.run(&["rotate-passwords", "--user", "gameserver", "--grace", "1h"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("still in its grace period") && text(&out).contains("valid until"),
        "{}",
        text(&out)
    );
    // One without (a leaked password) ends the grace at once: only its new password works.
    ws.ok(&["rotate-passwords", "--user", "gameserver", "--grace", "0s"]);
    let newest = ws.login("gameserver");
    assert_eq!(
        newest.user, new.user,
        "a rotation without grace keeps the login"
    );
    rt.block_on(newest.connect()).expect("the newest password");
    for (what, login) in [("old", &old), ("previous", &new)] {
        let e = rt.block_on(login.connect()).unwrap_err();
        assert!(e.to_lowercase().contains("authorization"), "{what}: {e}");
    }
    assert!(
        disconnects(&clients) >= CLIENTS,
        "the old credential's clients were closed"
    );
    let status = text(&ws.ok(&["status"]));
    assert!(!status.contains("valid until"), "{status}");
}

#[test]
fn a_graced_rotation_killed_after_the_server_took_it_is_finished_by_up() {
    let sshd = Sshd::start();
    let ws = Workspace::deployed("gracecrash", &sshd);
    let rt = runtime();
    let old = ws.login("gameserver");
    let client = watched(&rt, &old);
    ws.crash_at(
        "rotate-passwords:applied",
        &["rotate-passwords", "--user", "gameserver", "--grace", "1h"],
    );
    // The server serves both; env still hands out the confirmed (old) credential.
    assert_eq!(ws.login("gameserver").user, "gameserver");
    let out = ws.ok(&["up"]);
    let new = ws.login("gameserver");
    assert!(new.user.starts_with("gameserver__"), "{}", text(&out));
    rt.block_on(new.connect()).expect("the new credential");
    rt.block_on(old.connect())
        .expect("the old credential during the grace");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(client.disconnects.load(Ordering::SeqCst), 0);
    let status = text(&ws.ok(&["status"]));
    assert!(status.contains("valid until"), "{status}");
}

#[test]
fn up_after_the_grace_retires_the_old_credential_and_proves_it_refused() {
    let sshd = Sshd::start();
    let ws = Workspace::deployed("graceend", &sshd);
    // The grace from the config's default (no --grace on the command line).
    ws.edit_config(
        "  bcrypt_cost: 4\n",
        "  bcrypt_cost: 4\n  rotation_grace: 5s\n",
    );
    let rt = runtime();
    let old = ws.login("gameserver");
    let client = watched(&rt, &old);

    let out = ws.ok(&["rotate-passwords", "--user", "gameserver"]);
    // The grace runs from when the server took the new password, before the command returned.
    let rotated_at = Instant::now();
    assert!(text(&out).contains("valid until"), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(client.disconnects.load(Ordering::SeqCst), 0);
    let new = ws.login("gameserver");
    assert_ne!(new.user, old.user);
    rt.block_on(new.connect())
        .expect("the new credential connects");
    rt.block_on(old.connect())
        .expect("the old credential connects during the grace");

    // After the grace, the next up retires it.
    let wait = Duration::from_secs(6).saturating_sub(rotated_at.elapsed());
    std::thread::sleep(wait);
    let out = ws.ok(&["up"]);
    assert!(
        text(&out).contains("is refused: retired"),
        "up did not prove the old credential refused:\n{}",
        text(&out)
    );
    let e = rt.block_on(old.connect()).unwrap_err();
    assert!(e.to_lowercase().contains("authorization"), "{e}");
    rt.block_on(new.connect())
        .expect("the new credential still connects");
    // Its clients were closed by the reload that dropped it.
    assert!(client.disconnects.load(Ordering::SeqCst) >= 1);
    let status = text(&ws.ok(&["status"]));
    assert!(
        !status.contains("valid until") && !status.contains("grace period"),
        "status still lists the old credential:\n{status}"
    );
    assert!(
        !status
            .lines()
            .any(|l| l.contains("login:") && l.contains("gameserver ")),
        "{status}"
    );
    // A second up has nothing left to retire.
    let out = ws.ok(&["up"]);
    assert!(!text(&out).contains("retir"), "{}", text(&out));
    ws.verify(&[]);
}

/// Whether `login` connects to each node on its own URL, in the order of `cl.urls()`.
fn connects_to_each(
    rt: &tokio::runtime::Runtime,
    cl: &Cluster,
    login: &support::workspace::Login,
) -> Vec<Result<(), String>> {
    rt.block_on(async {
        let mut out = Vec::new();
        for url in cl.urls() {
            let r = match login.options().connect(url).await {
                Ok(c) => c.flush().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            out.push(r);
        }
        out
    })
}

#[test]
fn a_graced_rotation_rolls_over_three_nodes_without_a_disconnect() {
    let cl = Cluster::named("grc");
    cl.configure();
    cl.ws.ok(&["up"]);
    let rt = runtime();
    let old = cl.ws.login("gameserver");
    // Clients of the rotated user on every node, each held to its node.
    let per_node = 10;
    let lost = Arc::new(AtomicUsize::new(0));
    let clients: Vec<async_nats::Client> = rt.block_on(async {
        let mut clients = Vec::new();
        for url in cl.urls() {
            for _ in 0..per_node {
                clients.push(connect_all(&old, vec![url.clone()], lost.clone()).await);
            }
        }
        clients
    });

    let t = Instant::now();
    let out = cl
        .ws
        .ok(&["rotate-passwords", "--user", "gameserver", "--grace", "1h"]);
    eprintln!(
        "figures: rolling rotate-passwords --grace 1h on 3 nodes with {} clients of the user: \
         {:.1}s, {} disconnects",
        3 * per_node,
        t.elapsed().as_secs_f64(),
        lost.load(Ordering::SeqCst)
    );
    assert!(
        text(&out).contains("rotated on every node: gameserver"),
        "{}",
        text(&out)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        lost.load(Ordering::SeqCst),
        0,
        "clients of the rotated user were disconnected:\n{}",
        text(&out)
    );
    let answering = rt.block_on(async {
        let mut ok = 0;
        for c in &clients {
            if tokio::time::timeout(Duration::from_secs(5), c.flush())
                .await
                .is_ok_and(|r| r.is_ok())
            {
                ok += 1;
            }
        }
        ok
    });
    assert_eq!(answering, clients.len());
    let new = cl.ws.login("gameserver");
    assert_ne!(new.user, old.user);
    for (i, r) in connects_to_each(&rt, &cl, &new).into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("node n{}: the new credential: {e}", i + 1));
    }
    for (i, r) in connects_to_each(&rt, &cl, &old).into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("node n{}: the old credential in its grace: {e}", i + 1));
    }

    // The grace ends (set in the state as an hour passing would), and up retires it on
    // every node.
    let secrets = cl.ws.state_dir().join(&cl.name).join("secrets.yaml");
    let yaml = std::fs::read_to_string(&secrets).unwrap();
    let mut value: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    value["users"]["gameserver"]["graced"][0]["until"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&secrets, serde_yaml::to_string(&value).unwrap()).unwrap();
    let out = cl.ws.ok(&["up"]);
    assert!(
        text(&out).contains("is refused by every node: retired"),
        "{}",
        text(&out)
    );
    for (i, r) in connects_to_each(&rt, &cl, &old).into_iter().enumerate() {
        let e = r.expect_err(&format!("node n{} still takes the old credential", i + 1));
        assert!(e.to_lowercase().contains("authorization"), "{e}");
    }
    for (i, r) in connects_to_each(&rt, &cl, &new).into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("node n{}: the new credential after: {e}", i + 1));
    }
    cl.ws.verify(&[]);
    drop(clients);
}
