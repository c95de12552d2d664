//! Issue 18: the system account and removing a node, on a real four-node cluster (four sshd on
//! 127.0.0.21-24, `network: host`, the test image's nats-server 2.10.26):
//! - `status` shows each node's connections, slow consumers, memory, JetStream streams and
//!   storage, read as natsup's system user, and they match what the server itself reports to
//!   this test's own system-user connection (`$SYS.REQ.SERVER.<id>.JSZ`);
//! - `verify` names the JetStream meta leader, the one every node's JSZ names;
//! - the node that leads an R3 stream is dropped from `nodes` and `up` runs while a client
//!   holding every URL publishes to that stream every 20 ms, each publish waiting for its ack:
//!   the node is put in lame duck, leaves the meta group (the leader's JSZ
//!   `meta_cluster.replicas` no longer lists it), the others drop its route, its container is
//!   stopped, and the route credential is rotated; the stream keeps its three replicas, on the
//!   three remaining nodes, and every acked message (at most two publishes, of ~790, fail as
//!   the stream's replica set changes: see the bound below);
//! - going from three nodes to two with that R3 stream is refused, naming the stream, and
//!   nothing is changed.

use natsup_dev_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cluster::{ADDRS, Cluster, connect_all};
use support::free_port_on_besides;
use support::workspace::text;

/// natsup's system user's password, from the deployment's secrets.yaml.
fn system_password(cl: &Cluster) -> String {
    let path = cl.ws.state_dir().join(&cl.name).join("secrets.yaml");
    let secrets: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    secrets["system"]["password"]
        .as_str()
        .expect("a system user in the state")
        .to_string()
}

/// A system-user client of node `i` alone.
async fn system_client(cl: &Cluster, i: usize) -> async_nats::Client {
    let mut login = cl.ws.login("gameserver");
    login.user = natsup::state::SYSTEM_USER.to_string();
    login.password = system_password(cl);
    login
        .options()
        .connect(format!("tls://{}:{}", ADDRS[i], cl.port))
        .await
        .expect("the system user connects")
}

/// What node `i` itself answers to `$SYS.REQ.SERVER.<its id>.<what>`, its `data`.
async fn ask(cl: &Cluster, i: usize, what: &str) -> Value {
    let client = system_client(cl, i).await;
    let id = client.server_info().server_id;
    let reply = client
        .request(format!("$SYS.REQ.SERVER.{id}.{what}"), "{}".into())
        .await
        .expect("the server answers");
    let v: Value = serde_json::from_slice(&reply.payload).unwrap();
    v["data"].clone()
}

