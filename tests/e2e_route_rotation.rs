//! Issue 17, item 5: the route credential of a real three-node cluster (three sshd on
//! 127.0.0.21-23, `network: host`, the test image's nats-server 2.10.26) is rotated by
//! `rotate-passwords --route` while a client holding every node's URL publishes to an R3
//! stream every 20 ms and waits for each ack: no publish fails, and afterwards every node
//! refuses a route login with the old password (`-ERR 'Authorization Violation'`) and takes
//! one with the new. The same route login with the old password is taken by every node before
//! the rotation, so the refusal is the rotation's doing, not the probe's.

use natsup_dev_support as support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use natsup::pki::ServerCert;
use natsup::route_probe::{RouteListener, RouteLogin, route_login};
use natsup::secret::Secret;
use support::cluster::{ADDRS, Cluster, connect_all};
use support::free_port_on_besides;
use support::workspace::{Login, text};

/// The route password in the deployment's secrets.yaml.
fn route_password(state: &Path, name: &str) -> String {
    let yaml = std::fs::read_to_string(state.join(name).join("secrets.yaml")).unwrap();
    let secrets: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    secrets["route"]["password"]
        .as_str()
        .expect("a cluster's route password")
        .to_string()
}

/// What each node says to a route login with `password`, asked as node n1 would (its
/// certificate, the deployment's CA).
async fn route_logins(cl: &Cluster, route_port: u16, password: &str) -> Vec<RouteLogin> {
    route_logins_of(cl, 3, route_port, password).await
}

/// As [`route_logins`], of the first `nodes` nodes.
async fn route_logins_of(
    cl: &Cluster,
    nodes: usize,
    route_port: u16,
    password: &str,
) -> Vec<RouteLogin> {
    let state = cl.ws.state_dir().join(&cl.name);
    let ca = std::fs::read_to_string(state.join("ca/rootCA.pem")).unwrap();
    let cert = std::fs::read_to_string(state.join("nodes/n1/nats-server-cert.pem")).unwrap();
    let key = std::fs::read_to_string(state.join("nodes/n1/nats-server-key.pem")).unwrap();
    let n1 = ServerCert::from_pem(cert, Secret::new(key)).unwrap();
    let mut answers = Vec::new();
    for addr in &ADDRS[..nodes] {
        answers.push(
            route_login(
                RouteListener {
                    addr: &format!("{addr}:{route_port}"),
                    host: addr,
                    ca_pem: &ca,
                    client: &n1,
                    cluster: &cl.name,
                },
                natsup::state::ROUTE_USER,
                &Secret::new(password),
                Duration::from_secs(5),
            )
            .await,
        );
    }
    answers
}

/// Each node's live nats-server.conf.
fn live_confs(cl: &Cluster) -> Vec<String> {
    cl.dirs
        .iter()
        .map(|d| std::fs::read_to_string(d.join("nats-config/nats-server.conf")).unwrap())
        .collect()
}

