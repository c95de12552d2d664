//! What `rotate-passwords` prints (issue 11, 4.6 c): who rotated and how to get the new
//! settings, never a password unless `--show` asks. Against a real server in this machine's
//! Docker (`--local`).

use natsup_dev_support as support;

use support::workspace::{Workspace, text};

#[test]
fn rotate_passwords_prints_a_password_only_when_asked() {
    let ws = Workspace::new("rotout");
    ws.init_local("rotout");
    ws.ok(&["up", "--local"]);

    let out = ws.ok(&["rotate-passwords", "--local", "--user", "webhook"]);
    let new = ws.login("webhook").password;
    let said = text(&out);
    assert!(said.contains("rotated: webhook"), "{said}");
    assert!(said.contains("natsup env webhook"), "{said}");
    assert!(!said.contains(&new), "the new password was printed: {said}");
    assert!(!said.contains("NATS_PASSWORD"), "{said}");
    // The new password is the one the server holds.
    ws.verify(&["--user", "webhook"]);

    let out = ws.ok(&["rotate-passwords", "--local", "--user", "webhook", "--show"]);
    let new = ws.login("webhook").password;
    let said = text(&out);
    assert!(said.contains("rotated: webhook"), "{said}");
    assert!(
        said.contains(&format!("NATS_PASSWORD={new}")),
        "--show did not print the new settings: {said}"
    );

    let out = ws.run(&["rotate-passwords", "--local", "--dry-run", "--show"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
