//! Builds the shell scripts natsup runs on the server. Pure: parameters in, script text out.
//!
//! The scripts live as readable files in `src/scripts/`; a header of shell-quoted variable
//! assignments is prepended. They hold no secret (the bundle's key and hashes go on stdin),
//! because a command line is visible to every user of the server in `ps`.

const COMMON: &str = include_str!("../scripts/common.sh");
const OBSERVE: &str = include_str!("../scripts/observe.sh");
const APPLY: &str = include_str!("../scripts/apply.sh");

/// What [`apply`] should do once the new files are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyAction {
    /// Files only (nothing the running server reads changed).
    None,
    /// SIGHUP: users, passwords, permissions and TLS files.
    Reload,
    /// `compose up -d`: create or start the container.
    Start,
    /// `compose up -d --force-recreate`: what a reload cannot change.
    Recreate,
}

impl ApplyAction {
    fn as_str(self) -> &'static str {
        match self {
            ApplyAction::None => "none",
            ApplyAction::Reload => "reload",
            ApplyAction::Start => "start",
            ApplyAction::Recreate => "recreate",
        }
    }
}

/// POSIX single-quoting: the only character special inside is `'` itself.
pub fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn header(vars: &[(&str, String)]) -> String {
    let mut s = String::from("# natsup remote script\n");
    for (k, v) in vars {
        s.push_str(&format!("{k}={}\n", sh_quote(v)));
    }
    s
}

/// Read-only inspection of the deployment directory, Docker, the container and the port.
pub fn observe(remote_dir: &str, port: u16) -> String {
    format!(
        "{}{COMMON}{OBSERVE}",
        header(&[("DIR", remote_dir.to_string()), ("PORT", port.to_string())])
    )
}

/// Unpacks, validates, commits and activates the bundle that arrives on stdin.
/// `manifest` is `sha256sum` output (`HASH  PATH` lines) for the bundle's files.
pub fn apply(
    remote_dir: &str,
    image: &str,
    action: ApplyAction,
    manifest: &str,
    timeout_secs: u32,
) -> String {
    format!(
        "{}{COMMON}{APPLY}",
        header(&[
            ("DIR", remote_dir.to_string()),
            ("IMAGE", image.to_string()),
            ("ACTION", action.as_str().to_string()),
            ("MANIFEST", manifest.to_string()),
            ("TIMEOUT", timeout_secs.to_string()),
        ])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_hostile_values() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn scripts_parse_under_sh() {
        for script in [
            observe("nats bits/'x'", 4222),
            apply(
                "/srv/nats",
                "nats:2.10.21",
                ApplyAction::Reload,
                "abc  docker-compose.yaml",
                30,
            ),
        ] {
            let out = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&script)
                .output()
                .expect("sh runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
