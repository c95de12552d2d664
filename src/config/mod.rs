//! `natsup.yaml`: the deployment file. It holds no secret and is safe to commit.
//!
//! [`Config::load`] parses and validates it once; a `Config` that exists is valid, and nothing
//! downstream checks it again. Every error names the file and the field path
//! (`natsup.yaml: users[2].name: ...`).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod node;
mod permissions;

pub use node::Node;

use permissions::check_subject;
pub use permissions::{Permissions, SubjectRule, subject_matches};

/// The tutorial's users (TUTORIAL.md, `nats-server.conf`).
pub const TUTORIAL_USERS: [&str; 4] = ["matchmaker", "matchmaker_httpd", "gameserver", "webhook"];
/// The tutorial's image. Its compose file pins `nats:2.10.21`.
pub const DEFAULT_IMAGE: &str = "nats:2.10.21";
pub const DEFAULT_REMOTE_DIR: &str = "nats-bits";
/// The tutorial's SAN list (`mkcert ... localhost ::1 nats`); `host` is always added to it.
pub const DEFAULT_EXTRA_SANS: [&str; 3] = ["localhost", "::1", "nats"];
/// 100 MiB, the tutorial's JetStream limits.
pub const DEFAULT_JETSTREAM_LIMIT: u64 = 100 * 1024 * 1024;
pub const DEFAULT_CERT_LIFETIME_DAYS: u32 = 365;
/// Apple's platforms refuse TLS server certificates valid for more than 825 days
/// (https://support.apple.com/en-us/103769); staying under it keeps every client happy.
pub const MAX_CERT_LIFETIME_DAYS: u32 = 825;
/// bcrypt cost of the password hashes: see [`Auth::bcrypt_cost`] for why 4.
pub const DEFAULT_BCRYPT_COST: u32 = 4;
/// What nats-server's bcrypt (Go's x/crypto/bcrypt) accepts at login: a hash of another cost
/// passes `nats-server -t` but refuses every login, so the range is checked here.
pub const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Names the deployment: its state directory, CA subject and nats contexts.
    pub name: String,
    /// The public DNS name or IP that clients dial. Always a SAN of the server certificate.
    /// Absent when the file lists `nodes`: each node has its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConfig>,
    /// Where the compose project lives on the server: relative to the SSH user's home, or absolute.
    #[serde(default = "default_remote_dir")]
    pub remote_dir: String,
    #[serde(default = "default_image")]
    pub image: String,
    /// Host port the server is published on.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Host address the port is published on.
    #[serde(default = "default_bind")]
    pub bind: IpAddr,
    /// SANs besides `host`.
    #[serde(default = "default_extra_sans")]
    pub extra_sans: Vec<String>,
    #[serde(default = "default_users")]
    pub users: Vec<User>,
    #[serde(default)]
    pub jetstream: JetStream,
    #[serde(default)]
    pub cert: CertSettings,
    #[serde(default)]
    pub auth: Auth,
    /// The servers of a cluster, 1..=9; exclusive with `host` and `ssh`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeConfig>,
    #[serde(default, skip_serializing_if = "ClusterSettings::is_default")]
    pub cluster: ClusterSettings,
    #[serde(default, skip_serializing_if = "Network::is_default")]
    pub network: Network,
    /// The servers of the deployment, resolved once from the fields above when the config is
    /// made (a file without `nodes` is a deployment of one): never read from or written to
    /// natsup.yaml.
    #[serde(skip)]
    resolved: Vec<Node>,
    /// Who issues the server certificate: natsup's own CA (the default) or an ACME CA.
    #[serde(default, skip_serializing_if = "Tls::is_default")]
    pub tls: Tls,
    /// How to get a certificate from an ACME CA; only read with `tls.issuer: acme`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<Acme>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    #[serde(default)]
    pub issuer: Issuer,
}

