//! Issue 17, item 5, without a server: removing a node from `nodes` schedules a rotation of the
//! route credential in the state (so an interrupted `up` resumes it), and each phase of a
//! rotation renders what the nodes must dial with and accept.

use std::path::Path;

use natsup::config::Config;
use natsup::render::{self, ConfPaths, TlsNames};
use natsup::secret::Secret;
use natsup::state::{PendingPassword, RoutePhase, State, StateDir};
use time::OffsetDateTime;

fn yaml(nodes: usize) -> String {
    let nodes: String = (1..=nodes)
        .map(|i| format!("- name: n{i}\n  host: 127.0.0.2{i}\n  ssh: root@127.0.0.2{i}\n"))
        .collect();
    format!("name: rrp\nnetwork: host\ncluster:\n  port: 6222\nnodes:\n{nodes}")
}

fn config(nodes: usize) -> Config {
    Config::parse(&yaml(nodes), Path::new("natsup.yaml")).unwrap()
}

fn ensure(config: &Config, base: &Path) -> State {
    State::ensure(
        config,
        &StateDir::new(base, &config.name),
        OffsetDateTime::now_utc(),
    )
    .unwrap()
    .0
}

/// Node `i`'s nats-server.conf.
fn conf(config: &Config, state: &State, i: usize) -> String {
    let paths = ConfPaths::for_node(config, i, state, &TlsNames::plain());
    render::nats_conf(config, i, state, &paths)
}

fn routes_with(conf: &str, password: &Secret) -> usize {
    conf.matches(&format!(":{}@", password.expose())).count()
}

#[test]
fn removing_a_node_schedules_the_route_rotation() {
    let base = tempfile::tempdir().unwrap();
    let three = config(3);
    let state = ensure(&three, base.path());
    assert!(state.secrets.route_rotation.is_none());
    assert!(base.path().join("rrp/nodes/n3").is_dir());

    // n3 leaves the config: the next run that opens the state has a rotation due, saved.
    let two = config(2);
    let state = ensure(&two, base.path());
    let due = state
        .secrets
        .route_rotation
        .clone()
        .expect("a rotation is due");
    assert_eq!(due.phase, RoutePhase::Due);
    assert!(due.reason.contains("n3"), "{}", due.reason);
    let reopened = ensure(&two, base.path());
    assert_eq!(reopened.secrets.route_rotation, Some(due));
    // Nothing else changed: n3's folder stays until every node refuses the old credential.
    assert!(base.path().join("rrp/nodes/n3").is_dir());
    assert_eq!(
        state.dir.removed_nodes(&two),
        vec!["n3".to_string()],
        "the removed node is the one named"
    );
    // A node added is not a removal.
    let base = tempfile::tempdir().unwrap();
    ensure(&config(2), base.path());
    assert!(
        ensure(&config(3), base.path())
            .secrets
            .route_rotation
            .is_none()
    );
}

#[test]
fn each_phase_renders_what_the_nodes_dial_with_and_accept() {
    let base = tempfile::tempdir().unwrap();
    let config = config(3);
    let mut state = ensure(&config, base.path());
    let old = state.secrets.route.clone().unwrap();
    let before = conf(&config, &state, 0);
    // Two peers, one URL each, with the current password; the current hash accepted.
    assert_eq!(routes_with(&before, &old.password), 2, "{before}");
    assert!(before.contains(&format!("\"{}\"", old.bcrypt)));

    let new_password = Secret::new("the-new-route-password");
    state.secrets.schedule_route_rotation("asked for".into());
    state.secrets.route.as_mut().unwrap().pending = Some(PendingPassword {
        password: new_password.clone(),
        bcrypt: "$2b$04$thenewhashthenewhashthenewhashthenewhashthenewhash12".into(),
        created_at: OffsetDateTime::now_utc(),
        grace: None,
    });
    // Pass 1: dial each peer with both, still accept only the old.
    state.secrets.route_rotation.as_mut().unwrap().phase = RoutePhase::Dialing;
    let dialing = conf(&config, &state, 0);
    assert_eq!(routes_with(&dialing, &old.password), 2, "{dialing}");
    assert_eq!(routes_with(&dialing, &new_password), 2, "{dialing}");
    assert!(dialing.contains(&format!("\"{}\"", old.bcrypt)));
    assert!(!dialing.contains("thenewhash"));
    // Pass 2: accept only the new, still dial with both.
    state.secrets.route_rotation.as_mut().unwrap().phase = RoutePhase::Accepting;
    let accepting = conf(&config, &state, 0);
    assert_eq!(routes_with(&accepting, &old.password), 2, "{accepting}");
    assert_eq!(routes_with(&accepting, &new_password), 2, "{accepting}");
    assert!(!accepting.contains(&format!("\"{}\"", old.bcrypt)));
    assert!(accepting.contains("thenewhash"));

    // Promoted: the old password is retired, still dialed only by the nodes whose server may
    // hold routes made with it (here n1), until that server restarts.
    let held_by = [("n1".to_string(), "c1@t1".to_string())].into();
    state
        .secrets
        .promote_route(held_by, OffsetDateTime::now_utc());
    assert!(state.secrets.route_rotation.is_none());
    let n1 = conf(&config, &state, 0);
    let n2 = conf(&config, &state, 1);
    assert_eq!(routes_with(&n1, &old.password), 2, "{n1}");
    assert_eq!(routes_with(&n1, &new_password), 2, "{n1}");
    assert_eq!(routes_with(&n2, &old.password), 0, "{n2}");
    assert_eq!(routes_with(&n2, &new_password), 2, "{n2}");
    assert!(n1.contains("thenewhash") && !n1.contains(&format!("\"{}\"", old.bcrypt)));
    // Another node recreated: kept. n1 recreated (a new server, no route made with it):
    // dropped.
    assert!(
        state
            .secrets
            .forget_retired_routes_of(&["n2".to_string()])
            .is_empty()
    );
    assert_eq!(
        state.secrets.forget_retired_routes_of(&["n1".to_string()]),
        vec!["n1".to_string()]
    );
    assert!(state.secrets.retired_routes.is_empty());
    assert_eq!(routes_with(&conf(&config, &state, 0), &old.password), 0);
}
