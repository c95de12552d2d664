//! natsup.yaml's schema: every key, its default, and what it means. Unknown keys are errors.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Node, Permissions};

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
    /// Tells this deployment apart from another of the same `name` (a copy of natsup.yaml for
    /// staging): its state directory records the id, and a config with another id is refused
    /// it. `natsup init` writes a random one; 1-64 letters, digits, _ and -.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
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
    pub(super) resolved: Vec<Node>,
    /// The file this config was loaded from (absolute), named when its state belongs to
    /// another deployment; `None` for one made in memory (the built-in `local` deployment).
    #[serde(skip)]
    pub(super) source: Option<PathBuf>,
    /// Who issues the server certificate: natsup's own CA (the default) or an ACME CA.
    #[serde(default, skip_serializing_if = "Tls::is_default")]
    pub tls: Tls,
    /// How to get a certificate from an ACME CA; only read with `tls.issuer: acme`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<Acme>,
    /// How a server leaves when it is stopped: every stop natsup makes, and `docker stop`.
    #[serde(default, skip_serializing_if = "LameDuck::is_default")]
    pub lame_duck: LameDuck,
}

/// nats-server's lame duck mode (SIGUSR2): it stops accepting clients, hands its JetStream
/// leaders to other nodes, tells its clients (`INFO {"ldm":true}`), waits `grace_secs`, then
/// closes the clients it still has spread over the rest of `duration_secs` (at most one per
/// second, so a server with few clients is gone well before) and exits.
///
/// The defaults suit game workloads. 10 s of grace: the leader hand-over takes about a second,
/// and a client that listens for the notice (async-nats `Event::LameDuckMode`) gets time to
/// reconnect elsewhere at a quiet moment of its own choosing, between ticks or matches. 30 s
/// in all, nats-server's minimum: the 20 s that follow the grace spread the reconnects of the
/// clients that did not move (200 game servers at once are a burst of logins on the other
/// nodes; spread, 10 a second), while a rolling upgrade of three nodes takes about a minute and
/// a half, not the six that nats-server's default of 2 minutes would.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LameDuck {
    /// Seconds between the notice and the first client closed; nats-server's
    /// `lame_duck_grace_period`. 1 or more, and less than `duration_secs`.
    #[serde(default = "default_lame_duck_grace")]
    pub grace_secs: u32,
    /// Seconds from the notice until the last client is closed; nats-server's
    /// `lame_duck_duration`. 30 or more (nats-server refuses less).
    #[serde(default = "default_lame_duck_duration")]
    pub duration_secs: u32,
}

pub const DEFAULT_LAME_DUCK_GRACE_SECS: u32 = 10;
pub const DEFAULT_LAME_DUCK_DURATION_SECS: u32 = 30;
/// nats-server refuses a shorter `lame_duck_duration` ("minimum is 30 seconds", its opts.go).
pub const MIN_LAME_DUCK_DURATION_SECS: u32 = 30;

impl Default for LameDuck {
    fn default() -> Self {
        LameDuck {
            grace_secs: DEFAULT_LAME_DUCK_GRACE_SECS,
            duration_secs: DEFAULT_LAME_DUCK_DURATION_SECS,
        }
    }
}

impl LameDuck {
    pub fn is_default(&self) -> bool {
        *self == LameDuck::default()
    }

    /// How long `docker stop` waits before it kills the container: the whole lame-duck window,
    /// plus the leader hand-over (about a second) and nats-server's own shutdown, with room.
    pub fn stop_grace_secs(&self) -> u32 {
        self.duration_secs + 15
    }
}

fn default_lame_duck_grace() -> u32 {
    DEFAULT_LAME_DUCK_GRACE_SECS
}
fn default_lame_duck_duration() -> u32 {
    DEFAULT_LAME_DUCK_DURATION_SECS
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    #[serde(default)]
    pub issuer: Issuer,
}

impl Tls {
    pub(super) fn is_default(&self) -> bool {
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
    pub(super) fn is_default(&self) -> bool {
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
    pub(super) fn is_default(&self) -> bool {
        *self == Network::Bridge
    }
}

/// How many servers a cluster may have: JetStream's RAFT groups stay small.
pub const MAX_NODES: usize = 9;
pub const DEFAULT_CLUSTER_PORT: u16 = 6222;

pub(super) fn default_cluster_port() -> u16 {
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

pub(super) fn default_acme_directory() -> String {
    "letsencrypt".into()
}
pub(super) fn default_challenge() -> String {
    "http-01".into()
}
pub(super) fn default_http01_port() -> u16 {
    80
}
pub(super) fn default_acme_image() -> String {
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
    /// How long `rotate-passwords` keeps a user's old credential valid when run without
    /// `--grace` (`90s`, `30m`, `24h`; `0s`: none, the old one is refused at once). Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_grace: Option<String>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            bcrypt_cost: DEFAULT_BCRYPT_COST,
            rotation_grace: None,
        }
    }
}

/// The longest grace period a rotated credential gets: a rotation that leaves the old password
/// valid for longer than a year is no rotation.
pub const MAX_ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(366 * 86400);

/// A grace period as written in `auth.rotation_grace` or `--grace`: `90s`, `30m`, `24h`,
/// `1h30m`; at most [`MAX_ROTATION_GRACE`]. `0s` is no grace period.
pub fn parse_rotation_grace(s: &str) -> Result<Option<std::time::Duration>, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 90s, 30m or 24h ({e})"))?;
    if d > MAX_ROTATION_GRACE {
        return Err(format!(
            "{s:?} is too long: a grace period is at most 366 days (the old password stays valid \
             all that time)"
        ));
    }
    Ok((!d.is_zero()).then_some(d))
}

impl Auth {
    /// The configured grace period (checked at load).
    pub fn rotation_grace(&self) -> Option<std::time::Duration> {
        self.rotation_grace
            .as_deref()
            .and_then(|s| parse_rotation_grace(s).expect("checked at load"))
    }
}

pub(super) fn default_bcrypt_cost() -> u32 {
    DEFAULT_BCRYPT_COST
}

pub(super) fn default_remote_dir() -> String {
    DEFAULT_REMOTE_DIR.into()
}
pub(super) fn default_image() -> String {
    DEFAULT_IMAGE.into()
}
pub(super) fn default_port() -> u16 {
    4222
}
pub(super) fn default_bind() -> IpAddr {
    IpAddr::from([0, 0, 0, 0])
}
pub(super) fn default_extra_sans() -> Vec<String> {
    DEFAULT_EXTRA_SANS.iter().map(|s| s.to_string()).collect()
}
pub(super) fn default_users() -> Vec<User> {
    TUTORIAL_USERS.iter().map(|n| User::named(n)).collect()
}
pub(super) fn default_jetstream_limit() -> u64 {
    DEFAULT_JETSTREAM_LIMIT
}
pub(super) fn default_lifetime() -> u32 {
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

impl fmt::Display for HostKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostKeyPolicy::Strict => "strict",
            HostKeyPolicy::AcceptNew => "accept-new",
        })
    }
}
