//! Builds the shell scripts natsup runs on the server. Pure: parameters in, script text out.
//! Also the one shell-quoting function ([`sh_quote`]).
//!
//! The scripts live as readable files in `src/scripts/`; a header of shell-quoted variable
//! assignments is prepended. They hold no secret (the bundle's key and hashes go on stdin),
//! because a command line is visible to every user of the server in `ps`.

use crate::plan::Action;

const COMMON: &str = include_str!("../scripts/common.sh");
const OBSERVE: &str = include_str!("../scripts/observe.sh");
const APPLY: &str = include_str!("../scripts/apply.sh");

/// The apply script's `ACTION`: what it does once the new files are committed. `none` commits
/// files only (nothing the running server reads changed); `reload` sends SIGHUP (users,
/// passwords, permissions and TLS files); `start` runs `compose up -d`; `recreate` runs
/// `compose up -d --force-recreate`, for what a reload cannot change.
fn action_arg(action: Action) -> &'static str {
    match action {
        Action::Nothing | Action::Files => "none",
        Action::Reload => "reload",
        Action::Start => "start",
        Action::Recreate => "recreate",
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

/// The deployment's name as the first part of its Compose project name; the scripts add a
/// hash of the deployment folder's physical path (`set_project` in common.sh). Compose v2
/// takes only lowercase letters, digits, `-` and `_`, starting with a letter or digit, and v1
/// lowercases a name and drops anything else: this is a name both keep as it is.
pub fn project_prefix(deployment: &str) -> String {
    let name: String = deployment
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    match name.trim_start_matches(['-', '_']) {
        "" => "natsup".into(),
        name => name.into(),
    }
}

/// Read-only inspection of the deployment directory, Docker, the container and the port.
pub fn observe(deployment: &str, remote_dir: &str, port: u16) -> String {
    format!(
        "{}{COMMON}{OBSERVE}",
        header(&[
            ("PROJECT_PREFIX", project_prefix(deployment)),
            ("DIR", remote_dir.to_string()),
            ("PORT", port.to_string())
        ])
    )
}

/// Unpacks, validates, commits and activates the bundle that arrives on stdin.
/// `manifest` is `sha256sum` output (`HASH  PATH` lines) for the bundle's files.
pub fn apply(
    deployment: &str,
    remote_dir: &str,
    image: &str,
    action: Action,
    manifest: &str,
    timeout_secs: u32,
) -> String {
    format!(
        "{}{COMMON}{APPLY}",
        header(&[
            ("PROJECT_PREFIX", project_prefix(deployment)),
            ("DIR", remote_dir.to_string()),
            ("IMAGE", image.to_string()),
            ("ACTION", action_arg(action).to_string()),
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
    fn each_action_has_the_argument_apply_sh_reads() {
        for (action, arg) in [
            (Action::Nothing, "none"),
            (Action::Files, "none"),
            (Action::Reload, "reload"),
            (Action::Start, "start"),
            (Action::Recreate, "recreate"),
        ] {
            let script = apply("prod", "/srv/nats", "nats:2.10.21", action, "", 30);
            assert!(
                script.contains(&format!("\nACTION='{arg}'\n")),
                "{action:?}"
            );
        }
    }

    #[test]
    fn project_prefixes_are_names_both_composes_keep() {
        assert_eq!(project_prefix("prod"), "prod");
        assert_eq!(project_prefix("My_Game-EU"), "my_game-eu");
        assert_eq!(project_prefix("_x"), "x");
        assert_eq!(project_prefix("__"), "natsup");
    }

    #[test]
    fn scripts_parse_under_sh() {
        for script in [
            observe("prod", "nats bits/'x'", 4222),
            apply(
                "prod",
                "/srv/nats",
                "nats:2.10.21",
                Action::Reload,
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
