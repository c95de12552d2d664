//! How natsup reached each node of a cluster (`nodes/<name>/reach.yaml`): its SSH settings,
//! folder and addresses, as the config said on the last run that made state. Once a node is
//! removed from `nodes`, the config no longer says how to reach it, yet `up` still has to put
//! it in lame duck and stop its container; this record is how. It holds no secret (an
//! identity is a path, as in the config).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::StateDir;
use crate::config::{Node, SshConfig};
use crate::error::{Error, Result};
use crate::fsutil::{read_optional, write_atomic};

const FILE: &str = "reach.yaml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeReach {
    pub name: String,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConfig>,
    pub remote_dir: String,
    pub bind: IpAddr,
    pub port: u16,
}

impl NodeReach {
    pub fn of(node: &Node) -> NodeReach {
        NodeReach {
            name: node.name.clone(),
            host: node.host.clone(),
            ssh: node.ssh.clone(),
            remote_dir: node.remote_dir.clone(),
            bind: node.bind,
            port: node.port,
        }
    }
}

fn path(dir: &StateDir, node: &str) -> std::path::PathBuf {
    dir.root.join("nodes").join(node).join(FILE)
}

/// Writes node `node`'s record in its state folder, unless it already says this.
pub fn record(dir: &StateDir, node: &Node) -> Result<()> {
    let path = path(dir, &node.name);
    let text = serde_yaml::to_string(&NodeReach::of(node)).expect("a record serializes");
    if read_optional(&path)?.as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    write_atomic(&path, text.as_bytes(), 0o600)
}

/// Node `node`'s record, if one was written.
pub fn read(dir: &StateDir, node: &str) -> Result<Option<NodeReach>> {
    let path = path(dir, node);
    let Some(text) = read_optional(&path)? else {
        return Ok(None);
    };
    serde_yaml::from_str(&text).map(Some).map_err(|e| {
        Error::corrupt(
            &path,
            format!(
                "cannot be read ({e}); it records how to reach a node removed from `nodes`: \
                 remove it, then stop that node's container yourself"
            ),
        )
    })
}
