//! What the `observe` script reported about the server, parsed.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Docker {
    Missing,
    /// Installed, but this user can use it neither directly nor through passwordless sudo.
    Denied,
    Usable {
        command: String,
        version: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dir {
    Writable,
    Readonly,
    /// Does not exist yet, and can be created.
    Absent,
    /// Does not exist, and cannot be created.
    Unwritable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub status: String,
    pub started_at: String,
    pub image: String,
    pub restarts: u32,
}

impl Container {
    pub fn running(&self) -> bool {
        self.status == "running"
    }
}

/// The Compose projects seen in the deployment directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projects {
    /// The project natsup runs the server under: its own, or the folder-named one of a
    /// container made before natsup named its projects, adopted as it stands.
    pub in_use: Option<String>,
    /// natsup's own name for it: the deployment's name and a hash of the folder's path.
    pub own: Option<String>,
    /// Other projects with containers made from this folder.
    pub others: Vec<String>,
    /// Compose files beside docker-compose.yaml (`compose.yaml`, ...).
    pub other_files: Vec<String>,
    /// The folder holds natsup's `.natsup/`.
    pub marker: bool,
}

impl Projects {
    /// The adopted folder-named project, if the server runs under one.
    pub fn adopted(&self) -> Option<&str> {
        self.in_use
            .as_deref()
            .filter(|p| Some(*p) != self.own.as_deref())
    }
}

/// Which of a node's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRole {
    /// `port`: clients connect to it.
    Client,
    /// `cluster.port`: the other nodes' routes connect to it.
    Route,
}

/// A port of the node that something other than its own container holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortTaken {
    pub role: PortRole,
    pub port: u16,
    /// `container NAME`, `process NAME (pid N) ...`, or `a process ...` when the server does
    /// not tell this user whose it is.
    pub holder: String,
}

/// Why another user of the server could change the deployment folder (`check_dir_safe` in
/// common.sh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsafe {
    /// Owned by someone other than the SSH user or root.
    Owner,
    /// Writable by group or others (without the sticky bit, for a folder above it).
    Writable,
}

/// The first path on the way to (or in) the deployment folder that another user could change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafePath {
    pub why: Unsafe,
    pub path: String,
    /// Octal, as `stat -c %a` prints it (`775`, `1777`).
    pub mode: String,
    pub uid: String,
    /// The owner's name (`UNKNOWN` for a uid with no account).
    pub owner: String,
    /// The SSH user natsup runs as.
    pub user: String,
}

impl UnsafePath {
    /// `WHY|MODE|UID|OWNER|USER|PATH`, the path last since it may hold a `|`.
    pub fn parse(value: &str) -> Option<UnsafePath> {
        let mut parts = value.splitn(6, '|');
        let why = match parts.next()? {
            "owner" => Unsafe::Owner,
            "writable" => Unsafe::Writable,
            _ => return None,
        };
        let mode = parts.next()?.to_string();
        let uid = parts.next()?.to_string();
        let owner = parts.next()?.to_string();
        let user = parts.next()?.to_string();
        let path = parts.next()?.to_string();
        Some(UnsafePath {
            why,
            path,
            mode,
            uid,
            owner,
            user,
        })
    }

    /// What is wrong, naming the path, its owner and mode.
    pub fn message(&self) -> String {
        let what = match self.why {
            Unsafe::Owner => "is owned by another user",
            Unsafe::Writable => "is writable by other users",
        };
        format!(
            "{} {what} (owner {} (uid {}), mode {}): whoever can change the deployment \
             folder, or a folder on the way to it, can swap docker-compose.yaml before \
             `compose up` runs it, which through Docker is root on the server",
            self.path, self.owner, self.uid, self.mode
        )
    }

