//! `natsup.yaml`: the deployment file. It holds no secret and is safe to commit.
//!
//! [`Config::load`] parses and validates it once; a `Config` that exists is valid, and nothing
//! downstream checks it again. Every error names the file and the field path
//! (`natsup.yaml: users[2].name: ...`).

use std::net::IpAddr;
use std::path::Path;

use crate::error::{Error, Result};

mod names;
mod node;
mod permissions;
mod schema;
mod validate;

pub use names::{check_host, check_image, check_user_name, host_port, is_public_dns_name};
pub use node::Node;
pub use permissions::{Permissions, SubjectRule, subject_matches};
pub use schema::*;
use validate::{plain_words, strip_location, strip_path};

impl Config {
    /// A config with the tutorial's defaults for everything not given.
    pub fn from_init(opts: InitOptions) -> Config {
        let mut config = Config {
            name: opts.name,
            id: None,
            host: (!opts.host.is_empty()).then_some(opts.host),
            ssh: opts.ssh,
            remote_dir: opts.remote_dir.unwrap_or_else(default_remote_dir),
            image: opts.image.unwrap_or_else(default_image),
            port: opts.port.unwrap_or_else(default_port),
            bind: opts.bind.unwrap_or_else(default_bind),
            extra_sans: default_extra_sans(),
            users: if opts.users.is_empty() {
                default_users()
            } else {
                opts.users.iter().map(|n| User::named(n)).collect()
            },
            jetstream: JetStream::default(),
            cert: CertSettings::default(),
            auth: Auth::default(),
            nodes: opts.nodes,
            cluster: ClusterSettings::default(),
            network: opts.network.unwrap_or_default(),
            resolved: Vec::new(),
            source: None,
            tls: Tls::default(),
            acme: None,
            lame_duck: LameDuck::default(),
        };
        config.resolved = config.resolve_nodes();
        config
    }

    /// The deployment `natsup up --local` uses when there is no natsup.yaml: this machine's
    /// Docker, reachable on localhost only, with the tutorial's four users.
    pub fn local_default() -> Config {
        Config::from_init(InitOptions {
            name: "local".into(),
            host: "localhost".into(),
            ssh: None,
            image: None,
            port: None,
            bind: Some(IpAddr::from([127, 0, 0, 1])),
            remote_dir: Some("natsup-local".into()),
            users: Vec::new(),
            nodes: Vec::new(),
            network: None,
        })
    }