/// The meta leader's name, and the peers its JSZ lists, asked of the first `nodes` nodes.
async fn meta(cl: &Cluster, nodes: &[usize]) -> (String, Vec<String>) {
    let mut leader = String::new();
    for &i in nodes {
        let jsz = ask(cl, i, "JSZ").await;
        if let Some(l) = jsz["meta_cluster"]["leader"].as_str() {
            leader = l.to_string();
        }
    }
    let at = nodes
        .iter()
        .copied()
        .find(|&i| format!("n{}", i + 1) == leader)
        .expect("the leader is one of the nodes asked");
    let jsz = ask(cl, at, "JSZ").await;
    let peers = jsz["meta_cluster"]["replicas"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    (leader, peers)
}

/// natsup.yaml without node `name`'s entry.
fn without(yaml: &str, name: &str) -> String {
    let start = yaml
        .find(&format!("- name: {name}\n"))
        .unwrap_or_else(|| panic!("no {name} in\n{yaml}"));
    let end = yaml[start + 2..]
        .find("- name: ")
        .map_or(yaml.len(), |e| start + 2 + e);
    format!("{}{}", &yaml[..start], &yaml[end..])
}

fn running(id: &str) -> bool {
    let out = support::run(std::process::Command::new("docker").args([
        "inspect",
        "-f",
        "{{.State.Running}}",
        id,
    ]));
    String::from_utf8_lossy(&out.stdout).trim() == "true"
}

#[test]
fn a_node_leaves_through_lame_duck_and_the_meta_group_and_an_r3_stream_keeps_its_writes() {
    let mut cl = Cluster::named("nrm");
    cl.add_server();
    let route_port = free_port_on_besides(&ADDRS, &[cl.port]);
    let four = cl.yaml(route_port, |i| cl.sshd[i].port());
    cl.ws.set_config(&four);
    cl.ws.ok(&["up"]);
    let rt = support::workspace::runtime();

    // An R3 stream, written by a client that holds every node's URL.
    let gameserver = cl.ws.login("gameserver");
    let urls: Vec<async_nats::ServerAddr> = ADDRS
        .iter()
        .map(|a| format!("tls://{a}:{}", cl.port).parse().unwrap())
        .collect();
    let client = rt.block_on(connect_all(
        &gameserver,
        urls,
        Arc::new(AtomicUsize::new(0)),
    ));
    let js = {
        let _in_runtime = rt.enter();
        async_nats::jetstream::new(client.clone())
    };
    let info = rt.block_on(async {
        let mut stream = js
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: "NRM".into(),
                subjects: vec!["nrm.>".into()],
                num_replicas: 3,
                ..Default::default()
            })
            .await
            .expect("an R3 stream");
        for _ in 0..10 {
            js.publish("nrm.before", "b".into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        stream.info().await.unwrap().clone()
    });
    let leader = info.cluster.as_ref().unwrap().leader.clone().unwrap();

    // `status`: each node's figures, read as the system user, agree with the server's own.
    let status: Value = serde_json::from_slice(&cl.ws.ok(&["status", "--json"]).stdout).unwrap();
    for i in 0..4 {
        let row = &status["nodes"][i];
        let figures = &row["figures"];
        assert!(figures.is_object(), "no figures for {row}");
        let jsz = rt.block_on(ask(&cl, i, "JSZ"));
        assert_eq!(figures["streams"], jsz["streams"], "n{}: {row}", i + 1);
        assert_eq!(figures["server"], format!("n{}", i + 1), "{row}");
        assert!(figures["memory_bytes"].as_u64().unwrap() > 0, "{row}");
        assert!(figures["connections"].is_u64(), "{row}");
        assert!(figures["slow_consumers"].is_u64(), "{row}");
        assert!(figures["storage_bytes"].is_u64(), "{row}");
    }
    let holders: u64 = (0..4)
        .map(|i| status["nodes"][i]["figures"]["streams"].as_u64().unwrap())
        .sum();
    assert_eq!(holders, 3, "three nodes hold a replica of NRM: {status}");
    let table = text(&cl.ws.ok(&["status"]));
    assert!(table.contains("SLOW CONSUMERS"), "{table}");

    // `verify` names the meta leader, the one the servers name.
    let report = text(&cl.ws.verify(&[]));
    let (meta_leader, peers) = rt.block_on(meta(&cl, &[0, 1, 2, 3]));
    assert_eq!(peers.len(), 3, "{peers:?}");
    assert!(
        report.contains(&format!("the JetStream meta leader is {meta_leader}")),
        "{report}"
    );

    // The stream's leader leaves `nodes`; `up` runs while a client of the three remaining
    // nodes writes every 20 ms (a client of the removed node is told to go by lame duck, and
    // an ack in flight when it is closed is lost with its connection: the client's business).
    let gone: usize = leader[1..].parse::<usize>().unwrap() - 1;
    let three = without(&four, &leader);
    let gone_container = cl.projects[gone].container_id();
    cl.ws.set_config(&three);
    let urls: Vec<async_nats::ServerAddr> = ADDRS
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != gone)
        .map(|(_, a)| format!("tls://{a}:{}", cl.port).parse().unwrap())
        .collect();
    drop(client);
    let client = rt.block_on(connect_all(
        &gameserver,
        urls,
        Arc::new(AtomicUsize::new(0)),
    ));
    let js = {
        let _in_runtime = rt.enter();
        async_nats::jetstream::new(client.clone())
    };
    let (stop, publisher) = support::load::publish_throughout(&rt, &js, "nrm.tick");
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let out = cl.ws.run(&["up"]);
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let support::load::Published { acked, failed, .. } = rt.block_on(publisher).unwrap();
    let said = text(&out);
    eprintln!(
        "figures: removing the stream leader {leader} from 4 nodes: {took:?}, {acked} R3 \
         publishes acked, {} failed",
        failed.len()
    );
    assert!(out.status.success(), "{said}");
    let order: Vec<usize> = [
        format!("node {leader}: putting the removed node in lame duck"),
        format!("removing node {leader} from the JetStream meta group"),
        "uploading, validating and reloading the server".to_string(),
        format!("node {leader}: stopping the removed node's container"),
        "route credential rotated".to_string(),
    ]
    .iter()
    .map(|w| {
        said.find(w.as_str())
            .unwrap_or_else(|| panic!("{w} missing from\n{said}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{said}");
    // Measured over three runs before this bound: 0, 1 ("no stream found") and 1 (an ack not
    // received within 5 s) failed publishes of ~790, each at the moment the stream's replica
    // set changed. A publisher that retries such a publish loses nothing (every acked message
    // is kept, checked below); at most two are allowed, and only of those two kinds.
    assert!(failed.len() <= 2, "publishes failed: {failed:?}\n{said}");
    assert!(
        failed
            .iter()
            .all(|e| e.contains("no stream found") || e.contains("didn't receive ack")),
        "publishes failed: {failed:?}\n{said}"
    );
    assert!(acked > 50, "only {acked} publishes went out");

    // It left the meta group, its container is stopped, and the stream keeps three replicas,
    // on the remaining nodes, with every acked message.
    let remaining: Vec<usize> = (0..4).filter(|&i| i != gone).collect();
    let (_, peers) = rt.block_on(meta(&cl, &remaining));
    assert!(
        !peers.contains(&leader),
        "{leader} is still a peer: {peers:?}"
    );
    assert_eq!(peers.len(), 2, "{peers:?}");
    assert!(!running(&gone_container), "{leader}'s container still runs");
    let info = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = js
                .get_stream("NRM")
                .await
                .unwrap()
                .info()
                .await
                .unwrap()
                .clone();
            let c = info.cluster.clone().unwrap();
            let current = c.replicas.iter().filter(|r| r.current).count();
            if (c.replicas.len() == 2 && current == 2) || Instant::now() > deadline {
                return info;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let c = info.cluster.as_ref().unwrap();
    let mut holders: Vec<String> = c.replicas.iter().map(|r| r.name.clone()).collect();
    holders.push(c.leader.clone().unwrap());
    assert_eq!(holders.len(), 3, "{c:?}");
    assert!(!holders.contains(&leader), "{c:?}");
    // Every acked message is kept; a publish whose ack timed out may have been stored too.
    let kept = info.state.messages;
    assert!(
        kept >= 10 + acked as u64 && kept <= 10 + (acked + failed.len()) as u64,
        "{kept} messages kept, {acked} acked: {info:?}"
    );
    let again = text(&cl.ws.ok(&["up"]));
    assert!(again.contains("nothing to do"), "{again}");

    // Three to two with an R3 stream: refused, naming it; the node keeps running.
    let next = remaining[0];
    let name = format!("n{}", next + 1);
    let kept = cl.projects[next].container_id();
    cl.ws.set_config(&without(&three, &name));
    let out = cl.ws.run(&["up"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("NRM R3"), "{said}");
    assert!(
        said.contains(&format!("cannot remove node {name}")),
        "{said}"
    );
    assert!(running(&kept), "{name} was stopped by a refused removal");
    cl.ws.set_config(&three);
    drop(client);
}
