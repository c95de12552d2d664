//! Validation, once, at load: every rule natsup.yaml must keep, each failure with the field
//! path it is about (`nodes[1].host: ...`), and serde's messages made readable.

use super::names::{
    check_host, check_id, check_image, check_name, check_node_name, check_remote_dir,
    check_ssh_destination, check_user_name,
};
use super::permissions::check_subject;
use super::{
    Acme, BCRYPT_COSTS, Config, DEFAULT_BCRYPT_COST, Http01Mode, Issuer, MAX_CERT_LIFETIME_DAYS,
    MAX_NODES, MIN_LAME_DUCK_DURATION_SECS,
};

impl Config {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        check_name(&self.name).at("name")?;
        if let Some(id) = &self.id {
            check_id(id).at("id")?;
        }
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
        let ldm = &self.lame_duck;
        if ldm.duration_secs < MIN_LAME_DUCK_DURATION_SECS {
            return Err(Invalid::new(
                "lame_duck.duration_secs",
                format!(
                    "{} is too short: nats-server refuses a lame_duck_duration under {MIN_LAME_DUCK_DURATION_SECS} seconds",
                    ldm.duration_secs
                ),
            ));
        }
        if ldm.grace_secs == 0 || ldm.grace_secs >= ldm.duration_secs {
            return Err(Invalid::new(
                "lame_duck.grace_secs",
                format!(
                    "{} is out of range: 1 or more, and less than lame_duck.duration_secs ({}), \
                     as nats-server requires (0 would make it take its own default of 10)",
                    ldm.grace_secs, ldm.duration_secs
                ),
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
        if let Some(grace) = &self.auth.rotation_grace {
            super::parse_rotation_grace(grace).at("auth.rotation_grace")?;
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
        if resolved.len() > 1 {
            self.validate_ports(&resolved)?;
        }
        Ok(())
    }
}

impl Config {
    /// A cluster node listens on two ports (or Docker publishes them): `port` for clients and
    /// `cluster.port` for routes, both on its `bind`. The two must differ, and two nodes on
    /// one server must not take the same port on the same address (a wildcard `bind` takes
    /// every address): the second would fail at `compose up`, or nats-server at its listen.
    fn validate_ports(&self, resolved: &[super::Node]) -> Result<(), Invalid> {
        let route = self.cluster.port;
        for (i, node) in resolved.iter().enumerate() {
            if node.port == route {
                let (at, which) = match self.nodes[i].port {
                    Some(_) => (format!("nodes[{i}].port"), format!("nodes[{i}]'s `port`")),
                    None => ("cluster.port".to_string(), "the client `port`".to_string()),
                };
                return Err(Invalid::new(
                    at,
                    format!(
                        "{route} is both {which} and the route port (`cluster.port`): nats-server \
                         listens on each for a different thing; give one of them another port \
                         (the defaults are 4222 and 6222)"
                    ),
                ));
            }
        }
        let listens = |node: &super::Node| [(node.port, "client port"), (route, "route port")];
        for (i, node) in resolved.iter().enumerate() {
            for (j, other) in resolved.iter().enumerate().take(i) {
                if server_of(node) != server_of(other) {
                    continue;
                }
                let shared = node.bind == other.bind
                    || node.bind.is_unspecified()
                    || other.bind.is_unspecified();
                for (port, what) in listens(node) {
                    if shared && listens(other).iter().any(|(p, _)| *p == port) {
                        let addr = super::host_port(&node.bind.to_string(), port);
                        let wildcard = if node.bind.is_unspecified() || other.bind.is_unspecified()
                        {
                            " (a bind of 0.0.0.0 is every address)"
                        } else {
                            ""
                        };
                        let instead = if what == "route port" {
                            "give each node on one server its own `bind` address: the route port \
                             (`cluster.port`) is the same on every node"
                        } else {
                            "give each node on one server its own `bind` address, or its own `port`"
                        };
                        return Err(Invalid::new(
                            format!("nodes[{i}].bind"),
                            format!(
                                "nodes[{i}] ({}) and nodes[{j}] ({}) are on the same server and \
                                 would both listen on {addr}, nodes[{i}]'s {what}{wildcard}; \
                                 {instead}",
                                node.name, other.name
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The server a node runs on, as far as natsup.yaml tells: the host of its SSH destination
/// and the SSH port (two users of one machine share its ports). An `~/.ssh/config` alias is
/// taken for a server of its own.
fn server_of(node: &super::Node) -> Option<(String, u16)> {
    let ssh = node.ssh.as_ref()?;
    let host = ssh
        .destination
        .rsplit_once('@')
        .map_or(ssh.destination.as_str(), |(_, h)| h);
    Some((host.to_ascii_lowercase(), ssh.port.unwrap_or(22)))
}

impl Acme {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
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

/// A validation failure before the file name is attached.
#[derive(Debug)]
pub(super) struct Invalid {
    pub(super) path: String,
    pub(super) message: String,
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
pub(super) fn strip_path(path: &str, message: &str) -> String {
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
pub(super) fn plain_words(message: &str) -> String {
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

pub(super) fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
