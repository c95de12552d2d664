//! Where files are rendered: `nats-server.conf` and `docker-compose.yaml` from the askama
//! templates in `templates/`, and the bundle of files that goes to the server.
//!
//! Pure: the same (config, state) always gives byte-identical output, which is what lets
//! `natsup up` compare a render with what the server has and do nothing when they match.

use std::fmt::{self, Display};
use std::net::IpAddr;

use askama::Template;

use crate::config::{Config, Network, Node, Permissions, host_port};
use crate::state::{ROUTE_USER, SYSTEM_USER, State};

/// Where the server finds its files inside the container (the tutorial's volume layout).
pub const CONTAINER_CONFIG_DIR: &str = "/config";
pub const CONTAINER_STORE_DIR: &str = "/data";
pub const CONTAINER_LISTEN: &str = "0.0.0.0:4222";
pub const CONTAINER_CLUSTER_LISTEN: &str = "0.0.0.0:6222";
pub const CONF_FILE: &str = "nats-config/nats-server.conf";
pub const COMPOSE_FILE: &str = "docker-compose.yaml";
/// The line templates/docker-compose.yaml opens with after its title: a compose file that
/// holds it was made by natsup (`natsup render`'s output copied by hand, say).
pub const COMPOSE_MARK: &str = "# Rendered by natsup";

/// The paths and listen address written into `nats-server.conf`. The container's by default;
/// tests render the same config with local paths to run it under a local nats-server.
#[derive(Debug, Clone)]
pub struct ConfPaths {
    pub listen: String,
    pub cert_file: String,
    pub key_file: String,
    pub store_dir: String,
    /// A cluster node's: the CA its routes verify each other against, the route listener,
    /// and the certificate its routes present (its own, unless that is the ACME CA's).
    pub ca_file: String,
    pub cluster_listen: String,
    pub route_cert_file: String,
    pub route_key_file: String,
}

impl ConfPaths {
    pub fn container(tls: &TlsNames) -> ConfPaths {
        ConfPaths {
            listen: CONTAINER_LISTEN.into(),
            cert_file: format!("{CONTAINER_CONFIG_DIR}/{}", tls.cert),
            key_file: format!("{CONTAINER_CONFIG_DIR}/{}", tls.key),
            store_dir: CONTAINER_STORE_DIR.into(),
            ca_file: format!("{CONTAINER_CONFIG_DIR}/rootCA.pem"),
            cluster_listen: CONTAINER_CLUSTER_LISTEN.into(),
            route_cert_file: format!("{CONTAINER_CONFIG_DIR}/{}", tls.cert),
            route_key_file: format!("{CONTAINER_CONFIG_DIR}/{}", tls.key),
        }
    }

    /// The container's paths for `node`: on the host's network (`network: host`)
    /// nats-server itself listens on `bind`; a cluster's CA file is named after its content,
    /// so a new trust bundle changes nats-server.conf and is applied by a reload.
    pub fn for_node(config: &Config, i: usize, state: &State, tls: &TlsNames) -> ConfPaths {
        let node = &config.nodes()[i];
        let mut paths = ConfPaths::container(tls);
        if let Some(route) = route_tls(config, i, state) {
            paths.route_cert_file = format!("{CONTAINER_CONFIG_DIR}/{}", route.cert);
            paths.route_key_file = format!("{CONTAINER_CONFIG_DIR}/{}", route.key);
        }
        if config.network == Network::Host {
            paths.listen = host_port(&node.bind.to_string(), node.port);
            paths.cluster_listen = host_port(&node.bind.to_string(), config.cluster.port);
        }
        paths.ca_file = format!("{CONTAINER_CONFIG_DIR}/{}", ca_file_name(state));
        paths
    }
}

/// The file names of the certificate node `i`'s routes present, when it is not the one its
/// clients get: a cluster node that presents the ACME CA's certificate to clients presents
/// natsup's CA's to its peers.
fn route_tls(config: &Config, i: usize, state: &State) -> Option<TlsNames> {
    let cert = &state.certs[i];
    (config.is_cluster() && cert.publicly_trusted)
        .then(|| TlsNames::versioned(&cert.ca_issued.info().serial))
}

/// `rootCA-<first 16 hex digits of its SHA-256>.pem`: the trust bundle a cluster's routes use.
pub fn ca_file_name(state: &State) -> String {
    format!(
        "rootCA-{}.pem",
        &sha256_hex(state.trust_pem.as_bytes())[..16]
    )
}

/// Lowercase hex SHA-256: how files are named after their content, and how `plan` compares
/// a render with what the server holds.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// File names of the server certificate and key inside `nats-config/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsNames {
    pub cert: String,
    pub key: String,
}

