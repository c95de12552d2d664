//! Day-2 operations against a live server over the real sshd, with clients working through
//! them (issue 4): who is disconnected, what is lost, what works afterwards.

use natsup_dev_support as support;

use std::time::Duration;

use support::load::{self, Crowd, watched};
use support::workspace::{Login, Workspace, runtime, text};
use support::*;

const UNAFFECTED: [&str; 3] = ["matchmaker", "matchmaker_httpd", "webhook"];
const CLIENTS: usize = 20;

fn logins(ws: &Workspace, users: &[&str]) -> Vec<Login> {
    users.iter().map(|u| ws.login(u)).collect()
}

/// The serial of the certificate the server presents (natsup verify's own probe).
fn served_serial(ws: &Workspace) -> String {
    let out = ws.verify(&["--json", "--user", "matchmaker"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["cert_serial"]
        .as_str()
        .expect("cert_serial")
        .to_string()
}

#[test]
fn password_rotation_under_load_disconnects_only_the_rotated_user() {
    let sshd = Sshd::start();
    let ws = Workspace::deployed("rotload", &sshd);
    let id = ws.project.container_id();
    let started = ws.project.started_at(&id);
    let rt = runtime();
    let crowd_logins = logins(&ws, &UNAFFECTED);
    load::create_stream(&rt, &crowd_logins[0]);
    let old_gameserver = ws.login("gameserver");
    let gameserver = watched(&rt, &old_gameserver);

    let crowd = Crowd::start(&rt, &crowd_logins, CLIENTS);
    std::thread::sleep(Duration::from_millis(500));
    let out = ws.ok(&["rotate-passwords", "--user", "gameserver"]);
    std::thread::sleep(Duration::from_millis(500));
    let report = crowd.stop(&rt);

    assert!(text(&out).contains("rotated: gameserver"), "{}", text(&out));
    assert_eq!(
        report.disconnects, 0,
        "unaffected clients were disconnected"
    );
    assert_eq!(
        report.errors, 0,
        "publishes or reads failed during the rotation"
    );
    assert!(
        report.acked > 100,
        "the crowd barely worked: {} acks",
        report.acked
    );
    assert_eq!(report.read_back, report.acked);
    assert_eq!(
        load::stream_messages(&rt, &crowd_logins[0]),
        report.acked,
        "acknowledged messages are missing from the stream"
    );
    assert_eq!(
        ws.project.started_at(&id),
        started,
        "the rotation restarted the server"
    );

    // The rotated user: cut off, the old password refused, the new one (from env) works.
    assert!(
        gameserver
            .disconnects
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1,
        "the gameserver's connection with the old password survived"
    );
    drop(gameserver);
    let new_gameserver = ws.login("gameserver");
    assert_ne!(new_gameserver.password, old_gameserver.password);
    rt.block_on(new_gameserver.connect())
        .expect("the new password works");
    let e = rt.block_on(old_gameserver.connect()).unwrap_err();
    assert!(e.to_lowercase().contains("authorization"), "{e}");
    // The others' passwords did not change.
    assert_eq!(ws.login("matchmaker").password, crowd_logins[0].password);
    ws.verify(&[]);
}

#[test]
fn certificate_renewal_under_load_disconnects_nobody() {
    let sshd = Sshd::start();
    let ws = Workspace::deployed("renewload", &sshd);
    let id = ws.project.container_id();
    let started = ws.project.started_at(&id);
    let rt = runtime();
    let crowd_logins = logins(
        &ws,
        &["matchmaker", "matchmaker_httpd", "gameserver", "webhook"],
    );
    load::create_stream(&rt, &crowd_logins[0]);
    let before = served_serial(&ws);

    let crowd = Crowd::start(&rt, &crowd_logins, CLIENTS);
    std::thread::sleep(Duration::from_millis(500));
    let out = ws.ok(&["renew-cert", "--force"]);
    std::thread::sleep(Duration::from_millis(500));
    let report = crowd.stop(&rt);

    assert_eq!(
        report.disconnects, 0,
        "clients were disconnected by a renewal"
    );
    assert_eq!(report.errors, 0);
    assert!(report.acked > 100);
    assert_eq!(load::stream_messages(&rt, &crowd_logins[0]), report.acked);
    let after = served_serial(&ws);
    assert_ne!(
        after, before,
        "the server still presents the old certificate"
    );
    assert!(text(&out).contains(&after), "{}", text(&out));
    assert_eq!(ws.project.started_at(&id), started);
    // A new client that trusts only the CA accepts the new certificate.
    rt.block_on(ws.login("webhook").connect())
        .expect("the renewed certificate chains to the CA");
}

#[test]
fn ca_rotation_keeps_bundle_clients_and_then_refuses_the_old_ca() {
    let sshd = Sshd::start();
    let ws = Workspace::deployed("carot", &sshd);
    let rt = runtime();
    let old_ca = ws.login("matchmaker").ca_pem;

    let out = ws.ok(&["rotate-ca", "--begin"]);
    assert!(text(&out).contains("bundle"), "{}", text(&out));
    let bundle_login = ws.login("matchmaker");
    assert_eq!(
        natsup::pki::pem_blocks(&bundle_login.ca_pem).len(),
        2,
        "clients get old + new"
    );
    // Clients with the bundle connect now (the server still presents the old CA's cert)...
    let bundle_clients: Vec<_> = (0..5).map(|_| watched(&rt, &bundle_login)).collect();

    let out = ws.ok(&["rotate-ca", "--finish"]);
    assert!(text(&out).contains("old CA is retired"), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(500));
    // ...and were not disconnected by the switch.
    for c in &bundle_clients {
        assert_eq!(c.disconnects.load(std::sync::atomic::Ordering::SeqCst), 0);
        rt.block_on(c.client.flush()).expect("still connected");
    }

    let new_login = ws.login("matchmaker");
    assert_eq!(natsup::pki::pem_blocks(&new_login.ca_pem).len(), 1);
    assert_ne!(new_login.ca_pem, old_ca);
    rt.block_on(new_login.connect())
        .expect("a client with the new CA connects");
    let e = rt
        .block_on(new_login.trusting(&old_ca).connect())
        .expect_err("a client with only the old CA was accepted");
    assert!(
        e.contains("UnknownIssuer") || e.contains("certificate"),
        "{e}"
    );
    ws.verify(&[]);
}

#[test]
fn up_renews_a_certificate_near_expiry() {
    let sshd = Sshd::start();
    let ws = Workspace::deployed("nearexp", &sshd);
    let id = ws.project.container_id();
    let started = ws.project.started_at(&id);

    // Replace the state's certificate with one issued 300 days ago for a year: 65 days left,
    // under the third of its lifetime at which renewal starts.
    let config = natsup::config::Config::load(&ws.path().join("natsup.yaml")).unwrap();
    let dir = natsup::state::StateDir::new(&ws.state_dir(), &config.name);
    let state = natsup::state::State::load(&config, &dir).unwrap();
    let old = natsup::pki::issue_server_cert(
        &state.ca,
        &config.sans(&config.nodes()[0]),
        365,
        time::OffsetDateTime::now_utc() - time::Duration::days(300),
    )
    .unwrap();
    std::fs::write(dir.server_cert(), old.cert_pem()).unwrap();
    std::fs::write(dir.server_key(), old.key_pem().expose()).unwrap();
    let old_serial = natsup::pki::inspect(old.cert_pem()).unwrap().serial;

    let out = ws.ok(&["up"]);
    assert!(
        text(&out).contains("renewing the server certificate"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("reloaded"), "{}", text(&out));
    let served = served_serial(&ws);
    assert_ne!(served, old_serial);
    let state = natsup::state::State::load(&config, &dir).unwrap();
    assert_eq!(served, state.certs[0].info.serial);
    assert!(
        state.certs[0]
            .info
            .days_left(time::OffsetDateTime::now_utc())
            >= 364
    );
    assert_eq!(ws.project.started_at(&id), started);

    let out = ws.ok(&["up"]);
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
}

/// The system user (`natsup_sys`) rotates as the others do: a reload (no restart), the server
/// proven to take the new password and refuse the old; `status`, which reads the server's own
/// figures as that user, works on with the new one; no other client is disconnected.
#[test]
fn the_system_user_rotates_by_reload_and_its_old_password_is_refused() {
    let sshd = Sshd::start();
    let ws = Workspace::deployed("sysrot", &sshd);
    let id = ws.project.container_id();
    let started = ws.project.started_at(&id);
    let rt = runtime();
    // The system user's one stored password: none may be left pending.
    let stored = |ws: &Workspace| -> String {
        let stored = ws.stored("sysrot", "natsup_sys");
        assert_eq!(stored.len(), 1, "a pending system password was left");
        stored[0].clone()
    };
    let matchmaker = ws.login("matchmaker");
    let as_system = |password: &str| Login {
        user: "natsup_sys".into(),
        ..matchmaker.with_password(password)
    };
    let old = stored(&ws);
    rt.block_on(as_system(&old).connect())
        .expect("the system user logs in before the rotation");
    let bystander = watched(&rt, &matchmaker);

    let out = ws.ok(&["rotate-passwords", "--system"]);
    let said = text(&out);
    assert!(said.contains("rotated: natsup_sys"), "{said}");
    assert!(said.contains("natsup context --system"), "{said}");
    let new = stored(&ws);
    assert_ne!(new, old, "the stored system password did not change");
    let refused = rt
        .block_on(as_system(&old).connect())
        .expect_err("the old system password still logs in");
    assert!(
        refused.to_ascii_lowercase().contains("authorization"),
        "{refused}"
    );
    rt.block_on(as_system(&new).connect())
        .expect("the new system password logs in");
    assert_eq!(ws.project.container_id(), id, "the container was recreated");
    assert_eq!(ws.project.started_at(&id), started, "the server restarted");
    assert_eq!(
        bystander
            .disconnects
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a matchmaker client was disconnected"
    );
    // natsup reads the server's figures with the new password: the bystander is counted.
    let status: serde_json::Value =
        serde_json::from_slice(&ws.ok(&["status", "--json"]).stdout).unwrap();
    let connections = status["figures"]["connections"]
        .as_u64()
        .unwrap_or_else(|| panic!("no connections figure: {status}"));
    assert!(connections >= 1, "{status}");
    // A rotation killed once the server took the new password, before natsup promoted it: the
    // server refuses the stored password, and `status` reads its figures with the pending
    // one; `up` then finishes the rotation.
    ws.crash_at(
        "rotate-passwords:applied",
        &["rotate-passwords", "--system"],
    );
    let pending = ws
        .stored("sysrot", "natsup_sys")
        .get(1)
        .expect("a pending system password after the crash")
        .clone();
    assert!(
        rt.block_on(as_system(&new).connect()).is_err(),
        "the server still takes the password the crashed run replaced"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&ws.ok(&["status", "--json"]).stdout).unwrap();
    assert!(
        status["figures"]["connections"].is_u64(),
        "no figures mid-rotation: {status}"
    );
    ws.ok(&["up"]);
    assert_eq!(stored(&ws), pending, "up did not finish the rotation");
    rt.block_on(as_system(&pending).connect())
        .expect("the finished rotation's password logs in");
    // It is natsup's own user, not a client's: never alongside users, never with a grace.
    for bad in [
        &["rotate-passwords", "--system", "--user", "gameserver"][..],
        &["rotate-passwords", "--system", "--grace", "1h"][..],
    ] {
        let out = ws.run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out));
        assert!(
            text(&out).contains("cannot be used with"),
            "{bad:?}: {}",
            text(&out)
        );
    }
    drop(bystander);
}