impl Tls {
    fn is_default(&self) -> bool {
        *self == Tls::default()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Issuer {
    /// natsup's own CA: clients need its certificate (`NATS_CA`).
    #[default]
    Ca,
    /// A publicly trusted certificate over ACME (Let's Encrypt): clients use their system roots.
    Acme,
}

/// Let's Encrypt's directories (https://letsencrypt.org/docs/acme-protocol-updates/).
pub const LETSENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETSENCRYPT_STAGING_DIRECTORY: &str =
    "https://acme-staging-v02.api.letsencrypt.org/directory";
/// A small image that serves a folder over HTTP (`busybox httpd`) for standalone http-01.
pub const DEFAULT_ACME_IMAGE: &str = "busybox:1.36";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    /// `letsencrypt`, `letsencrypt-staging`, or the https URL of an ACME directory.
    #[serde(default = "default_acme_directory")]
    pub directory: String,
    /// The account's contact, optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Only `http-01` for now.
    #[serde(default = "default_challenge")]
    pub challenge: String,
    #[serde(default)]
    pub http01: Http01,
    /// The CA of the ACME server's own HTTPS certificate, for a test server (pebble) that is
    /// not publicly trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_ca: Option<PathBuf>,
}

impl Default for Acme {
    fn default() -> Self {
        Acme {
            directory: default_acme_directory(),
            email: None,
            challenge: default_challenge(),
            http01: Http01::default(),
            directory_ca: None,
        }
    }
}

/// One server of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// nats-server's `server_name`; [A-Za-z0-9_-], unique in the cluster.
    pub name: String,
    /// What clients and the other nodes dial; a SAN of this node's certificate.
    pub host: String,
    /// The same forms as `ssh.destination`.
    pub ssh: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_policy: Option<HostKeyPolicy>,
    /// Defaults to the top-level `remote_dir`, `bind` and `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// The route port, published (or listened on, with `network: host`) like the client port.
    #[serde(default = "default_cluster_port")]
    pub port: u16,
    /// While `port` changes on a running cluster: the route ports nodes still listen on, found
    /// on the servers (never in natsup.yaml). Each node then dials its peers at those too,
    /// so a node that moved still routes to those that have not ([`Config::moving_routes`]).
    #[serde(skip)]
    pub previous_ports: Vec<u16>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            port: DEFAULT_CLUSTER_PORT,
            previous_ports: Vec::new(),
        }
    }
}

impl ClusterSettings {
    fn is_default(&self) -> bool {
        self.port == DEFAULT_CLUSTER_PORT
    }

    /// Every route port a node dials its peers at: `port`, then those still in use.
    pub fn route_ports(&self) -> Vec<u16> {
        let mut ports = vec![self.port];
        ports.extend(self.previous_ports.iter().filter(|p| **p != self.port));
        ports
    }
}

/// How the container reaches the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// Docker's bridge: the client (and route) ports are published on `bind`.
    #[default]
    Bridge,
    /// `network_mode: host`: nats-server listens on `bind` itself.
    Host,
}

impl Network {
    fn is_default(&self) -> bool {
        *self == Network::Bridge
    }
}

/// How many servers a cluster may have: JetStream's RAFT groups stay small.
pub const MAX_NODES: usize = 9;
pub const DEFAULT_CLUSTER_PORT: u16 = 6222;

fn default_cluster_port() -> u16 {
    DEFAULT_CLUSTER_PORT
}

