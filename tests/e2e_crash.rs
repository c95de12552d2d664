//! Crash safety of every command that changes the server (issue 4): natsup is killed at each
//! step (NATSUP_FAILPOINT makes it exit 99 there, as a kill would), or SSH is cut, and then
//! - the passwords that work on the server are always ones stored locally;
//! - the next run converges: it succeeds, `verify` passes, nothing is left pending.

use natsup_dev_support as support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::workspace::{Workspace, runtime, text};
use support::*;

/// The invariant: some stored password works, and `original` works only if still stored.
fn assert_credentials_stored(ws: &Workspace, name: &str, user: &str, original: &str) {
    let stored = ws.stored(name, user);
    assert!(
        stored.iter().any(|p| ws.works(user, p)),
        "no stored password of {user} works on the server"
    );
    if !stored.iter().any(|p| p == original) {
        assert!(
            !ws.works(user, original),
            "a password natsup forgot still works"
        );
    }
}

fn assert_converged(ws: &Workspace, name: &str) {
    ws.verify(&[]);
    for user in ["matchmaker", "matchmaker_httpd", "gameserver", "webhook"] {
        assert_eq!(
            ws.stored(name, user).len(),
            1,
            "{user} still has a pending password"
        );
        let login = ws.login(user);
        runtime()
            .block_on(login.connect())
            .unwrap_or_else(|e| panic!("{user}'s password from `natsup env` fails: {e}"));
    }
    let out = ws.ok(&["up"]);
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
}

#[test]
fn rotate_passwords_killed_before_and_after_the_server_took_them() {
    let sshd = Sshd::start();
    let name = "crashrot";
    let ws = Workspace::deployed(name, &sshd);
    let rotate = ["rotate-passwords", "--user", "gameserver"];

    // Killed after saving the new password, before the server saw it.
    let original = ws.login("gameserver").password;
    ws.crash_at("rotate-passwords:pending-saved", &rotate);
    assert_eq!(
        ws.stored(name, "gameserver").len(),
        2,
        "the pending password was not saved"
    );
    assert!(ws.works("gameserver", &original));
    assert_credentials_stored(&ws, name, "gameserver", &original);
    // The same command again finishes the job with the password already saved.
    let pending = ws.stored(name, "gameserver")[1].clone();
    ws.ok(&rotate);
    assert_eq!(ws.login("gameserver").password, pending);
    assert!(!ws.works("gameserver", &original));
    assert_converged(&ws, name);

    // Killed after the server took the new password, before natsup recorded it.
    let original = ws.login("gameserver").password;
    ws.crash_at("rotate-passwords:applied", &rotate);
    let both = ws.stored(name, "gameserver");
    assert_eq!(both.len(), 2);
    assert!(
        !ws.works("gameserver", &original),
        "the server kept the old password"
    );
    assert!(
        ws.works("gameserver", &both[1]),
        "the server lacks the pending password"
    );
    assert_credentials_stored(&ws, name, "gameserver", &original);
    // A plain `up` settles it.
    let out = ws.ok(&["up"]);
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    assert_eq!(ws.login("gameserver").password, both[1]);
    assert_converged(&ws, name);
}

#[test]
fn rotate_passwords_with_ssh_cut_keeps_working_credentials_and_converges_later() {
    let sshd = Sshd::start();
    let name = "crashssh";
    let ws = Workspace::deployed(name, &sshd);
    let original = ws.login("webhook").password;

    // The server becomes unreachable over SSH: the run fails cleanly. It saved the new
    // password as pending first, then asked the server which one it holds (NATS is still up):
    // the old one, so the pending one is dropped and nothing is half-done.
    let old_port = sshd.port();
    drop(sshd);
    ws.runtime.close_masters();
    let out = ws.run(&["rotate-passwords", "--user", "webhook"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("hint:"), "{}", text(&out));
    assert!(ws.works("webhook", &original));
    assert_credentials_stored(&ws, name, "webhook", &original);
    assert_eq!(
        ws.login("webhook").password,
        original,
        "env must hand out what works"
    );

    // SSH is back (a new sshd: new port and keys); the rotation, run again, goes through.
    let sshd = Sshd::start();
    ws.edit_config(
        &format!("  port: {old_port}\n"),
        &format!("  port: {}\n", sshd.port()),
    );
    let yaml = ws.config();
    let identity = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("identity: "))
        .unwrap();
    let known = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("known_hosts: "))
        .unwrap();
    ws.set_config(
        &yaml
            .replace(identity, &sshd.identity().display().to_string())
            .replace(known, &sshd.known_hosts().display().to_string()),
    );
    let out = ws.ok(&["rotate-passwords", "--user", "webhook"]);
    assert!(text(&out).contains("rotated: webhook"), "{}", text(&out));
    assert!(!ws.works("webhook", &original));
    assert_converged(&ws, name);
}

