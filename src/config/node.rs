//! One server of a deployment, resolved from natsup.yaml once, when the config is loaded: a
//! file without `nodes` is a deployment of one node built from its top-level fields; with
//! `nodes`, each entry takes the top-level settings it does not set itself.

use std::net::IpAddr;

use super::{SshConfig, host_port};

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The node's name (`nodes[].name`); for a deployment of one, the deployment's name.
    pub name: String,
    /// The public DNS name or IP that clients dial: the first SAN of its certificate.
    pub host: String,
    /// How to reach the node; `None` only for a one-server file without `ssh` (`--local`).
    pub ssh: Option<SshConfig>,
    pub remote_dir: String,
    pub bind: IpAddr,
    pub port: u16,
    pub image: String,
    /// Where the node's certificate lives in local state: `server` for a file without
    /// `nodes` (as it always has), `nodes/<name>` for an entry of `nodes`.
    pub state_subdir: String,
}

impl Node {
    /// `host:port` for clients, bracketing IPv6 literals.
    pub fn addr(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// `nats://host:port`: what natsup's own checks dial.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr())
    }

    /// `tls://host:port`: what clients are handed.
    pub fn tls_url(&self) -> String {
        format!("tls://{}", self.addr())
    }
}
