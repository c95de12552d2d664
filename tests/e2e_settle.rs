//! A pending password rotation always settles (issue 11, 4.3), against this machine's Docker
//! (`--local`: the same executor and scripts as over SSH):
//! - the pending password of a user since removed from the config is dropped;
//! - when the server's NATS port does not answer from natsup's side, the server is asked over
//!   its remote: the nats-server.conf it last confirmed holds one of the two hashes.

use natsup_dev_support as support;

use support::workspace::{Workspace, text};

/// A socket bound to `addr:port` that never listens, held until dropped: a connection there
/// is refused, and no other program on this machine can listen there meanwhile.
fn refusing_port(addr: &str, port: u16) -> tokio::net::TcpSocket {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{addr}:{port}").parse().unwrap())
        .unwrap_or_else(|e| panic!("{addr}:{port} is taken on this machine: {e}"));
    socket
}

#[test]
fn a_removed_users_pending_rotation_is_dropped() {
    let ws = Workspace::new("settle-rm");
    let name = "settlerm";
    ws.init_local(name);
    ws.ok(&["up", "--local"]);
    let rotate = ["rotate-passwords", "--local", "--user", "webhook"];
    ws.crash_at("rotate-passwords:pending-saved", &rotate);
    assert_eq!(ws.stored(name, "webhook").len(), 2);

    ws.edit_config("- name: webhook\n", "");
    let out = ws.ok(&["rotate-passwords", "--local", "--user", "gameserver"]);
    let said = text(&out);
    assert!(
        said.contains("dropped the pending new password of webhook"),
        "{said}"
    );
    assert!(said.contains("rotated: gameserver"), "{said}");
    assert_eq!(ws.stored(name, "webhook").len(), 1, "still pending");
    assert!(ws.works("gameserver", &ws.login("gameserver").password));
    let out = ws.ok(&["up", "--local"]);
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
}

#[test]
fn a_rotation_settles_over_the_remote_when_the_nats_port_does_not_answer() {
    let ws = Workspace::new("settle-ssh");
    let name = "settlessh";
    ws.init_local(name);
    ws.ok(&["up", "--local"]);
    let original = ws.login("gameserver").password;

    // Clients dial 127.0.0.2, where nothing listens (the server binds 127.0.0.1), as an
    // operator cannot reach a remote server bound to its own 127.0.0.1. The certificate
    // keeps 127.0.0.1 so that this test's own client can still check the server.
    let _refused = refusing_port("127.0.0.2", ws.port);
    ws.edit_config("host: 127.0.0.1\n", "host: 127.0.0.2\n");
    ws.edit_config("- nats\n", "- nats\n- 127.0.0.1\n");
    let out = ws.ok(&["rotate-passwords", "--local", "--user", "gameserver"]);
    let said = text(&out);
    assert!(said.contains("rotated: gameserver"), "{said}");
    assert!(
        said.contains("the nats-server.conf the server last confirmed says which password"),
        "{said}"
    );
    let now = ws.stored(name, "gameserver");
    assert_eq!(now.len(), 1, "still pending");
    assert_ne!(now[0], original);
    assert!(ws.works("gameserver", &now[0]), "the new password fails");
    assert!(!ws.works("gameserver", &original), "the old one works");

    // A run killed after the server took the new password, before natsup recorded it: the
    // next `up` settles it over the remote (its own verify cannot reach 127.0.0.2, so it
    // fails after that, as it should).
    ws.crash_at(
        "rotate-passwords:applied",
        &["rotate-passwords", "--local", "--user", "webhook"],
    );
    let both = ws.stored(name, "webhook");
    assert_eq!(both.len(), 2);
    let out = ws.run(&["up", "--local"]);
    let said = text(&out);
    assert!(
        said.contains("webhook: ") && said.contains("last confirmed"),
        "{said}"
    );
    assert_eq!(ws.stored(name, "webhook"), [both[1].clone()], "{said}");
    assert!(ws.works("webhook", &both[1]), "the new password fails");
}