impl Acme {
    /// The directory URL `directory` names.
    pub fn directory_url(&self) -> &str {
        match self.directory.as_str() {
            "letsencrypt" => LETSENCRYPT_DIRECTORY,
            "letsencrypt-staging" => LETSENCRYPT_STAGING_DIRECTORY,
            url => url,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http01 {
    #[serde(default)]
    pub mode: Http01Mode,
    /// Where the CA's validation connects: 80 for a real CA.
    #[serde(default = "default_http01_port")]
    pub port: u16,
    /// Webroot mode: a folder on the server that an existing web server serves on `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webroot: Option<String>,
    /// Standalone mode: the image whose `busybox httpd` serves the token.
    #[serde(default = "default_acme_image")]
    pub image: String,
}

impl Default for Http01 {
    fn default() -> Self {
        Http01 {
            mode: Http01Mode::Standalone,
            port: default_http01_port(),
            webroot: None,
            image: default_acme_image(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Http01Mode {
    /// natsup runs a small web server on the server for the order's duration.
    #[default]
    Standalone,
    /// natsup writes the token into the folder an existing web server serves.
    Webroot,
}

fn default_acme_directory() -> String {
    "letsencrypt".into()
}
fn default_challenge() -> String {
    "http-01".into()
}
fn default_http01_port() -> u16 {
    80
}
fn default_acme_image() -> String {
    DEFAULT_ACME_IMAGE.into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// `user@host`, an `~/.ssh/config` alias, or `ssh://user@host:port`.
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
    #[serde(default)]
    pub host_key_policy: HostKeyPolicy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Only hosts already in known_hosts; a first contact needs `--accept-new-host-key`.
    #[default]
    Strict,
    /// Add unknown hosts on first contact; a changed key is still refused.
    AcceptNew,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JetStream {
    /// Bytes. nats-server's `max_memory_store`.
    #[serde(default = "default_jetstream_limit")]
    pub max_memory_store: u64,
    /// Bytes. nats-server's `max_file_store`.
    #[serde(default = "default_jetstream_limit")]
    pub max_file_store: u64,
}

impl Default for JetStream {
    fn default() -> Self {
        JetStream {
            max_memory_store: DEFAULT_JETSTREAM_LIMIT,
            max_file_store: DEFAULT_JETSTREAM_LIMIT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertSettings {
    /// Server certificate lifetime, 1..=825 days.
    #[serde(default = "default_lifetime")]
    pub lifetime_days: u32,
}

impl Default for CertSettings {
    fn default() -> Self {
        CertSettings {
            lifetime_days: DEFAULT_CERT_LIFETIME_DAYS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// bcrypt cost of the password hashes in nats-server.conf, 4..=31.
    ///
    /// On every reload nats-server re-checks the password of each connected client, one
    /// bcrypt after another, while new connections wait (nats-server 2.10 to 2.15,
    /// `reloadAuthorization`); and after a restart every client logs in again at once. Both
    /// cost N × 2^cost: at cost 4 about 0.8 ms per client on one core, at 11 about 0.1 s.
    /// bcrypt's cost slows guessing of human-chosen passwords; natsup's are 32 random
    /// characters of 62 (~190 bits), beyond guessing at any cost. So the lowest cost
    /// nats-server accepts is the default: it buys the same safety without the outages.
    #[serde(default = "default_bcrypt_cost")]
    pub bcrypt_cost: u32,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            bcrypt_cost: DEFAULT_BCRYPT_COST,
        }
    }
}

fn default_bcrypt_cost() -> u32 {
    DEFAULT_BCRYPT_COST
}

fn default_remote_dir() -> String {
    DEFAULT_REMOTE_DIR.into()
}
fn default_image() -> String {
    DEFAULT_IMAGE.into()
}
fn default_port() -> u16 {
    4222
}
fn default_bind() -> IpAddr {
    IpAddr::from([0, 0, 0, 0])
}
fn default_extra_sans() -> Vec<String> {
    DEFAULT_EXTRA_SANS.iter().map(|s| s.to_string()).collect()
}
fn default_users() -> Vec<User> {
    TUTORIAL_USERS.iter().map(|n| User::named(n)).collect()
}
fn default_jetstream_limit() -> u64 {
    DEFAULT_JETSTREAM_LIMIT
}
fn default_lifetime() -> u32 {
    DEFAULT_CERT_LIFETIME_DAYS
}

impl User {
    pub fn named(name: &str) -> Self {
        User {
            name: name.into(),
            permissions: None,
        }
    }
}

/// The values `natsup init` (and the built-in local deployment) start from.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub name: String,
    pub host: String,
    pub ssh: Option<SshConfig>,
    pub image: Option<String>,
    pub port: Option<u16>,
    pub bind: Option<IpAddr>,
    pub remote_dir: Option<String>,
    pub users: Vec<String>,
    /// `--node NAME=HOST[@SSH]`: a cluster instead of `host` and `ssh`.
    pub nodes: Vec<NodeConfig>,
    pub network: Option<Network>,
}

impl Config {
    /// A config with the tutorial's defaults for everything not given.
    pub fn from_init(opts: InitOptions) -> Config {
        let mut config = Config {
            name: opts.name,
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
            tls: Tls::default(),
            acme: None,
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
        Config::parse(&text, file)
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

    fn validate(&self) -> Result<(), Invalid> {
        check_name(&self.name).at("name")?;
        if self.nodes.is_empty() {
            let Some(host) = &self.host else {
                return Err(Invalid::new("", "missing field `host`"));
            };
            check_host(host).at("host")?;
        } else {
            self.validate_nodes()?;
        }
        if let Some(ssh) = &self.ssh {
            check_ssh_destination(&ssh.destination).at("ssh.destination")?;
            if ssh.port == Some(0) {
                return Err(Invalid::new("ssh.port", "0 is not a valid port (1-65535)"));
            }
        }
        check_remote_dir(&self.remote_dir).at("remote_dir")?;
        check_image(&self.image).at("image")?;
        if self.port == 0 {
            return Err(Invalid::new("port", "0 is not a valid port (1-65535)"));
        }
        for (i, san) in self.extra_sans.iter().enumerate() {
            check_host(san).at(&format!("extra_sans[{i}]"))?;
        }
        if self.users.is_empty() {
            return Err(Invalid::new(
                "users",
                "at least one user is needed (leave `users` out for the tutorial's four)",
            ));
        }
        for (i, user) in self.users.iter().enumerate() {
            let at = format!("users[{i}]");
            check_user_name(&user.name).at(&format!("{at}.name"))?;
            if let Some(j) = self.users[..i].iter().position(|u| u.name == user.name) {
                return Err(Invalid::new(
                    format!("{at}.name"),
                    format!(
                        "{:?} is already users[{j}]; user names must be unique",
                        user.name
                    ),
                ));
            }
            if let Some(p) = &user.permissions {
                for (kind, rule) in [("publish", &p.publish), ("subscribe", &p.subscribe)] {
                    let Some(rule) = rule else { continue };
                    for (list, subjects) in [("allow", &rule.allow), ("deny", &rule.deny)] {
                        for (k, subject) in subjects.iter().enumerate() {
                            check_subject(subject)
                                .at(&format!("{at}.permissions.{kind}.{list}[{k}]"))?;
                        }
                    }
                }
            }
        }
        if self.jetstream.max_memory_store == 0 {
            return Err(Invalid::new(
                "jetstream.max_memory_store",
                "must be more than 0 bytes",
            ));
        }
        if self.jetstream.max_file_store == 0 {
            return Err(Invalid::new(
                "jetstream.max_file_store",
                "must be more than 0 bytes",
            ));
        }
        let cost = self.auth.bcrypt_cost;
        if !BCRYPT_COSTS.contains(&cost) {
            return Err(Invalid::new(
                "auth.bcrypt_cost",
                format!(
                    "{cost} is out of range: nats-server's bcrypt accepts costs {} to {} \
                     (natsup's default, {DEFAULT_BCRYPT_COST}, suits its random passwords)",
                    BCRYPT_COSTS.start(),
                    BCRYPT_COSTS.end()
                ),
            ));
        }
        if self.cluster.port == 0 {
            return Err(Invalid::new(
                "cluster.port",
                "0 is not a valid port (1-65535)",
            ));
        }
        let days = self.cert.lifetime_days;
        if !(1..=MAX_CERT_LIFETIME_DAYS).contains(&days) {
            return Err(Invalid::new(
                "cert.lifetime_days",
                format!(
                    "{days} is out of range: a certificate lives 1 to {MAX_CERT_LIFETIME_DAYS} days \
                     (825 is the most Apple's TLS clients accept)"
                ),
            ));
        }
        if self.tls.issuer == Issuer::Acme {
            let acme = self.acme.clone().unwrap_or_default();
            acme.validate()?;
            // Each node's certificate is ordered for its own names: every node needs one a
            // public CA issues for.
            for (i, node) in self.resolve_nodes().iter().enumerate() {
                if self.public_names(node).0.is_empty() {
                    let at = if self.nodes.is_empty() {
                        "tls.issuer".to_string()
                    } else {
                        format!("nodes[{i}].host")
                    };
                    return Err(Invalid::new(
                        at,
                        format!(
                            "an ACME CA only issues for public DNS names, and none of {} is one \
                             (IP addresses, localhost and single labels are left out)",
                            self.sans(node).join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Config {
    fn validate_nodes(&self) -> Result<(), Invalid> {
        if self.host.is_some() {
            return Err(Invalid::new(
                "host",
                "a cluster has no top-level host: each of `nodes` has its own (remove one of them)",
            ));
        }
        if self.ssh.is_some() {
            return Err(Invalid::new(
                "ssh",
                "a cluster has no top-level ssh: each of `nodes` has its own (remove one of them)",
            ));
        }
        if self.nodes.len() > MAX_NODES {
            return Err(Invalid::new(
                "nodes",
                format!(
                    "{} nodes is too many: a cluster has 1 to {MAX_NODES}",
                    self.nodes.len()
                ),
            ));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let at = format!("nodes[{i}]");
            check_node_name(&node.name).at(&format!("{at}.name"))?;
            if let Some(j) = self.nodes[..i].iter().position(|n| n.name == node.name) {
                return Err(Invalid::new(
                    format!("{at}.name"),
                    format!(
                        "{:?} is already nodes[{j}]; node names must be unique",
                        node.name
                    ),
                ));
            }
            check_host(&node.host).at(&format!("{at}.host"))?;
            check_ssh_destination(&node.ssh).at(&format!("{at}.ssh"))?;
            for (field, port) in [("ssh_port", node.ssh_port), ("port", node.port)] {
                if port == Some(0) {
                    return Err(Invalid::new(
                        format!("{at}.{field}"),
                        "0 is not a valid port (1-65535)",
                    ));
                }
            }
            if let Some(dir) = &node.remote_dir {
                check_remote_dir(dir).at(&format!("{at}.remote_dir"))?;
            }
        }
        let resolved = self.resolve_nodes();
        for (i, node) in resolved.iter().enumerate() {
            for (j, other) in resolved.iter().enumerate().take(i) {
                if other.ssh == node.ssh && other.remote_dir == node.remote_dir {
                    return Err(Invalid::new(
                        format!("nodes[{i}].remote_dir"),
                        format!(
                            "nodes[{j}] already uses {:?} on the same server; give each node on one server its own remote_dir",
                            node.remote_dir
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Acme {
    fn validate(&self) -> Result<(), Invalid> {
        match self.directory.as_str() {
            "letsencrypt" | "letsencrypt-staging" => {}
            url if url.starts_with("https://") && url.len() > "https://".len() => {}
            other => {
                return Err(Invalid::new(
                    "acme.directory",
                    format!(
                        "{other:?} is not an ACME directory (letsencrypt, letsencrypt-staging, \
                         or an https:// URL)"
                    ),
                ));
            }
        }
        if let Some(email) = &self.email {
            let ok = email.split_once('@').is_some_and(|(u, d)| {
                !u.is_empty() && d.contains('.') && !email.chars().any(char::is_whitespace)
            });
            if !ok {
                return Err(Invalid::new(
                    "acme.email",
                    format!("{email:?} is not an email address"),
                ));
            }
        }
        if self.challenge != "http-01" {
            return Err(Invalid::new(
                "acme.challenge",
                format!("{:?} is not supported (only http-01)", self.challenge),
            ));
        }
        if self.http01.port == 0 {
            return Err(Invalid::new(
                "acme.http01.port",
                "0 is not a valid port (1-65535)",
            ));
        }
        match (self.http01.mode, &self.http01.webroot) {
            (Http01Mode::Webroot, None) => {
                return Err(Invalid::new(
                    "acme.http01.webroot",
                    "webroot mode needs the folder your web server serves (like /var/www/html)",
                ));
            }
            (_, Some(dir)) if !dir.starts_with('/') || dir.split('/').any(|p| p == "..") => {
                return Err(Invalid::new(
                    "acme.http01.webroot",
                    format!("{dir:?} is not an absolute folder on the server (no `..`)"),
                ));
            }
            _ => {}
        }
        check_image(&self.http01.image).at("acme.http01.image")?;
        if let Some(ca) = &self.directory_ca
            && !ca.is_file()
        {
            return Err(Invalid::new(
                "acme.directory_ca",
                format!("{} is not a file", ca.display()),
            ));
        }
        Ok(())
    }
}

/// A name a public CA can issue for: a DNS name with at least two labels, not `localhost`
/// (CA/Browser Forum Baseline Requirements 4.2.2: no internal names, and Let's Encrypt issues
/// for no IP address on http-01 orders of this kind).
pub fn is_public_dns_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<IpAddr>().is_err()
        && name.contains('.')
        && name != "localhost"
        && !name.ends_with(".localhost")
}

/// `host:port` as URLs and socket addresses write it: an IPv6 literal in brackets, in its short
/// form (`[::1]:4222`), a name or an IPv4 address as it is (`nats.example.com:4222`,
/// `1.2.3.4:4222`). Anything else with a colon (an IPv6 address with a zone, from a URL) is
/// bracketed as written.
pub fn host_port(host: &str, port: u16) -> String {
    match host.parse::<Ipv6Addr>() {
        Ok(ip) => format!("[{ip}]:{port}"),
        Err(_) if host.contains(':') => format!("[{host}]:{port}"),
        Err(_) => format!("{host}:{port}"),
    }
}

impl SshConfig {
    /// Splits `ssh://user@host:port` into destination and port; other forms pass through.
    pub fn new(destination: &str) -> SshConfig {
        let (destination, port) = match destination.strip_prefix("ssh://") {
            Some(rest) => match rest.rsplit_once(':') {
                Some((d, p)) if !d.ends_with(']') || d.contains('[') => match p.parse::<u16>() {
                    Ok(port) => (d.to_string(), Some(port)),
                    Err(_) => (rest.to_string(), None),
                },
                _ => (rest.to_string(), None),
            },
            None => (destination.to_string(), None),
        };
        SshConfig {
            destination,
            port,
            identity: None,
            known_hosts: None,
            host_key_policy: HostKeyPolicy::Strict,
        }
    }
}

/// A validation failure before the file name is attached.
#[derive(Debug)]
struct Invalid {
    path: String,
    message: String,
}

impl Invalid {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

trait At<T> {
    fn at(self, path: &str) -> Result<T, Invalid>;
}

impl<T> At<T> for Result<T, String> {
    fn at(self, path: &str) -> Result<T, Invalid> {
        self.map_err(|message| Invalid::new(path, message))
    }
}

/// serde_norway appends " at line L column C" to messages; the field path says more.
/// serde_yaml starts its messages with its own idea of the path (the field, or its parent):
/// the error already names the field, so say it once.
fn strip_path(path: &str, message: &str) -> String {
    let mut prefix = path;
    loop {
        if !prefix.is_empty()
            && let Some(rest) = message.strip_prefix(&format!("{prefix}: "))
        {
            return rest.to_string();
        }
        match prefix.rfind(['.', '[']) {
            Some(i) => prefix = &prefix[..i],
            None => return message.to_string(),
        }
    }
}

/// Rust type names mean nothing to someone editing YAML.
fn plain_words(message: &str) -> String {
    if message.contains("expected u16") {
        let found = message
            .split(['`', '"'])
            .nth(1)
            .unwrap_or("this value")
            .to_string();
        return format!("{found} is not a valid port (1-65535)");
    }
    message
        .replace(
            "struct SubjectRule",
            "a map with `allow` and/or `deny` lists of subjects",
        )
        .replace(
            "struct Permissions",
            "a map with `publish` and/or `subscribe`",
        )
        .replace("expected u64", "expected a whole number")
        .replace(
            "invalid IP address syntax",
            "not an IP address (0.0.0.0 for every interface, 127.0.0.1 for this machine only)",
        )
        .replace("expected u32", "expected a whole number")
}

fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// 1 to `max` of [A-Za-z0-9_-]: what deployment, node and user names are made of, since they
/// end up in paths, URLs, env files and nats context names unquoted.
fn is_token(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = is_token(name, 64) && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid deployment name (1-64 letters, digits, _ and -, not starting with -)"
        ))
    }
}

impl NodeConfig {
    /// `NAME=HOST[@SSH]`, as `init --node` takes it; SSH defaults to HOST. The parts are
    /// checked when the written file is read back.
    pub fn parse_arg(arg: &str) -> Result<NodeConfig, String> {
        let (name, rest) = arg
            .split_once('=')
            .ok_or_else(|| format!("--node {arg:?}: expected NAME=HOST[@SSH]"))?;
        let (host, ssh) = match rest.split_once('@') {
            Some((host, ssh)) => (host, ssh),
            None => (rest, rest),
        };
        Ok(NodeConfig {
            name: name.into(),
            host: host.into(),
            ssh: ssh.into(),
            identity: None,
            known_hosts: None,
            ssh_port: None,
            host_key_policy: None,
            remote_dir: None,
            bind: None,
            port: None,
        })
    }
}

fn check_node_name(name: &str) -> Result<(), String> {
    let ok = is_token(name, 64);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid node name (1-64 letters, digits, _ and -)"
        ))
    }
}

/// nats-server accepts almost anything as a user name, but clients put it in URLs, env files
/// and nats context names; this set survives all of them unquoted.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let ok = is_token(name, 128);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid NATS user name (letters, digits, _ and - only)"
        ))
    }
}

/// A DNS name (RFC 1123 labels) or an IP address.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // The name goes into the certificate's SANs, where RFC 5280 (4.2.1.6) allows no trailing
    // dot, and into NATS_HOST, which clients compare with those SANs: one spelling everywhere,
    // so the fully qualified form is refused rather than quietly changed.
    if let Some(name) = host.strip_suffix('.')
        && !name.is_empty()
        && check_host(name).is_ok()
    {
        return Err(format!(
            "{host:?} ends with a dot; write {name:?} (a certificate cannot name a host with its trailing dot)"
        ));
    }
    if !host.is_empty() && host.len() <= 253 && host.split('.').all(valid_label) {
        Ok(())
    } else {
        Err(format!("{host:?} is not a valid hostname or IP address"))
    }
}

fn check_ssh_destination(dest: &str) -> Result<(), String> {
    // A leading '-' would be read by ssh as an option. The openssh crate takes
    // `ssh://user@host:port` apart and passes the host alone as ssh's last argument, so the
    // host (and the user) after `ssh://` must not start with '-' either: `ssh://-oProxyCommand=..`
    // would run a command on this machine.
    let rest = dest.strip_prefix("ssh://").unwrap_or(dest);
    let (user, host) = rest.rsplit_once('@').unwrap_or(("", rest));
    if dest.is_empty()
        || host.is_empty()
        || [dest, rest, user, host].iter().any(|p| p.starts_with('-'))
        || dest.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        Err(format!(
            "{dest:?} is not an SSH destination (user@host, an ~/.ssh/config alias, or ssh://user@host:port)"
        ))
    } else {
        Ok(())
    }
}

fn check_remote_dir(dir: &str) -> Result<(), String> {
    // The scripts pass the path quoted: `~` is not expanded (it would be a folder named `~`),
    // `cd -` goes back to the previous folder, and Docker reads `:` in the validation run's
    // `-v "$PWD/...:/config:ro"` as the separator between host and container path.
    if dir.starts_with('~') {
        let instead = match dir.strip_prefix("~/").map(|r| r.trim_start_matches('/')) {
            Some(rest) if !rest.is_empty() => format!("write {rest:?}"),
            _ => "write the path relative to the SSH user's home, or absolute".to_string(),
        };
        return Err(format!(
            "{dir:?}: `~` is not expanded here; {instead} (a relative path is already relative to the SSH user's home)"
        ));
    }
    if dir.starts_with('-') {
        return Err(format!(
            "{dir:?} starts with `-`, which cd and mkdir read as an option; name the folder with a letter or digit first, like nats-bits"
        ));
    }
    if dir.contains(':') {
        return Err(format!(
            "{dir:?} contains `:`, which Docker reads as the end of a bind mount's path; choose a folder without one"
        ));
    }
    let bad = dir.is_empty()
        || dir.chars().any(|c| c.is_control())
        || dir.trim_end_matches('/').is_empty()
        || dir.split('/').any(|part| part == "..")
        || dir.trim_end_matches('/') == ".";
    if bad {
        Err(format!(
            "{dir:?} is not a usable directory (a path relative to the SSH user's home, or absolute; no `..`)"
        ))
    } else {
        Ok(())
    }
}

pub fn check_image(image: &str) -> Result<(), String> {
    if image.is_empty()
        || image.starts_with('-')
        || image.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        Err(format!(
            "{image:?} is not a Docker image reference (like nats:2.10.21)"
        ))
    } else {
        Ok(())
    }
}

impl fmt::Display for HostKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostKeyPolicy::Strict => "strict",
            HostKeyPolicy::AcceptNew => "accept-new",
        })
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