impl TlsNames {
    /// The tutorial's names, used by `natsup render`.
    pub fn plain() -> TlsNames {
        TlsNames {
            cert: "nats-server-cert.pem".into(),
            key: "nats-server-key.pem".into(),
        }
    }

    /// Names unique to one certificate, used on the server: a new certificate is written
    /// beside the old one, and the rename of `nats-server.conf` that points at it is the single
    /// commit point of a change.
    pub fn versioned(serial: &str) -> TlsNames {
        let id = &serial[..serial.len().min(16)];
        TlsNames {
            cert: format!("nats-server-cert-{id}.pem"),
            key: format!("nats-server-key-{id}.pem"),
        }
    }
}

/// One file of the bundle; `path` is relative to the deployment directory.
#[derive(Clone, PartialEq, Eq)]
pub struct BundleFile {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

impl BundleFile {
    /// Readable by its owner only: the private key, and the config with its hashes.
    pub fn is_secret(&self) -> bool {
        self.mode & 0o077 == 0
    }
}

impl fmt::Debug for BundleFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleFile")
            .field("path", &self.path)
            .field("bytes", &self.contents.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// The exact set of files that goes to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub files: Vec<BundleFile>,
}

impl Bundle {
    pub fn get(&self, path: &str) -> Option<&BundleFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// Renders node `i`'s bundle: compose file, server config, and its certificate and key.
pub fn bundle(config: &Config, i: usize, state: &State, tls: &TlsNames) -> Bundle {
    let node = &config.nodes()[i];
    let cert = &state.certs[i].server;
    let conf = nats_conf(
        config,
        i,
        state,
        &ConfPaths::for_node(config, i, state, tls),
    );
    let mut bundle = Bundle {
        files: vec![
            BundleFile {
                path: COMPOSE_FILE.into(),
                contents: compose(config, node).into_bytes(),
                mode: 0o644,
            },
            BundleFile {
                // It holds every user's bcrypt hash: readable by the deploy user only, like
                // the key (a hash is an offline guessing target, at the cost auth.bcrypt_cost
                // sets).
                path: CONF_FILE.into(),
                contents: conf.into_bytes(),
                mode: 0o600,
            },
            BundleFile {
                path: format!("nats-config/{}", tls.cert),
                contents: cert.cert_pem().as_bytes().to_vec(),
                mode: 0o644,
            },
            BundleFile {
                // 0600 on the host; the official image runs nats-server as root (its
                // Dockerfile sets no USER), so the container still reads it, as it does the
                // config.
                path: format!("nats-config/{}", tls.key),
                contents: cert.key_pem().expose().as_bytes().to_vec(),
                mode: 0o600,
            },
        ],
    };
    if let Some(route) = route_tls(config, i, state) {
        let pair = &state.certs[i].ca_issued;
        bundle.files.push(BundleFile {
            path: format!("nats-config/{}", route.cert),
            contents: pair.cert_pem().as_bytes().to_vec(),
            mode: 0o644,
        });
        bundle.files.push(BundleFile {
            path: format!("nats-config/{}", route.key),
            contents: pair.key_pem().expose().as_bytes().to_vec(),
            mode: 0o600,
        });
    }
    if config.is_cluster() {
        bundle.files.push(BundleFile {
            path: format!("nats-config/{}", ca_file_name(state)),
            contents: state.trust_pem.as_bytes().to_vec(),
            mode: 0o644,
        });
    }
    bundle
}

#[derive(Template)]
#[template(path = "nats-server.conf", escape = "none")]
struct NatsConf<'a> {
    deployment: &'a str,
    listen: &'a str,
    server_name: Option<&'a str>,
    server_tag: Option<String>,
    client_advertise: Option<String>,
    cluster: Option<ClusterConf<'a>>,
    users: Vec<ConfUser<'a>>,
    system_user: &'a str,
    system_bcrypt: Option<&'a str>,
    cert_file: &'a str,
    key_file: &'a str,
    store_dir: &'a str,
    max_memory_store: u64,
    max_file_store: u64,
    lame_duck_grace: u32,
    lame_duck_duration: u32,
}

/// A cluster node's `cluster` block.
struct ClusterConf<'a> {
    name: &'a str,
    listen: &'a str,
    advertise: String,
    user: &'a str,
    bcrypt: &'a str,
    routes: Vec<String>,
    cert_file: &'a str,
    key_file: &'a str,
    ca_file: &'a str,
}

struct ConfUser<'a> {
    name: &'a str,
    bcrypt: &'a str,
    permissions: Option<&'a Permissions>,
}

/// A cluster node's server tag: JetStream places a stream whose `placement.tags` holds it on
/// that node alone (nats-server compares tags case-insensitively). natsup places one on each
/// node of a new cluster to see that the node answers for it.
pub fn node_tag(node: &str) -> String {
    format!("natsup-node:{node}")
}