#[test]
fn the_route_credential_rotates_under_load_and_every_node_refuses_the_old_one() {
    let cl = Cluster::named("rr");
    let route_port = free_port_on_besides(&ADDRS, &[cl.port]);
    cl.ws
        .set_config(&cl.yaml(route_port, |i| cl.sshd[i].port()));
    cl.ws.ok(&["up"]);
    let state = cl.ws.state_dir();
    let old = route_password(&state, &cl.name);

    let rt = support::workspace::runtime();
    // The probe can tell: before the rotation every node takes the old password, and refuses
    // a wrong one.
    let before = rt.block_on(route_logins(&cl, route_port, &old));
    assert!(
        before.iter().all(|a| *a == RouteLogin::Accepted),
        "{before:?}"
    );
    let wrong = rt.block_on(route_logins(&cl, route_port, "not-the-password"));
    assert!(wrong.iter().all(|a| *a == RouteLogin::Refused), "{wrong:?}");

    // A run that dies once the new password is saved, before any node has it: the next run
    // resumes that rotation, with that password.
    cl.ws.crash_at(
        "rotate-route:pending-saved",
        &["rotate-passwords", "--route"],
    );
    let yaml = std::fs::read_to_string(state.join(&cl.name).join("secrets.yaml")).unwrap();
    let secrets: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let pending = secrets["route"]["pending"]["password"]
        .as_str()
        .expect("the new route password, saved")
        .to_string();
    assert_eq!(secrets["route_rotation"]["phase"], "dialing", "{yaml}");

    // A client holding every URL publishes to an R3 stream every 20 ms, each publish waiting
    // for its ack (async-nats' default: 5 s), throughout the rotation.
    let gameserver = cl.ws.login("gameserver");
    let disconnects = Arc::new(AtomicUsize::new(0));
    let client = rt.block_on(connect_all(&gameserver, cl.urls(), disconnects.clone()));
    let js = {
        let _in_runtime = rt.enter();
        async_nats::jetstream::new(client.clone())
    };
    rt.block_on(async {
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "ROUTEROT".into(),
            subjects: vec!["routerot.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("an R3 stream")
    });
    let (stop, publisher) = support::load::publish_throughout(&rt, &js, "routerot.tick");
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let out = cl.ws.run(&["rotate-passwords", "--route"]);
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let support::load::Published {
        acked: ok, failed, ..
    } = rt.block_on(publisher).unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("pass 1 of 2"), "{said}");
    assert!(said.contains("pass 2 of 2"), "{said}");
    assert!(said.contains("every node refuses the old one"), "{said}");
    eprintln!(
        "route rotation: {took:?}, {ok} R3 publishes acked, {} failed, {} disconnects",
        failed.len(),
        disconnects.load(Ordering::SeqCst)
    );
    assert!(failed.is_empty(), "publishes failed: {failed:?}\n{said}");
    assert!(ok > 50, "only {ok} publishes went out");
    assert_eq!(
        disconnects.load(Ordering::SeqCst),
        0,
        "the client was disconnected"
    );

    // Every node refuses the old route password and takes the new one.
    let new = route_password(&state, &cl.name);
    assert_ne!(new, old);
    assert_eq!(
        new, pending,
        "the interrupted rotation was resumed with its password"
    );
    let with_old = rt.block_on(route_logins(&cl, route_port, &old));
    assert!(
        with_old.iter().all(|a| *a == RouteLogin::Refused),
        "{with_old:?}"
    );
    let with_new = rt.block_on(route_logins(&cl, route_port, &new));
    assert!(
        with_new.iter().all(|a| *a == RouteLogin::Accepted),
        "{with_new:?}"
    );
    // The cluster is whole, and a second `up` has nothing to do.
    let report = text(&cl.ws.verify(&[]));
    assert!(report.contains("routes"), "{report}");
    let again = text(&cl.ws.ok(&["up"]));
    assert!(again.contains("nothing to do"), "{again}");

    // The old password stays in every node's route URLs, refused everywhere: dropping it
    // closes routes made with it. It goes with a node's next recreate.
    let route_url = |password: &str| format!("nats-route://natsup_route:{password}@");
    assert!(live_confs(&cl).iter().all(|c| c.contains(&route_url(&old))));
    drop(client);
}

/// A client of `login` on node `i` alone.
async fn client_of(login: &Login, port: u16, i: usize) -> async_nats::Client {
    login
        .options()
        .connect(format!("tls://{}:{port}", ADDRS[i]))
        .await
        .expect("a client of that node")
}