    /// The command that fixes it, or another remote_dir.
    pub fn hint(&self) -> String {
        let path = crate::remote::script::sh_quote(&self.path);
        // root needs no sudo, and a folder this user owns is fixed without it.
        let sudo = if self.user == "root" { "" } else { "sudo " };
        let fix = match self.why {
            Unsafe::Owner => format!("`{sudo}chown {} {path}`", self.user),
            Unsafe::Writable if self.owner == self.user => format!("`chmod go-w {path}`"),
            Unsafe::Writable => format!("`{sudo}chmod go-w {path}`"),
        };
        let who = if self.user == "root" {
            "root".to_string()
        } else {
            format!("{} and root", self.user)
        };
        format!(
            "if no one else should write there, run {fix} on the server (check what else it \
             holds first); or choose a remote_dir that only {who} can write, like the default \
             nats-bits in the SSH user's home"
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub docker: Docker,
    pub compose: Option<String>,
    pub dir: Dir,
    pub dir_abs: Option<String>,
    /// Contents of the text files natsup reads back (compose file, config, applied copies).
    pub contents: BTreeMap<String, Vec<u8>>,
    /// sha256 of each `nats-config/*.pem`.
    pub pem_sha256: BTreeMap<String, String>,
    pub container: Option<Container>,
    /// Each of the node's ports something else holds.
    pub ports_taken: Vec<PortTaken>,
    /// The first path that makes the deployment folder changeable by another user.
    pub unsafe_dir: Option<UnsafePath>,
    pub staging_leftover: bool,
    pub projects: Projects,
}

impl Observed {
    pub fn parse(stdout: &str, target: &str) -> Result<Observed> {
        let mut kv: Vec<(&str, &str)> = Vec::new();
        for line in stdout.lines() {
            if let Some(rest) = line.strip_prefix("natsup.")
                && let Some((k, v)) = rest.split_once('=')
            {
                kv.push((k, v));
            }
        }
        let get = |key: &str| kv.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v);
        if let Some(call) = get("timeout") {
            return Err(Error::Remote {
                target: target.into(),
                step: "inspecting the server".into(),
                message: call.to_string(),
                hint: Some(DOCKER_STUCK_HINT.into()),
            });
        }
        if get("observed") != Some("ok") {
            return Err(Error::Remote {
                target: target.into(),
                step: "inspecting the server".into(),
                message: "the inspection script did not finish".into(),
                hint: Some(
                    "run again; if it persists, check that the remote shell is POSIX sh".into(),
                ),
            });
        }
        let docker = match get("docker") {
            Some("missing") | None => Docker::Missing,
            Some("denied") => Docker::Denied,
            Some(cmd) => Docker::Usable {
                command: cmd.to_string(),
                version: get("docker_version").unwrap_or("").to_string(),
            },
        };
        let dir = match get("dir") {
            Some("writable") => Dir::Writable,
            Some("readonly") => Dir::Readonly,
            Some("absent") => Dir::Absent,
            _ => Dir::Unwritable,
        };
        let mut contents = BTreeMap::new();
        let mut pem_sha256 = BTreeMap::new();
        let mut ports_taken = Vec::new();
        let mut projects = Projects {
            in_use: get("project").map(str::to_string),
            own: get("project_own").map(str::to_string),
            marker: get("marker").is_some(),
            ..Projects::default()
        };
        for (k, v) in &kv {
            if let Some(path) = k.strip_prefix("content:") {
                contents.insert(path.to_string(), base64_decode(v));
            } else if let Some(path) = k.strip_prefix("sha256:") {
                pem_sha256.insert(path.to_string(), v.to_string());
            } else if let Some(project) = k.strip_prefix("dir_project:") {
                projects.others.push(project.to_string());
            } else if let Some(rest) = k.strip_prefix("port_taken:")
                && let Some((role, port)) = rest.split_once(':')
                && let Ok(port) = port.parse()
            {
                let role = match role {
                    "route" => PortRole::Route,
                    _ => PortRole::Client,
                };
                ports_taken.push(PortTaken {
                    role,
                    port,
                    holder: v.to_string(),
                });
            } else if *k == "compose_file" {
                projects.other_files.push(v.to_string());
            }
        }
        let container = match (get("container_id"), get("container")) {
            (Some(id), Some(info)) => {
                let mut parts = info.split('|');
                Some(Container {
                    id: id.to_string(),
                    status: parts.next().unwrap_or("").to_string(),
                    started_at: parts.next().unwrap_or("").to_string(),
                    image: parts.next().unwrap_or("").to_string(),
                    restarts: parts.next().and_then(|r| r.parse().ok()).unwrap_or(0),
                })
            }
            _ => None,
        };
        Ok(Observed {
            docker,
            compose: get("compose")
                .filter(|c| *c != "missing")
                .map(str::to_string),
            dir,
            dir_abs: get("dir_abs").map(str::to_string),
            contents,
            pem_sha256,
            container,
            ports_taken,
            unsafe_dir: get("unsafe_dir").and_then(UnsafePath::parse),
            staging_leftover: get("staging").is_some(),
            projects,
        })
    }

    pub fn content(&self, path: &str) -> Option<&[u8]> {
        self.contents.get(path).map(|v| v.as_slice())
    }
}

/// What to do when a Docker call on the server ran out of its bound.
pub const DOCKER_STUCK_HINT: &str = "Docker on the server is not answering: check it there \
     (`docker info`, `systemctl status docker`), then run the same command again; nothing was \
     changed";

/// Decodes what `base64` printed; garbage decodes to nothing, which then simply differs.
pub fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64() {
        assert_eq!(base64_decode("aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(base64_decode(""), b"");
        assert_eq!(base64_decode("YQ=="), b"a");
    }

    #[test]
    fn parses_a_report() {
        let out = "noise\nnatsup.docker=docker\nnatsup.docker_version=20.10\nnatsup.compose=docker-compose\n\
                   natsup.dir=writable\nnatsup.content:docker-compose.yaml=YQ==\n\
                   natsup.sha256:nats-config/x.pem=abc\nnatsup.container_id=123\n\
                   natsup.container=running|2026-01-01T00:00:00Z|nats:2.10.21|0\nnatsup.observed=ok\n";
        let o = Observed::parse(out, "t").unwrap();
        assert_eq!(o.compose.as_deref(), Some("docker-compose"));
        assert_eq!(o.content("docker-compose.yaml"), Some(&b"a"[..]));
        assert!(o.container.as_ref().unwrap().running());
        assert_eq!(o.pem_sha256["nats-config/x.pem"], "abc");
        assert!(Observed::parse("natsup.docker=docker\n", "t").is_err());
        assert_eq!(o.projects, Projects::default());

        let out = "natsup.marker=yes\nnatsup.project=nats-bits\nnatsup.project_own=prod-0a1b2c3d\n\
                   natsup.dir_project:tutorial=yes\nnatsup.compose_file=compose.yaml\nnatsup.observed=ok\n";
        let p = Observed::parse(out, "t").unwrap().projects;
        assert!(p.marker);
        assert_eq!(p.adopted(), Some("nats-bits"));
        assert_eq!(
            (p.others, p.other_files),
            (
                vec!["tutorial".to_string()],
                vec!["compose.yaml".to_string()]
            )
        );
    }
}
