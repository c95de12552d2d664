//! A cluster of natsup nodes on this machine: one sshd per node, each on its own loopback
//! address (127.0.0.21, .22, .23, and .24 for a fourth), one Compose project per node with
//! `network: host`, so each node's nats-server listens on its own address for clients and
//! routes, as on separate hosts. Used by `tests/e2e_cluster.rs` and `benches/cluster.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use super::load::counting_disconnects;
use super::workspace::{Login, Workspace};
use super::{ComposeProject, Sshd, free_port, test_image, unique_name};

/// The nodes' addresses, in order; any of 127.0.0.0/8 is loopback on Linux.
pub const ADDRS: [&str; 4] = ["127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24"];

/// A cluster's workspace, its nodes' sshd, remote dirs and Compose projects (whose guards
/// remove the containers by id on Drop), and the client port every node listens on.
pub struct Cluster {
    pub ws: Workspace,
    pub sshd: Vec<Sshd>,
    pub dirs: Vec<PathBuf>,
    pub projects: Vec<ComposeProject>,
    pub port: u16,
    /// The deployment's name, also the prefix of its folders.
    pub name: String,
}

impl Cluster {
    /// Three nodes of deployment `cl`, on ADDRS[..3]; no natsup.yaml yet (see [`Cluster::yaml`]).
    pub fn new() -> Cluster {
        Cluster::named("cl")
    }

    /// Three nodes of deployment `name`, on ADDRS[..3]; no natsup.yaml yet.
    pub fn named(name: &str) -> Cluster {
        let ws = Workspace::new(name);
        let sshd: Vec<Sshd> = ADDRS[..3].iter().map(|a| Sshd::start_at(a, "")).collect();
        let dirs: Vec<_> = (1..=3)
            .map(|i| {
                ws.path()
                    .join("server")
                    .join(unique_name(&format!("{name}-n{i}")))
            })
            .collect();
        let projects = dirs.iter().map(|d| ComposeProject::new(d)).collect();
        Cluster {
            ws,
            sshd,
            dirs,
            projects,
            port: free_port(),
            name: name.to_string(),
        }
    }

    /// natsup.yaml for the nodes, with the test image, `network: host` and routes on
    /// `route_port`; `ssh_port_of` overrides a node's SSH port.
    pub fn yaml(&self, route_port: u16, ssh_port_of: impl Fn(usize) -> u16) -> String {
        let nodes: String = (0..self.sshd.len())
            .map(|i| {
                let s = &self.sshd[i];
                format!(
                    "- name: n{n}\n  host: {a}\n  ssh: {user}@{a}\n  ssh_port: {p}\n  identity: {id}\n  known_hosts: {kh}\n  bind: {a}\n  remote_dir: {dir}\n",
                    n = i + 1,
                    a = ADDRS[i],
                    user = s.user(),
                    p = ssh_port_of(i),
                    id = s.identity().display(),
                    kh = s.known_hosts().display(),
                    dir = self.dirs[i].display(),
                )
            })
            .collect();
        format!(
            "name: {name}\nimage: {image}\nport: {port}\nnetwork: host\ncluster:\n  port: {route_port}\nnodes:\n{nodes}",
            name = self.name,
            image = test_image(),
            port = self.port,
        )
    }

    /// Writes natsup.yaml for the nodes as they are (each reached on its sshd's port), routes
    /// on a free port.
    pub fn configure(&self) {
        self.ws
            .set_config(&self.yaml(free_port(), |i| self.sshd[i].port()));
    }

    /// Each node's containers, by id.
    pub fn containers(&self) -> Vec<Vec<String>> {
        self.projects.iter().map(|p| p.container_ids()).collect()
    }

    /// The client URL of each of the first three nodes.
    pub fn urls(&self) -> Vec<async_nats::ServerAddr> {
        ADDRS[..3]
            .iter()
            .map(|a| format!("tls://{a}:{}", self.port).parse().unwrap())
            .collect()
    }

    /// A fourth server: its sshd, directory and Compose project.
    pub fn add_server(&mut self) {
        let i = self.sshd.len();
        self.sshd.push(Sshd::start_at(ADDRS[i], ""));
        let dir =
            self.ws
                .path()
                .join("server")
                .join(unique_name(&format!("{}-n{}", self.name, i + 1)));
        self.projects.push(ComposeProject::new(&dir));
        self.dirs.push(dir);
    }
}

impl Default for Cluster {
    fn default() -> Cluster {
        Cluster::new()
    }
}

/// A client of `login` holding every URL in `urls`, counting the disconnects the client
/// library reports into `disconnects`; connected and flushed within 30 s + 10 s, or a panic
/// (a cluster that takes longer is broken, and an unbounded wait would hang the run).
pub async fn connect_all(
    login: &Login,
    urls: Vec<async_nats::ServerAddr>,
    disconnects: Arc<AtomicUsize>,
) -> async_nats::Client {
    let client = tokio::time::timeout(
        Duration::from_secs(30),
        counting_disconnects(login, &disconnects).connect(urls),
    )
    .await
    .expect("a connect within 30 s")
    .expect("a client with the three URLs connects");
    tokio::time::timeout(Duration::from_secs(10), client.flush())
        .await
        .expect("a flush within 10 s")
        .expect("flush");
    client
}