/// Node `i`'s `nats-server.conf`: the tutorial's config with bcrypt hashes instead of
/// passwords; in a cluster, with its name and the routes to every other node.
pub fn nats_conf(config: &Config, i: usize, state: &State, paths: &ConfPaths) -> String {
    // A user in a grace period after a rotation has one entry per credential, each with the
    // user's permissions ([`crate::state::GracedCredential`]).
    let users = config
        .users
        .iter()
        .flat_map(|u| {
            state.secrets.served(&u.name).into_iter().map(|c| ConfUser {
                name: c.login,
                bcrypt: c.bcrypt,
                permissions: u.permissions.as_ref(),
            })
        })
        .collect();
    let node = &config.nodes()[i];
    let cluster = config.is_cluster().then(|| {
        let route = state
            .secrets
            .route
            .as_ref()
            .expect("a cluster's state always has its route credential");
        ClusterConf {
            name: &config.name,
            listen: &paths.cluster_listen,
            advertise: host_port(&node.host, config.cluster.port),
            user: ROUTE_USER,
            bcrypt: state.secrets.route_accepted_hash().unwrap_or(&route.bcrypt),
            routes: config
                .nodes()
                .iter()
                .filter(|n| n.name != node.name)
                .flat_map(|n| {
                    let dial = state.secrets.route_dial_passwords(&node.name);
                    config
                        .cluster
                        .route_ports()
                        .into_iter()
                        .flat_map(move |port| {
                            dial.clone().into_iter().map(move |password| {
                                format!(
                                    "nats-route://{ROUTE_USER}:{}@{}",
                                    password.expose(),
                                    host_port(&n.host, port)
                                )
                            })
                        })
                })
                .collect(),
            cert_file: &paths.route_cert_file,
            key_file: &paths.route_key_file,
            ca_file: &paths.ca_file,
        }
    });
    NatsConf {
        deployment: &config.name,
        listen: &paths.listen,
        server_name: config.is_cluster().then_some(node.name.as_str()),
        server_tag: config.is_cluster().then(|| node_tag(&node.name)),
        client_advertise: config.is_cluster().then(|| node.addr()),
        cluster,
        users,
        system_user: SYSTEM_USER,
        // The pending hash while the system user's rotation is under way, as for any user.
        system_bcrypt: state
            .secrets
            .system
            .as_ref()
            .map(|_| state.secrets.served_hash(SYSTEM_USER)),
        cert_file: &paths.cert_file,
        key_file: &paths.key_file,
        store_dir: &paths.store_dir,
        max_memory_store: config.jetstream.max_memory_store,
        max_file_store: config.jetstream.max_file_store,
        lame_duck_grace: config.lame_duck.grace_secs,
        lame_duck_duration: config.lame_duck.duration_secs,
    }
    .render()
    .expect("the nats-server.conf template renders from any valid config")
        + "\n"
}

#[derive(Template)]
#[template(path = "docker-compose.yaml", escape = "none")]
struct Compose<'a> {
    deployment: &'a str,
    image: &'a str,
    command: String,
    host_network: bool,
    ports: Vec<String>,
    stop_grace_secs: u32,
}

/// `node`'s `docker-compose.yaml`: the tutorial's file, with the port published on `bind`.
pub fn compose(config: &Config, node: &Node) -> String {
    let bind = match node.bind {
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    let mut ports = vec![format!("{bind}:{}:4222", node.port)];
    if config.is_cluster() {
        ports.push(format!("{bind}:{}:6222", config.cluster.port));
    }
    Compose {
        deployment: &config.name,
        image: &node.image,
        command: format!("--config {CONTAINER_CONFIG_DIR}/nats-server.conf"),
        host_network: config.network == Network::Host,
        ports,
        stop_grace_secs: config.lame_duck.stop_grace_secs(),
    }
    .render()
    .expect("the docker-compose.yaml template renders from any valid config")
        + "\n"
}

/// A NATS config double-quoted string. Inside double quotes nats-server reads `$` literally
/// (no variable expansion) and knows only the escapes `\xXX \t \n \r \" \\` (nats-server's
/// conf lexer, checked against 2.10.26 by tests/rendered_files.rs), so
/// everything else passes through and control characters become `\xXX`.
pub fn nats_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A YAML single-quoted scalar for a compose file. YAML's only escape inside single quotes is
/// `''`; Compose then interpolates `$VAR`, so a literal `$` is written `$$`. Newlines cannot be
/// represented faithfully in a single-quoted scalar, but no validated config value has one.
pub fn yaml_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''").replace('$', "$$"))
}

mod filters {
    use super::*;

    #[askama::filter_fn]
    pub fn nats<T: Display>(value: T, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(nats_quote(&value.to_string()))
    }

    #[askama::filter_fn]
    pub fn yaml<T: Display>(value: T, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(yaml_quote(&value.to_string()))
    }
}