/// n3 is stopped and leaves `nodes`: `up` reloads n1 and n2 without it, then rotates the route
/// credential (the state still has n3's folder, which says it was a node). n1 and n2 refuse
/// the old route password; n3, started again with the credential it holds, gets no route to
/// them: a message published on n3 never reaches a subscriber on n1, while one published on
/// n2 does.
#[test]
fn removing_a_node_makes_up_rotate_the_route_credential_and_it_cannot_rejoin() {
    let cl = Cluster::named("rm");
    let route_port = free_port_on_besides(&ADDRS, &[cl.port]);
    let three = cl.yaml(route_port, |i| cl.sshd[i].port());
    cl.ws.set_config(&three);
    cl.ws.ok(&["up"]);
    let state = cl.ws.state_dir();
    let old = route_password(&state, &cl.name);
    let n3_container = cl.projects[2].container_id();
    support::run(std::process::Command::new("docker").args(["stop", &n3_container]));
    let n3 = three.find("- name: n3\n").expect("n3's entry");
    cl.ws.set_config(&three[..n3]);
    // Due from the moment a run that opens the state (here `plan`) sees n3's folder without
    // n3 in the config, and shown by `status`.
    let plan = text(&cl.ws.ok(&["plan"]));
    assert!(
        plan.contains("route credential: rotation due (node n3 was removed"),
        "{plan}"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&cl.ws.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["route"]["rotation"], "due", "{status}");
    // An `up` that dies after the first pass (every node dials with both passwords): the next
    // `up` resumes at the second, and n3's folder is still there until it is done.
    cl.ws.crash_at("rotate-route:dialing-both", &["up"]);
    let status: serde_json::Value =
        serde_json::from_slice(&cl.ws.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["route"]["rotation"], "accepting", "{status}");
    assert!(state.join(&cl.name).join("nodes/n3").exists());
    let out = cl.ws.ok(&["up"]);
    let said = text(&out);
    assert!(
        said.contains("rotating the route credential: node n3 was removed from `nodes`"),
        "{said}"
    );
    assert!(said.contains("pass 2 of 2"), "{said}");
    assert!(!said.contains("pass 1 of 2"), "{said}");
    assert!(said.contains("every node refuses the old one"), "{said}");
    assert!(said.contains("removed node n3"), "{said}");
    assert!(!state.join(&cl.name).join("nodes/n3").exists());
    let new = route_password(&state, &cl.name);
    assert_ne!(new, old);
    let rt = support::workspace::runtime();
    let with_old = rt.block_on(route_logins_of(&cl, 2, route_port, &old));
    assert!(
        with_old.iter().all(|a| *a == RouteLogin::Refused),
        "{with_old:?}"
    );
    // A second `up` has nothing left to do: the rotation is not due again.
    let again = text(&cl.ws.ok(&["up"]));
    assert!(!again.contains("rotating the route credential"), "{again}");
    let status: serde_json::Value =
        serde_json::from_slice(&cl.ws.run(&["status", "--json"]).stdout).unwrap();
    assert!(status["route"]["rotation"].is_null(), "{status}");

    // n3 starts again, with the old credential in its nats-server.conf.
    support::run(
        std::process::Command::new("docker").args(["restart", &cl.projects[2].container_id()]),
    );
    assert!(
        support::wait_for_addr(ADDRS[2], cl.port, Duration::from_secs(30)),
        "n3 came back for its clients"
    );
    std::thread::sleep(Duration::from_secs(5));
    let gameserver = cl.ws.login("gameserver");
    let (received, sent) = rt.block_on(async {
        let on_n1 = client_of(&gameserver, cl.port, 0).await;
        let on_n3 = client_of(&gameserver, cl.port, 2).await;
        let mut sub = on_n1.subscribe("rm.probe").await.unwrap();
        on_n1.flush().await.unwrap();
        let mut received = 0;
        for _ in 0..10 {
            on_n3.publish("rm.probe", "x".into()).await.unwrap();
            on_n3.flush().await.unwrap();
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await
            {
                received += 1;
            }
        }
        (received, 10)
    });
    assert_eq!(
        received, 0,
        "{received} of {sent} messages from n3 reached n1"
    );
    // The control: the same probe between n1 and n2 goes through.
    let across = rt.block_on(async {
        let on_n1 = client_of(&gameserver, cl.port, 0).await;
        let on_n2 = client_of(&gameserver, cl.port, 1).await;
        let mut sub = on_n1.subscribe("rm.probe").await.unwrap();
        on_n1.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        on_n2.publish("rm.probe", "x".into()).await.unwrap();
        on_n2.flush().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), sub.next()).await
    });
    assert!(matches!(across, Ok(Some(_))), "n2 to n1 did not go through");
}

/// The new route password of a rotation under way, in the deployment's secrets.yaml.
fn pending_route_password(state: &Path, name: &str) -> String {
    let yaml = std::fs::read_to_string(state.join(name).join("secrets.yaml")).unwrap();
    let secrets: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    secrets["route"]["pending"]["password"]
        .as_str()
        .expect("a rotation under way has its new password")
        .to_string()
}

#[test]
fn a_node_removed_while_the_route_credential_rotates_is_shut_out_by_a_second_rotation() {
    let cl = Cluster::named("rmmid");
    let route_port = free_port_on_besides(&ADDRS, &[cl.port]);
    let three = cl.yaml(route_port, |i| cl.sshd[i].port());
    cl.ws.set_config(&three);
    cl.ws.ok(&["up"]);
    let state = cl.ws.state_dir();
    // A rotation that dies after its first pass: every node's files, n3's too, carry the new
    // password already.
    cl.ws.crash_at(
        "rotate-route:dialing-both",
        &["rotate-passwords", "--route"],
    );
    let given = pending_route_password(&state, &cl.name);
    assert!(
        live_confs(&cl)[2].contains(&given),
        "n3 dials with the new password"
    );
    // Then n3 is stopped and removed, and `up` finishes the rotation: n3 holds what that
    // rotation made current, so a second one must follow at once.
    support::run(
        std::process::Command::new("docker").args(["stop", &cl.projects[2].container_id()]),
    );
    let n3 = three.find("- name: n3\n").expect("n3's entry");
    cl.ws.set_config(&three[..n3]);
    let said = text(&cl.ws.ok(&["up"]));
    assert!(
        said.contains("node n3 was removed while the route credential was being rotated"),
        "{said}"
    );
    let now = route_password(&state, &cl.name);
    assert_ne!(now, given, "the password n3 holds is not the current one");
    let rt = support::workspace::runtime();
    let with_given = rt.block_on(route_logins_of(&cl, 2, route_port, &given));
    assert!(
        with_given.iter().all(|a| *a == RouteLogin::Refused),
        "{with_given:?}"
    );
    let with_now = rt.block_on(route_logins_of(&cl, 2, route_port, &now));
    assert!(
        with_now.iter().all(|a| *a == RouteLogin::Accepted),
        "{with_now:?}"
    );
}