    pub fn load(file: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::usage(
                format!("no deployment file at {}", file.display()),
                Some(
                    "create one with `natsup init --name NAME --host HOST`, or point at it with -c FILE"
                        .to_string(),
                ),
            ),
            _ => Error::io("read", file, e),
        })?;
        let mut config = Config::parse(&text, file)?;
        config.source = Some(std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()));
        Ok(config)
    }

    /// The file this config was loaded from, if it was.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Parses and validates; `file` only names the source in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config> {
        let de = serde_yaml::Deserializer::from_str(text);
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            // serde_path_to_error says "." for the root.
            let path = if path == "." { String::new() } else { path };
            let message = plain_words(&strip_path(
                &path,
                &strip_location(&e.into_inner().to_string()),
            ));
            Error::Config {
                file: file.to_path_buf(),
                path,
                message,
            }
        })?;
        config.validate().map_err(|v| Error::Config {
            file: file.to_path_buf(),
            path: v.path,
            message: v.message,
        })?;
        config.resolved = config.resolve_nodes();
        Ok(config)
    }

    /// The servers of the deployment, in the order of `nodes`; one for a file without them.
    pub fn nodes(&self) -> &[Node] {
        &self.resolved
    }

    /// Whether the deployment is a cluster: more than one node, so its servers route to each
    /// other. A `nodes` list of one is a server on its own, as a file without `nodes` is.
    pub fn is_cluster(&self) -> bool {
        self.resolved.len() > 1
    }

    /// This config while its nodes move from the route ports `previous` to `cluster.port`:
    /// every node also dials its peers at the ports they may still listen on.
    pub fn moving_routes(&self, previous: Vec<u16>) -> Config {
        let mut config = self.clone();
        config.cluster.previous_ports = previous;
        config
    }

    /// Runs `image` on every node, for this run only (`--image`).
    pub fn set_image(&mut self, image: &str) {
        self.image = image.to_string();
        for node in &mut self.resolved {
            node.image = image.to_string();
        }
    }

    /// Each node with the top-level settings it does not set itself.
    fn resolve_nodes(&self) -> Vec<Node> {
        if self.nodes.is_empty() {
            return vec![Node {
                name: self.name.clone(),
                host: self.host.clone().unwrap_or_default(),
                ssh: self.ssh.clone(),
                remote_dir: self.remote_dir.clone(),
                bind: self.bind,
                port: self.port,
                image: self.image.clone(),
                state_subdir: "server".into(),
            }];
        }
        self.nodes
            .iter()
            .map(|node| {
                let base = SshConfig::new(&node.ssh);
                Node {
                    name: node.name.clone(),
                    host: node.host.clone(),
                    ssh: Some(SshConfig {
                        port: node.ssh_port.or(base.port),
                        identity: node.identity.clone(),
                        known_hosts: node.known_hosts.clone(),
                        host_key_policy: node.host_key_policy.unwrap_or_default(),
                        ..base
                    }),
                    remote_dir: node.remote_dir.clone().unwrap_or(self.remote_dir.clone()),
                    bind: node.bind.unwrap_or(self.bind),
                    port: node.port.unwrap_or(self.port),
                    image: self.image.clone(),
                    state_subdir: format!("nodes/{}", node.name),
                }
            })
            .collect()
    }

    /// The client URL of every server (`tls://n1:4222`, ...): what the nats CLI's `--server`
    /// and a context's `url` take joined by commas, and async-nats as a list of addresses.
    pub fn client_urls(&self) -> Vec<String> {
        self.resolved.iter().map(Node::tls_url).collect()
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a Config always serializes")
    }

    /// All SANs of `node`'s certificate: its `host` first, then the extra ones, without
    /// repeats.
    pub fn sans(&self, node: &Node) -> Vec<String> {
        let mut sans = vec![node.host.clone()];
        for san in &self.extra_sans {
            if !sans.iter().any(|s| s.eq_ignore_ascii_case(san)) {
                sans.push(san.clone());
            }
        }
        sans
    }

    /// The ACME settings when the issuer is ACME (the defaults if `acme` is left out).
    pub fn acme(&self) -> Option<Acme> {
        (self.tls.issuer == Issuer::Acme).then(|| self.acme.clone().unwrap_or_default())
    }

    /// The names an ACME order for `node` asks for: its `host` and the extra SANs a public CA
    /// can issue for (no IP address, no `localhost`, no single label); the others are
    /// returned second.
    pub fn public_names(&self, node: &Node) -> (Vec<String>, Vec<String>) {
        self.sans(node)
            .into_iter()
            .partition(|n| is_public_dns_name(n))
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The named users (all of them when `names` is empty). A name that is not a user of this
    /// deployment is a usage error that lists the users there are.
    pub fn select_users(&self, names: &[String]) -> Result<Vec<String>> {
        if names.is_empty() {
            return Ok(self.users.iter().map(|u| u.name.clone()).collect());
        }
        for name in names {
            if self.user(name).is_none() {
                return Err(Error::usage(
                    format!("`{name}` is not a user of deployment `{}`", self.name),
                    Some(format!(
                        "its users are: {}",
                        self.users
                            .iter()
                            .map(|u| u.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                ));
            }
        }
        Ok(names.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_names_are_what_a_public_ca_issues_for() {
        for name in ["nats.example.com", "NATS.Example.com.", "a.b.c.example"] {
            assert!(is_public_dns_name(name), "{name}");
        }
        for name in [
            "localhost",
            "nats",
            "::1",
            "127.0.0.1",
            "203.0.113.7",
            "x.localhost",
        ] {
            assert!(!is_public_dns_name(name), "{name}");
        }
    }

    #[test]
    fn host_ports() {
        assert_eq!(host_port("::1", 4222), "[::1]:4222");
        assert_eq!(host_port("0:0::1", 4222), "[::1]:4222");
        assert_eq!(host_port("fe80::1%eth0", 4333), "[fe80::1%eth0]:4333");
        assert_eq!(host_port("1.2.3.4", 4222), "1.2.3.4:4222");
        assert_eq!(host_port("nats.example.com", 4222), "nats.example.com:4222");
    }
}