#[test]
fn renew_cert_killed_after_issuing_converges_on_the_next_up() {
    let sshd = Sshd::start();
    let name = "crashrenew";
    let ws = Workspace::deployed(name, &sshd);
    let serial = |ws: &Workspace| {
        let out = ws.verify(&["--json", "--user", "matchmaker"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["cert_serial"].as_str().unwrap().to_string()
    };
    let before = serial(&ws);
    ws.crash_at("renew-cert:issued", &["renew-cert", "--force"]);
    // The server still presents the old certificate, which still chains to the same CA.
    assert_eq!(serial(&ws), before);
    ws.verify(&[]);
    let out = ws.ok(&["up"]);
    assert!(text(&out).contains("reloaded"), "{}", text(&out));
    assert_ne!(serial(&ws), before);
    assert_converged(&ws, name);
}

#[test]
fn rotate_ca_finish_killed_at_each_step_converges_when_run_again() {
    let sshd = Sshd::start();
    let name = "crashca";
    let ws = Workspace::deployed(name, &sshd);
    let old_ca = ws.login("matchmaker").ca_pem;

    for point in ["rotate-ca:issued", "rotate-ca:applied"] {
        ws.ok(&["rotate-ca", "--begin"]);
        let bundle = ws.login("matchmaker");
        assert_eq!(natsup::pki::pem_blocks(&bundle.ca_pem).len(), 2);
        ws.crash_at(point, &["rotate-ca", "--finish"]);
        // Whatever the server presents now, clients holding the bundle still connect.
        assert_eq!(
            ws.login("matchmaker").ca_pem,
            bundle.ca_pem,
            "the bundle changed"
        );
        runtime()
            .block_on(bundle.connect())
            .unwrap_or_else(|e| panic!("after a crash at {point}, a bundle client fails: {e}"));
        ws.ok(&["rotate-ca", "--finish"]);
        let new = ws.login("matchmaker");
        assert_eq!(natsup::pki::pem_blocks(&new.ca_pem).len(), 1);
        assert!(runtime().block_on(new.trusting(&old_ca).connect()).is_err());
        assert_converged(&ws, name);
    }
}

#[test]
fn up_killed_mid_change_leaves_a_working_server_and_converges() {
    let sshd = Sshd::start();
    let name = "crashup";
    let ws = Workspace::deployed(name, &sshd);
    let id = ws.project.container_id();
    ws.edit_config("- name: webhook\n", "- name: webhook\n- name: analytics\n");
    for delay_ms in [150u64, 400, 800] {
        let mut child = ws.natsup().arg("up").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        run(Command::new("kill")
            .arg("-KILL")
            .arg(child.id().to_string()));
        let _ = child.wait();
        // Whatever the kill interrupted, the users keep working. The killed run's apply may
        // still be going on the server, and a reload that touches users refuses, once, a
        // client whose connection is open but whose CONNECT has not arrived yet (nats-server
        // re-checks every client in its list, and that one has no credentials to show yet).
        // So a client retries, as real ones do; a lockout fails every try.
        let login = ws.login("matchmaker");
        let mut tries = 0;
        while let Err(e) = runtime().block_on(login.connect()) {
            tries += 1;
            assert!(tries < 3, "killed after {delay_ms} ms, {tries} tries: {e}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    ws.ok(&["up"]);
    assert!(ws.live_conf().contains("analytics"));
    assert_eq!(ws.project.container_id(), id);
    assert_converged(&ws, name);
}

#[test]
fn an_apply_waits_for_one_still_running_on_the_server() {
    let sshd = Sshd::start();
    let name = "crashoverlap";
    let ws = Workspace::deployed(name, &sshd);
    let id = ws.project.container_id();
    ws.edit_config("- name: webhook\n", "- name: webhook\n- name: analytics\n");

    // An earlier run was killed after its upload, and its apply is still going on the server
    // (it ignores the hangup): here, the test holds that apply's lock for it.
    let lock = ws.remote_dir.join(".natsup/lock");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "3"])
        .spawn()
        .expect("flock (util-linux) is installed by ./scripts/test.sh");
    std::thread::sleep(Duration::from_millis(300));
    let second = ws
        .natsup()
        .arg("up")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The new run does not touch staging or the live files while the other one works.
    let staging = ws.remote_dir.join(".natsup/staging");
    while holder.try_wait().unwrap().is_none() {
        assert!(
            !staging.exists(),
            "the second run unpacked beside the first"
        );
        assert!(
            !ws.live_conf().contains("analytics"),
            "the second run committed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = second.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("reloaded"), "{}", text(&out));
    assert!(ws.live_conf().contains("analytics"));
    assert_eq!(ws.project.container_id(), id);
    assert_converged(&ws, name);
}
