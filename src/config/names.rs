//! What a name, a host, an SSH destination, a remote directory or an image may look like, and
//! how a host and port are written together.

use std::net::{IpAddr, Ipv6Addr};

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

/// 1 to `max` of [A-Za-z0-9_-]: what deployment, node and user names are made of, since they
/// end up in paths, URLs, env files and nats context names unquoted.
pub(super) fn is_token(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) fn check_name(name: &str) -> Result<(), String> {
    let ok = is_token(name, 64) && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid deployment name (1-64 letters, digits, _ and -, not starting with -)"
        ))
    }
}

pub(super) fn check_id(id: &str) -> Result<(), String> {
    if is_token(id, 64) {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a valid deployment id (1-64 letters, digits, _ and -; `natsup init` writes a random one)"
        ))
    }
}

pub(super) fn check_node_name(name: &str) -> Result<(), String> {
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
    if name == crate::state::SYSTEM_USER {
        return Err(format!(
            "{name:?} is natsup's own system-account user (nats-server refuses a user name twice); \
             pick another name"
        ));
    }
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

pub(super) fn check_ssh_destination(dest: &str) -> Result<(), String> {
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

pub(super) fn check_remote_dir(dir: &str) -> Result<(), String> {
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
    // `.` and `..` make one folder go by several names (`./.` is the home folder itself, `/.`
    // is `/`), and the folder natsup fills with its files and checks for who else may
    // write there must be the one the file names.
    let bad = dir.is_empty()
        || dir.chars().any(|c| c.is_control())
        || dir.trim_end_matches('/').is_empty()
        || dir.split('/').any(|part| part == ".." || part == ".")
        // `//srv` is `/srv` by another name, and POSIX leaves a leading `//` to the system.
        || dir.trim_end_matches('/').contains("//");
    if bad {
        return Err(format!(
            "{dir:?} is not a usable directory (a path relative to the SSH user's home, or absolute; no `.`, `..` or `//`)"
        ));
    }
    if dir != dir.trim() {
        return Err(format!(
            "{dir:?} starts or ends with a space; write the folder's name without it"
        ));
    }
    // natsup writes docker-compose.yaml, nats-config/, nats-data/ and .natsup/ straight into
    // the folder: one the system or every user shares is no deployment's own.
    let absolute = format!("/{}", dir.trim_matches('/'));
    let shared = SHARED_DIRS.contains(&absolute.as_str())
        || ["/proc/", "/sys/", "/dev/"]
            .iter()
            .any(|p| absolute.starts_with(p));
    if dir.starts_with('/') && shared {
        return Err(format!(
            "{dir:?} is a folder the system or every user of the server shares; natsup needs a \
             folder of its own, like nats-bits in the SSH user's home (the default) or /srv/nats"
        ));
    }
    Ok(())
}

/// Folders of the system, or that every user may write (/tmp, /var/tmp, /dev/shm).
const SHARED_DIRS: [&str; 22] = [
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib64",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/tmp",
    "/dev/shm",
    "/usr/local",
];

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
