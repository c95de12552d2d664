//! A three-node cluster, for real (issue 12): three sshd on 127.0.0.21, .22 and .23, three
//! Compose projects with `network: host`, each node's nats-server listening on its own
//! address for clients and routes. One test, in order, so the cluster is bootstrapped once:
//! - a node unreachable over SSH: `up` names it and changes nothing on any node;
//! - bootstrap: every node up, every check of `verify` OK, a client holding the three URLs
//!   connects;
//! - one node's container killed: R3 KV writes still succeed; `up` brings it back;
//! - rolling `rotate-passwords` while a client holding all three URLs publishes every 20 ms:
//!   no publish fails, and that (unaffected) client is never disconnected.
//!
//! And a rolling upgrade (issue 18): 2.10.26 → 2.11.11 by `up`, one node at a time in lame
//! duck, while R3 KV puts go on.

use natsup_dev_support as support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::cluster::{ADDRS, Cluster, connect_all};
use support::load::Listening;
use support::workspace::{Workspace, text};
use support::{free_port_on, free_port_on_besides, test_image, upgrade_image};

#[test]
fn a_three_node_cluster() {
    let mut cl = Cluster::new();
    let route_port = free_port_on(&ADDRS);
    let started = Instant::now();

    // A node unreachable over SSH (nothing listens on that port): `up` names it, and no node
    // gets a container or a file.
    let dead_port = free_port_on(&ADDRS[2..3]);
    cl.ws.set_config(&cl.yaml(route_port, |i| {
        if i == 2 { dead_port } else { cl.sshd[i].port() }
    }));
    let out = cl.ws.run(&["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("node n3"), "{}", text(&out));
    assert!(
        text(&out).contains("nothing was changed on any node"),
        "{}",
        text(&out)
    );
    assert!(
        cl.containers().iter().all(Vec::is_empty),
        "{:?}",
        cl.containers()
    );
    for dir in &cl.dirs {
        assert!(
            !dir.join("nats-config").exists(),
            "{} got files",
            dir.display()
        );
    }

    // Bootstrap: all three at once, then every check of the cluster's verify is OK.
    cl.ws
        .set_config(&cl.yaml(route_port, |i| cl.sshd[i].port()));
    let t = Instant::now();
    let out = cl.ws.ok(&["up"]);
    let bootstrap = t.elapsed();
    let up = text(&out);
    assert!(up.contains("starting 3 nodes at once"), "{up}");
    for check in ["routes", "messages_across", "kv_replicated", "meta_leader"] {
        assert!(up.contains(check), "{check} missing from\n{up}");
    }
    assert!(
        cl.containers().iter().all(|c| c.len() == 1),
        "{:?}",
        cl.containers()
    );
    let out = cl.ws.verify(&[]);
    let report = text(&out);
    for n in ["n1", "n2", "n3"] {
        assert!(report.contains(&format!("{n}/server")), "{report}");
        assert!(report.contains(&format!("{n}/gameserver")), "{report}");
    }
    // A second `up` changes nothing; `plan` agrees; `status` has a healthy row per node.
    let again = text(&cl.ws.ok(&["up"]));
    assert!(again.contains("nothing to do"), "{again}");
    let plan = text(&cl.ws.ok(&["plan"]));
    assert_eq!(plan.matches("plan: nothing").count(), 3, "{plan}");
    let status = text(&cl.ws.ok(&["status"]));
    assert_eq!(status.matches("routes up").count(), 3, "{status}");
    assert!(status.contains("cluster:     healthy"), "{status}");
    let json: serde_json::Value =
        serde_json::from_slice(&cl.ws.ok(&["status", "--json"]).stdout).unwrap();
    assert_eq!(json["healthy"], true, "{json}");
    assert_eq!(json["nodes"][2]["node"], "n3", "{json}");
    assert_eq!(json["nodes"][2]["in_sync"], true, "{json}");

    // With the cluster running and a change pending (a new user), a node that cannot be
    // reached: `up` names it and no node reloads or gets a file.
    let good = cl.ws.config();
    let live: Vec<String> = cl
        .dirs
        .iter()
        .map(|d| std::fs::read_to_string(d.join("nats-config/nats-server.conf")).unwrap())
        .collect();
    let started_at: Vec<String> = cl
        .projects
        .iter()
        .map(|p| p.started_at(&p.container_id()))
        .collect();
    cl.ws.set_config(
        &cl.yaml(route_port, |i| {
            if i == 1 { dead_port } else { cl.sshd[i].port() }
        })
        .replace("nodes:\n", "users:\n- name: matchmaker\n- name: matchmaker_httpd\n- name: gameserver\n- name: webhook\n- name: analytics\nnodes:\n"),
    );
    let out = cl.ws.run(&["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("node n2"), "{}", text(&out));
    for (i, d) in cl.dirs.iter().enumerate() {
        let now = std::fs::read_to_string(d.join("nats-config/nats-server.conf")).unwrap();
        assert_eq!(now, live[i], "node n{} got a new config", i + 1);
        let p = &cl.projects[i];
        assert_eq!(p.started_at(&p.container_id()), started_at[i]);
    }
    assert!(!live[0].contains("analytics"));
    cl.ws.set_config(&good);

    // The same bootstrap for one server, side by side (issue 12's benchmark: a 3-node
    // bootstrap should cost at most 1.5x a 1-node one, as the nodes start in parallel).
    let single = Workspace::new("cl1");
    single.init_ssh("cl1", &cl.sshd[0]);
    let t = Instant::now();
    single.ok(&["up"]);
    let one_node = t.elapsed();
    drop(single);

    natsup::install_crypto_provider();
    let rt = natsup::runtime();
    let matchmaker = cl.ws.login("matchmaker");
    let gameserver = cl.ws.login("gameserver");
    let disconnects = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let client = connect_all(&matchmaker, cl.urls(), disconnects.clone()).await;
        client.flush().await.unwrap();
    });

    // What `natsup env` hands a bevygap component: NATS_HOST, which bevygap passes straight to
    // async-nats' `connect` as one string, connects, and the client learns the other nodes
    // from the server; NATS_SERVERS, split on commas, is every node.
    let env: serde_json::Value =
        serde_json::from_slice(&cl.ws.ok(&["env", "matchmaker", "--format", "json"]).stdout)
            .unwrap();
    let host = env["NATS_HOST"].as_str().unwrap().to_string();
    let servers: Vec<String> = env["NATS_SERVERS"]
        .as_str()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    assert_eq!(servers.len(), 3, "{env}");
    assert!(!host.contains(','), "{env}");
    rt.block_on(async {
        let client = matchmaker
            .options()
            .connect(host.as_str())
            .await
            .unwrap_or_else(|e| panic!("bevygap's connect with NATS_HOST={host}: {e}"));
        let learned = client.server_info().connect_urls;
        assert!(learned.len() >= 2, "the client learned only {learned:?}");
        let all: Vec<async_nats::ServerAddr> = servers.iter().map(|s| s.parse().unwrap()).collect();
        matchmaker
            .options()
            .connect(all)
            .await
            .expect("NATS_SERVERS connects");
    });

    // One node's container killed: R3 KV writes still succeed through the others.
    let (kv_ok, first_after_kill) = rt.block_on(async {
        let client = connect_all(&gameserver, cl.urls(), Arc::new(AtomicUsize::new(0))).await;
        let js = async_nats::jetstream::new(client.clone());
        let kv = js
            .create_key_value(async_nats::jetstream::kv::Config {
                bucket: "sessions".into(),
                num_replicas: 3,
                ..Default::default()
            })
            .await
            .expect("an R3 bucket");
        kv.put("before", "1".into())
            .await
            .expect("put before the kill");
        let n3 = cl.projects[2].container_id();
        let killed = Instant::now();
        support::run(Command::new("docker").args(["kill", &n3]));
        // If n3 led the stream, its followers elect a new leader first: until then a put
        // finds no stream ("no responders"). Time until the first put succeeds, then 20
        // more in a row must.
        let mut first: Option<Duration> = None;
        while first.is_none() && killed.elapsed() < Duration::from_secs(20) {
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(5), kv.put("first", "v".into())).await
            {
                first = Some(killed.elapsed());
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let mut ok = 0;
        for i in 0..20 {
            match tokio::time::timeout(Duration::from_secs(5), kv.put(format!("k{i}"), "v".into()))
                .await
            {
                Ok(Ok(_)) => ok += 1,
                other => eprintln!("put {i} while n3 is down: {other:?}"),
            }
        }
        (ok, first)
    });
    let first_after_kill = first_after_kill.expect("no R3 put succeeded within 20 s of the kill");
    assert_eq!(
        kv_ok, 20,
        "only {kv_ok} of 20 R3 puts succeeded with one node down"
    );
    let out = cl.ws.ok(&["up"]);
    let up = text(&out);
    assert!(
        up.contains("n3 started") || up.contains("n3 recreated"),
        "{up}"
    );
    cl.ws.verify(&[]);

    // Rolling rotate-passwords of one user, then a rolling renew-cert, each while an
    // unaffected client holding all three URLs publishes every 20 ms: no publish fails, and
    // it is never disconnected.
    let (rotate, rot_published) = rt.block_on(while_publishing(
        &cl,
        &gameserver,
        &["rotate-passwords", "--user", "webhook"],
    ));
    cl.ws.verify(&[]);
    // The rolling renew-cert also carries 200 connected clients (the benchmark):
    // none disconnected, and the slowest new connect during the roll is measured.
    let crowd_size = 200;
    let (crowd, crowd_disconnects) = rt.block_on(async {
        let disconnects = Arc::new(AtomicUsize::new(0));
        // 20 at a time: 200 TLS handshakes at once on two shared cores measure this
        // machine, not the roll.
        use futures_util::StreamExt;
        let clients: Vec<_> = futures_util::stream::iter(
            (0..crowd_size).map(|_| connect_all(&matchmaker, cl.urls(), disconnects.clone())),
        )
        .buffer_unordered(20)
        .collect()
        .await;
        (clients, disconnects)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let prober = rt.spawn({
        let (login, urls, stop) = (matchmaker.clone(), cl.urls(), stop.clone());
        async move {
            let mut slowest = Duration::ZERO;
            let mut failed = 0;
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                match login.options().connect(urls.clone()).await {
                    Ok(c) => {
                        let _ = c.flush().await;
                        slowest = slowest.max(t.elapsed());
                    }
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (slowest, failed)
        }
    });
    let (renew, renew_published) = rt.block_on(while_publishing(
        &cl,
        &gameserver,
        &["renew-cert", "--force"],
    ));
    stop.store(true, Ordering::SeqCst);
    let (slowest_connect, failed_connects) = rt.block_on(prober).unwrap();
    assert_eq!(
        crowd_disconnects.load(Ordering::SeqCst),
        0,
        "a client of the crowd was disconnected by the rolling renew-cert"
    );
    assert_eq!(failed_connects, 0, "a new connect failed during the roll");
    drop(crowd);
    let report = text(&cl.ws.verify(&[]));
    assert!(report.contains("n3/server"), "{report}");

    // A CA rotation across the cluster: --begin hands clients old + new; --finish rolls the
    // bundle, then new certificates, then the new CA alone, while a client that took the
    // bundle publishes throughout.
    cl.ws.ok(&["rotate-ca", "--begin"]);
    let bundled = cl.ws.login("gameserver");
    let (rotate_ca, ca_published) =
        rt.block_on(while_publishing(&cl, &bundled, &["rotate-ca", "--finish"]));
    let report = text(&cl.ws.verify(&[]));
    assert!(report.contains("n3/server"), "{report}");
    let again = text(&cl.ws.ok(&["up"]));
    assert!(again.contains("nothing to do"), "{again}");
    // Adding a node: the new one starts first and dials the others, then each existing node
    // reloads with the new route, one at a time; every check passes across four nodes.
    cl.add_server();
    cl.ws
        .set_config(&cl.yaml(route_port, |i| cl.sshd[i].port()));
    let t = Instant::now();
    let up = text(&cl.ws.ok(&["up"]));
    let add_node = t.elapsed();
    let order: Vec<usize> = ["n4 started", "n1 reloaded", "n2 reloaded", "n3 reloaded"]
        .iter()
        .map(|w| {
            up.find(w)
                .unwrap_or_else(|| panic!("{w} missing from\n{up}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{up}");
    let report = text(&cl.ws.verify(&[]));
    assert!(
        report.contains("n4/server") && report.contains("routes to every other node"),
        "{report}"
    );
    eprintln!(
        "figures: adding a fourth node {:.1}s",
        add_node.as_secs_f64()
    );

    eprintln!(
        "figures: bootstrap 3 nodes {:.1}s, 1 node {:.1}s; first R3 put after a kill {:.2}s; rolling rotate-passwords {:.1}s ({rot_published} publishes, 0 failed); rolling renew-cert {:.1}s ({renew_published} publishes, 0 failed; {crowd_size} more clients connected, 0 disconnects, slowest new connect {:.0} ms); rotate-ca --finish {:.1}s ({ca_published} publishes, 0 failed); whole test {:.0}s",
        bootstrap.as_secs_f64(),
        one_node.as_secs_f64(),
        first_after_kill.as_secs_f64(),
        rotate.as_secs_f64(),
        renew.as_secs_f64(),
        slowest_connect.as_secs_f64() * 1000.0,
        rotate_ca.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(disconnects.load(Ordering::SeqCst), 0);
}

/// Runs `natsup ARGS` while a client of `login` holding every node's URL publishes every
/// 20 ms, each publish flushed; asserts none failed and the client never disconnected.
/// Returns how long the command took and how many publishes went out.
async fn while_publishing(
    cl: &Cluster,
    login: &support::workspace::Login,
    args: &[&str],
) -> (Duration, usize) {
    let disconnects = Arc::new(AtomicUsize::new(0));
    let client = connect_all(login, cl.urls(), disconnects.clone()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (client, stop) = (client.clone(), stop.clone());
        async move {
            let (mut ok, mut failed) = (0usize, 0usize);
            while !stop.load(Ordering::SeqCst) {
                let sent = client.publish("game.tick", "t".into()).await.is_ok()
                    && tokio::time::timeout(Duration::from_secs(2), client.flush())
                        .await
                        .is_ok_and(|r| r.is_ok());
                if sent {
                    ok += 1
                } else {
                    failed += 1
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let out = tokio::task::spawn_blocking({
        let mut cmd = cl.ws.natsup();
        cmd.args(args);
        move || cmd.output().unwrap()
    })
    .await
    .unwrap();
    let took = t.elapsed();
    assert!(out.status.success(), "natsup {args:?}:\n{}", text(&out));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = publisher.await.unwrap();
    assert_eq!(
        failed,
        0,
        "{failed} of {} publishes failed during {args:?}",
        ok + failed
    );
    assert_eq!(
        disconnects.load(Ordering::SeqCst),
        0,
        "the unaffected client was disconnected during {args:?}"
    );
    (took, ok)
}

/// iptables rules that refuse every *new* connection to the route port `port` on the
/// cluster's addresses, removed when dropped. Routes already up stay up; a node restarted
/// behind them cannot form any again, while its clients still reach it. (A node dials its
/// peers from 127.0.0.1, the source Linux picks for any loopback destination, so only the
/// destination tells whose route a packet is.) Loopback traffic passes the OUTPUT chain, and
/// the rules name this test's own route port, so nothing else is touched.
struct RouteCut {
    rules: Vec<Vec<String>>,
}

impl RouteCut {
    fn new(addrs: &[&str], port: u16) -> RouteCut {
        let port = port.to_string();
        let rules: Vec<Vec<String>> = addrs
            .iter()
            .map(|addr| {
                [
                    "OUTPUT",
                    "-p",
                    "tcp",
                    "-d",
                    addr,
                    "--dport",
                    &port,
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "NEW",
                    "-j",
                    "DROP",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect()
            })
            .collect();
        for rule in &rules {
            let out = support::run(Command::new("iptables").arg("-A").args(rule));
            assert!(out.status.success(), "iptables -A {rule:?}: {}", text(&out));
        }
        RouteCut { rules }
    }
}

impl Drop for RouteCut {
    fn drop(&mut self) {
        for rule in &self.rules {
            let _ = Command::new("iptables").arg("-D").args(rule).output();
        }
    }
}

/// The live nats-server.conf of every node, as its server directory holds it.
fn live_confs(cl: &Cluster) -> Vec<String> {
    cl.dirs
        .iter()
        .map(|d| std::fs::read_to_string(d.join("nats-config/nats-server.conf")).unwrap())
        .collect()
}

/// R3 KV puts through a client holding every node's URL, one every 50 ms until `stop`; each
/// put is retried (2 s apiece) until it succeeds or 15 s have passed. Returns how many puts
/// went through, how many never did, and the longest a put took.
async fn keep_writing(
    kv: async_nats::jetstream::kv::Store,
    stop: Arc<AtomicBool>,
) -> (usize, usize, Duration) {
    let (mut ok, mut lost, mut slowest) = (0, 0, Duration::ZERO);
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let t = Instant::now();
        loop {
            let put = kv.put(format!("k{}", i % 50), i.to_string().into());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), put).await {
                ok += 1;
                break;
            }
            if t.elapsed() > Duration::from_secs(15) {
                lost += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        slowest = slowest.max(t.elapsed());
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (ok, lost, slowest)
}

/// Part 10: what one server can do, a cluster can (`plan --json`, `verify --user`,
/// `rotate-passwords --show`, the issuer in `status`); the health gate keeps a change from
/// taking a second node away; and a `cluster.port` change moves one node at a time while an
/// R3 bucket made before it keeps taking writes.
#[test]
fn a_cluster_is_gated_and_moves_its_route_port_without_losing_writes() {
    let cl = Cluster::new();
    let route_port = free_port_on_besides(&ADDRS, &[cl.port]);
    cl.ws
        .set_config(&cl.yaml(route_port, |i| cl.sshd[i].port()));
    cl.ws.ok(&["up"]);

    // Parity: one JSON plan per node, with its name.
    let plan: serde_json::Value =
        serde_json::from_slice(&cl.ws.ok(&["plan", "--json"]).stdout).unwrap();
    let plans = plan.as_array().expect("a list of plans");
    let names: Vec<&str> = plans.iter().map(|p| p["node"].as_str().unwrap()).collect();
    assert_eq!(names, ["n1", "n2", "n3"], "{plan}");
    assert!(plans.iter().all(|p| p["action"] == "nothing"), "{plan}");
    // verify --user checks that user on every node, and the cluster.
    let report = text(&cl.ws.verify(&["--user", "gameserver"]));
    for n in ["n1", "n2", "n3"] {
        assert!(report.contains(&format!("{n}/gameserver")), "{report}");
    }
    assert!(!report.contains("matchmaker"), "{report}");
    assert!(report.contains("kv_replicated"), "{report}");
    // status names each node's certificate issuer: the deployment's own CA.
    let json: serde_json::Value =
        serde_json::from_slice(&cl.ws.ok(&["status", "--json"]).stdout).unwrap();
    let issuers: Vec<&str> = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["certificate"]["issuer"].as_str().unwrap_or(""))
        .collect();
    assert!(
        issuers.len() == 3 && issuers.iter().all(|i| i.contains("natsup")),
        "{json}"
    );
    let status = text(&cl.ws.ok(&["status"]));
    assert!(status.contains("ISSUER"), "{status}");
    // rotate-passwords --show prints the new settings, proven on every node.
    let out = cl
        .ws
        .ok(&["rotate-passwords", "--user", "webhook", "--show"]);
    let said = text(&out);
    assert!(said.contains("rotated on every node: webhook"), "{said}");
    let webhook = cl.ws.login("webhook");
    assert!(
        said.contains(&format!("NATS_PASSWORD={}", webhook.password))
            || said.contains(&format!("NATS_PASSWORD='{}'", webhook.password)),
        "{said}"
    );

    let rt = support::workspace::runtime();
    let gameserver = cl.ws.login("gameserver");
    let client = rt.block_on(connect_all(
        &gameserver,
        cl.urls(),
        Arc::new(AtomicUsize::new(0)),
    ));
    let kv = rt.block_on(async {
        let js = async_nats::jetstream::new(client.clone());
        js.create_key_value(async_nats::jetstream::kv::Config {
            bucket: "gate".into(),
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("an R3 bucket")
    });

    // The gate. n3 runs and its clients reach it, but its routes are cut (it restarts behind
    // the rules, so it cannot form them again). A change that would reload the other nodes
    // is refused before any node is touched, naming the node that is away.
    let cut = RouteCut::new(&ADDRS[..3], route_port);
    support::run(Command::new("docker").args(["restart", &cl.projects[2].container_id()]));
    assert!(
        support::wait_for_addr(ADDRS[2], cl.port, Duration::from_secs(20)),
        "n3 came back for its clients"
    );
    let before = live_confs(&cl);
    let started: Vec<String> = cl
        .projects
        .iter()
        .map(|p| p.started_at(&p.container_id()))
        .collect();
    let config = cl.ws.config();
    let name = format!("name: {}\n", cl.name);
    cl.ws.set_config(&config.replace(
        &name,
        &format!("{name}users:\n- name: gameserver\n- name: webhook\n- name: matchmaker\n- name: matchmaker_httpd\n- name: analytics\n"),
    ));
    let out = cl.ws.run(&["up"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("node n3"), "{said}");
    assert!(said.contains("not healthy"), "{said}");
    assert_eq!(
        live_confs(&cl),
        before,
        "a node got a file while n3 was away"
    );
    let after: Vec<String> = cl
        .projects
        .iter()
        .map(|p| p.started_at(&p.container_id()))
        .collect();
    assert_eq!(after, started, "a container restarted while n3 was away");
    // Healed, the same change goes through. (`status` still says out of sync, for the user
    // not yet deployed: the routes are what is waited for.)
    drop(cut);
    let healed = Instant::now();
    while text(&cl.ws.run(&["status"])).matches("routes up").count() != 3 {
        assert!(
            healed.elapsed() < Duration::from_secs(60),
            "n3 did not rejoin within 60 s of healing"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    cl.ws.ok(&["up"]);

    // The route port moves while writes go on: one node at a time, each dialing its peers at
    // both ports, then the old routes are dropped.
    let new_route = free_port_on_besides(&ADDRS, &[cl.port, route_port]);
    let moved = cl.ws.config().replace(
        &format!("port: {route_port}\n"),
        &format!("port: {new_route}\n"),
    );
    assert_ne!(moved, cl.ws.config());
    cl.ws.set_config(&moved);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = rt.spawn(keep_writing(kv, stop.clone()));
    let out = cl.ws.ok(&["up"]);
    stop.store(true, Ordering::SeqCst);
    let (ok, lost, slowest) = rt.block_on(writer).unwrap();
    let said = text(&out);
    assert!(said.contains("cluster.port moves from"), "{said}");
    assert!(
        said.contains("dropping the routes to the old one"),
        "{said}"
    );
    eprintln!("route port move: {ok} R3 puts, {lost} lost, slowest {slowest:?}");
    assert_eq!(lost, 0, "R3 puts lost while the route port moved");
    assert!(ok > 10, "only {ok} puts went out");
    for conf in live_confs(&cl) {
        assert!(conf.contains(&format!(":{new_route}\"")), "{conf}");
        assert!(!conf.contains(&format!(":{route_port}\"")), "{conf}");
    }
    let report = text(&cl.ws.verify(&[]));
    for n in ["n1", "n2", "n3"] {
        assert!(
            report.contains(&format!("{n:<8}")) || report.contains(n),
            "{report}"
        );
    }
    assert_eq!(
        cl.ws.run(&["status"]).status.code(),
        Some(0),
        "every node routes to every other"
    );
    drop(client);
}

/// Issue 18: changing `image` rolls the cluster one node at a time, each node in lame duck
/// first (its JetStream leaders move away, its clients are told), and natsup proves from each
/// server the version it then runs. While it rolls, a client holding every URL puts to an R3
/// KV bucket: every put succeeds. A client connected to each node hears the lame-duck notice
/// before its server lets it go.
#[test]
fn a_cluster_upgrades_node_by_node_through_lame_duck_without_losing_a_put() {
    let cl = Cluster::new();
    let route_port = free_port_on_besides(&ADDRS, &[cl.port]);
    // A short grace keeps the test in seconds: nats-server's duration cannot go under 30 s,
    // and needs not, since a node lets its few clients go one a second after the grace.
    let grace = 3;
    cl.ws.set_config(&format!(
        "{}lame_duck:\n  grace_secs: {grace}\n  duration_secs: 30\n",
        cl.yaml(route_port, |i| cl.sshd[i].port())
    ));
    cl.ws.ok(&["up"]);

    let rt = support::workspace::runtime();
    let gameserver = cl.ws.login("gameserver");
    let writer_client = rt.block_on(connect_all(
        &gameserver,
        cl.urls(),
        Arc::new(AtomicUsize::new(0)),
    ));
    let kv = rt.block_on(async {
        let js = async_nats::jetstream::new(writer_client.clone());
        js.create_key_value(async_nats::jetstream::kv::Config {
            bucket: "upgrade".into(),
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("an R3 bucket")
    });
    // One client on each node (given that node's URL alone).
    let listeners: Vec<Listening> = cl
        .urls()
        .into_iter()
        .map(|url| rt.block_on(Listening::connect(&gameserver, vec![url])))
        .collect();

    cl.ws.edit_config(&test_image(), &upgrade_image());
    let plan = text(&cl.ws.ok(&["plan"]));
    assert_eq!(
        plan.matches("nats-server 2.10.26 → 2.11.11").count(),
        3,
        "{plan}"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writer = rt.spawn(keep_writing(kv, stop.clone()));
    let t = Instant::now();
    // SSH masters that exit after 5 s idle (the earlier runs' are closed, so this run opens
    // its own): n3's sits idle while n1 and n2 roll (over 5 s each), so its turn finds its
    // master gone, or about to go, and must open a new one. With the default 30 s, the same
    // happens on a roll with the default 10 s grace and a few dozen clients per node.
    for master in cl.ws.runtime.masters() {
        support::exit_master(&master);
    }
    let out = cl
        .ws
        .natsup()
        .args(["up"])
        .env("NATSUP_SSH_PERSIST", "5")
        .output()
        .expect("run natsup");
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (ok, lost, slowest) = rt.block_on(writer).unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    for n in ["n1", "n2", "n3"] {
        assert!(
            said.contains(&format!("node {n} runs nats-server 2.11.11")),
            "{n}'s version not proven:\n{said}"
        );
    }
    eprintln!(
        "rolling upgrade 2.10.26 → 2.11.11 through lame duck: `up` took {:.1}s; {ok} R3 puts, \
         {lost} lost, slowest {:.0} ms",
        took.as_secs_f64(),
        slowest.as_secs_f64() * 1000.0
    );
    assert_eq!(lost, 0, "R3 puts lost during the rolling upgrade");
    assert!(ok > 10, "only {ok} puts went out");
    for (i, l) in listeners.iter().enumerate() {
        let warned = l
            .warned_before_disconnect()
            .unwrap_or_else(|e| panic!("the client of n{}: {e}", i + 1));
        eprintln!(
            "client of n{}: notice {:.1}s before its disconnect",
            i + 1,
            warned.as_secs_f64()
        );
    }
    // Each server, asked directly: the new version.
    for url in cl.urls() {
        let client = rt.block_on(connect_all(
            &gameserver,
            vec![url.clone()],
            Arc::new(AtomicUsize::new(0)),
        ));
        assert_eq!(client.server_info().version, "2.11.11", "{url:?}");
    }
    // Going back a minor version is warned about, in `plan` already.
    cl.ws.edit_config(&upgrade_image(), &test_image());
    let plan = text(&cl.ws.ok(&["plan"]));
    assert!(
        plan.contains("warning: nats-server 2.11.11 → 2.10.26 is a downgrade of the minor version"),
        "{plan}"
    );
    drop(listeners);
    drop(writer_client);
}
