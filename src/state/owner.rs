//! Which deployment a state directory belongs to (`<state-dir>/<name>/deployment.yaml`).
//!
//! The state directory is named after the config's `name` alone, so two natsup.yaml with one
//! name (a copy of the example for staging and for prod) would find the same CA, passwords
//! and route credential: staging's credentials would log into prod, and each `up` would
//! issue a certificate for the other's hosts. The record holds the config's `id` and the
//! servers the state was last used for; a config is refused the state when
//! - the record has an `id` and the config another one, or none; or
//! - none of the config's servers is one the record names. A server is the same when its
//!   `host` is, or when natsup reaches it the same way (`ssh` destination and `remote_dir`):
//!   so a node added, dropped or renamed, a moved remote dir, or a new DNS name for the
//!   same machine keep the state, while a copy for other hosts does not.
//!
//! Only a run that holds the state lock writes the record ([`claim`]); the others only check
//! it ([`check`]). A state with no record (made by a natsup before this one) is claimed by
//! its first locked run, with no action from the user.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StateDir;
use crate::config::{Config, Node};
use crate::error::{Error, Result};
use crate::fsutil::{read_optional, write_atomic};

/// The file's name in the state directory.
pub const OWNER_FILE: &str = "deployment.yaml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Owner {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// The natsup.yaml that last used the state; only named in a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<PathBuf>,
    servers: Vec<Server>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Server {
    host: String,
    /// The SSH destination (with its port, if set); none for a deployment run with
    /// `--local` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ssh: Option<String>,
    remote_dir: String,
    /// The client port: two deployments on one machine (one `host`) cannot share it. Absent
    /// from a record an earlier natsup wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
}

impl Server {
    fn of(node: &Node) -> Server {
        Server {
            host: node.host.clone(),
            ssh: node.ssh.as_ref().map(|s| match s.port {
                Some(port) => format!("{} port {port}", s.destination),
                None => s.destination.clone(),
            }),
            remote_dir: node.remote_dir.clone(),
            port: Some(node.port),
        }
    }

    /// The same server: reached the same way, or the same address and client port (a staging
    /// copy on the prod machine has its own folder and port, so it is another server).
    fn same(&self, other: &Server) -> bool {
        let same_port = match (self.port, other.port) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        (self.host.eq_ignore_ascii_case(&other.host) && same_port)
            || (self.ssh == other.ssh && self.remote_dir == other.remote_dir)
    }

    fn describe(&self) -> String {
        match &self.ssh {
            Some(ssh) => format!("{} (ssh {ssh}, {})", self.host, self.remote_dir),
            None => format!("{} ({})", self.host, self.remote_dir),
        }
    }
}

impl Owner {
    fn of(config: &Config) -> Owner {
        Owner {
            id: config.id.clone(),
            config: config.source().map(Path::to_path_buf),
            servers: config.nodes().iter().map(Server::of).collect(),
        }
    }
}

fn path(dir: &StateDir) -> PathBuf {
    dir.root.join(OWNER_FILE)
}

fn read(dir: &StateDir) -> Result<Option<Owner>> {
    let path = path(dir);
    let Some(text) = read_optional(&path)? else {
        return Ok(None);
    };
    serde_yaml::from_str(&text).map(Some).map_err(|e| {
        Error::corrupt(
            &path,
            format!(
                "cannot be read ({e}); it records which deployment this state belongs to: \
                 remove it to have the next run record the config that uses the state"
            ),
        )
    })
}

/// Refuses `config` the state in `dir` when the state belongs to another deployment. Writes
/// nothing.
pub(super) fn check(config: &Config, dir: &StateDir) -> Result<()> {
    match read(dir)? {
        Some(recorded) => refuse_other(config, dir, &recorded),
        None => Ok(()),
    }
}

/// Like [`check`], then records `config` as the state's owner if the record is missing or
/// out of date (an id added, servers changed). Call under the state lock.
pub(super) fn claim(config: &Config, dir: &StateDir) -> Result<()> {
    let recorded = read(dir)?;
    if let Some(recorded) = &recorded {
        refuse_other(config, dir, recorded)?;
    }
    let owner = Owner::of(config);
    if recorded.as_ref() != Some(&owner) {
        let text = format!(
            "# Which deployment this state belongs to: natsup refuses it to a natsup.yaml with\n\
             # another `id`, or with none of these servers. Written by natsup; remove it only if\n\
             # natsup.yaml is this same deployment, moved to other servers.\n{}",
            serde_yaml::to_string(&owner).expect("an owner record always serializes")
        );
        crate::fsutil::create_private_dir(&dir.root)?;
        write_atomic(&path(dir), text.as_bytes(), 0o600)?;
    }
    Ok(())
}

fn refuse_other(config: &Config, dir: &StateDir, recorded: &Owner) -> Result<()> {
    let file = match config.source() {
        Some(path) => path.display().to_string(),
        None => format!("the built-in `{}` deployment", config.name),
    };
    let record = path(dir);
    let root = dir.root.display();
    let whose = match &recorded.config {
        Some(path) => format!("{}, last used by {}", record.display(), path.display()),
        None => record.display().to_string(),
    };
    let apart = format!(
        "if it is another deployment, give it its own `name` in {file} (each name has its own \
         state), or its own state directory with --state-dir"
    );
    let refuse = |message: String, hint: String| Error::OtherDeployment { message, hint };
    match (&recorded.id, &config.id) {
        (Some(theirs_id), Some(ours)) if theirs_id != ours => {
            return Err(refuse(
                format!(
                    "{file} is deployment `{}` with id `{ours}`, but the state in {root} \
                     belongs to the deployment with id `{theirs_id}` ({whose})",
                    config.name
                ),
                format!(
                    "if {file} is that same deployment (`natsup init --force` writes a new id), \
                     set `id: {theirs_id}` in it; {apart}"
                ),
            ));
        }
        (Some(theirs_id), None) => {
            return Err(refuse(
                format!(
                    "{file} has no `id`, but the state in {root} belongs to deployment `{}` \
                     with id `{theirs_id}` ({whose})",
                    config.name
                ),
                format!("if {file} is that same deployment, add `id: {theirs_id}` to it; {apart}"),
            ));
        }
        _ => {}
    }
    let ours: Vec<Server> = config.nodes().iter().map(Server::of).collect();
    if !ours
        .iter()
        .any(|s| recorded.servers.iter().any(|r| s.same(r)))
    {
        let list = |servers: &[Server]| {
            servers
                .iter()
                .map(Server::describe)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(refuse(
            format!(
                "the state in {root} belongs to deployment `{}` on {} ({whose}); {file} \
                 names none of those servers ({})",
                config.name,
                list(&recorded.servers),
                list(&ours)
            ),
            format!(
                "{apart}; if it is the same deployment, moved to these servers, remove {} and \
                 run again",
                record.display()
            ),
        ));
    }
    Ok(())
}
