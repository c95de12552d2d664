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
const ACME: &str = include_str!("../scripts/acme.sh");

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
    action: Action,
    manifest: &str,
    timeout_secs: u32,
) -> String {
    format!(
        "{}{COMMON}{APPLY}",
        header(&[
            ("DIR", remote_dir.to_string()),
            ("IMAGE", image.to_string()),
            ("ACTION", action_arg(action).to_string()),
            ("MANIFEST", manifest.to_string()),
            ("TIMEOUT", timeout_secs.to_string()),
        ])
    )
}

/// The http-01 responder's steps for one ACME order (`acme.sh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeStep {
    /// Read-only: the port is free (standalone) or the web root writable (webroot).
    Preflight,
    /// Serves the tokens on stdin (`TOKEN KEY_AUTHORIZATION` lines).
    Publish,
    /// Removes what `Publish` made.
    Remove,
}

/// Where and how the token is served: what [`acme`] needs besides the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responder {
    /// `standalone` or `webroot`.
    pub mode: &'static str,
    /// The deployment directory (standalone mode keeps the token folder under it).
    pub remote_dir: String,
    pub port: u16,
    pub image: String,
    pub webroot: String,
    /// The standalone container's name.
    pub name: String,
}

/// The responder script for `step`; `tokens` are the ones `Remove` deletes.
pub fn acme(step: AcmeStep, responder: &Responder, tokens: &[String]) -> String {
    let step = match step {
        AcmeStep::Preflight => "preflight",
        AcmeStep::Publish => "publish",
        AcmeStep::Remove => "remove",
    };
    format!(
        "{}{COMMON}{ACME}",
        header(&[
            ("STEP", step.to_string()),
            ("MODE", responder.mode.to_string()),
            ("DIR", responder.remote_dir.clone()),
            ("PORT", responder.port.to_string()),
            ("IMAGE", responder.image.clone()),
            ("WEBROOT", responder.webroot.clone()),
            ("NAME", responder.name.clone()),
            ("TOKENS", tokens.join(" ")),
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
            let script = apply("/srv/nats", "nats:2.10.21", action, "", 30);
            assert!(
                script.contains(&format!("\nACTION='{arg}'\n")),
                "{action:?}"
            );
        }
    }

    #[test]
    fn scripts_parse_under_sh() {
        let responder = Responder {
            mode: "standalone",
            remote_dir: "nats bits".into(),
            port: 80,
            image: "busybox:1.36".into(),
            webroot: String::new(),
            name: "natsup-acme-t".into(),
        };
        for script in [
            acme(AcmeStep::Preflight, &responder, &[]),
            acme(AcmeStep::Publish, &responder, &[]),
            acme(AcmeStep::Remove, &responder, &["a-b_c".into()]),
            observe("nats bits/'x'", 4222),
            apply(
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
