//! Builds the shell scripts natsup runs on the server. Pure: parameters in, script text out.
//! Also the one shell-quoting function ([`sh_quote`]).
//!
//! The scripts live as readable files in `src/scripts/`; a header of shell-quoted variable
//! assignments is prepended. They hold no secret (the bundle's key and hashes go on stdin),
//! because a command line is visible to every user of the server in `ps`.

use std::time::Duration;

use crate::config::Http01Mode;

use crate::plan::Action;

const COMMON: &str = include_str!("../scripts/common.sh");
const OBSERVE: &str = include_str!("../scripts/observe.sh");
const APPLY: &str = include_str!("../scripts/apply.sh");
const ACME: &str = include_str!("../scripts/acme.sh");
const RETIRE: &str = include_str!("../scripts/retire.sh");

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

/// Read-only inspection of the deployment directory (and who else could write it), Docker,
/// the container and the ports: the client `port`, and a cluster node's `route_port`.
/// With `bind`, only a listener on that address or on every address takes a port.
pub fn observe(
    deployment: &str,
    remote_dir: &str,
    port: u16,
    route_port: Option<u16>,
    bind: Option<std::net::IpAddr>,
) -> String {
    let mut vars = vec![
        ("PROJECT_PREFIX", project_prefix(deployment)),
        ("DIR", remote_dir.to_string()),
        ("PORT", port.to_string()),
    ];
    if let Some(route_port) = route_port {
        vars.push(("ROUTE_PORT", route_port.to_string()));
    }
    if let Some(bind) = bind {
        vars.push(("BIND", bind.to_string()));
    }
    format!("{}{COMMON}{OBSERVE}", header(&vars))
}

/// Unpacks, validates, commits and activates the bundle that arrives on stdin.
/// `manifest` is `sha256sum` output (`HASH  PATH` lines) for the bundle's files.
/// `bounds` limits each step that waits on Docker.
pub fn apply(
    deployment: &str,
    remote_dir: &str,
    image: &str,
    action: Action,
    manifest: &str,
    bounds: &Bounds,
) -> String {
    apply_script(
        deployment,
        remote_dir,
        image,
        action_arg(action),
        manifest,
        bounds,
    )
}

/// The steps that take a node removed from `nodes` out of service (`retire.sh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireStep {
    /// No restart from now on, and SIGUSR2: lame duck, without waiting for it.
    LameDuck,
    /// Waits for the server to leave (up to the lame-duck wait), ends it, stops the container.
    Stop,
}

/// The retire script for `step` on the node whose folder is `remote_dir`.
pub fn retire(
    deployment: &str,
    remote_dir: &str,
    step: RetireStep,
    lame_duck_wait: Duration,
    compose: Duration,
) -> String {
    format!(
        "{}{COMMON}{RETIRE}",
        header(&[
            ("PROJECT_PREFIX", project_prefix(deployment)),
            ("DIR", remote_dir.to_string()),
            (
                "STEP",
                match step {
                    RetireStep::LameDuck => "lame-duck",
                    RetireStep::Stop => "stop",
                }
                .to_string(),
            ),
            ("LDM_WAIT", bound_secs(lame_duck_wait)),
            ("COMPOSE_TIMEOUT", bound_secs(compose)),
        ])
    )
}

/// natsup's verdict on a change the server's log could not confirm (the apply script's exit
/// 6), proven or not from natsup's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It serves the change: record it as applied.
    Confirm,
    /// It does not: roll back as a failed `action` would.
    Undo,
}

/// The apply script run again, with nothing on stdin, to carry out `verdict` on the change
/// `manifest` describes (refused if the live files are no longer those).
pub fn follow_up(
    deployment: &str,
    remote_dir: &str,
    image: &str,
    action: Action,
    manifest: &str,
    bounds: &Bounds,
    verdict: Verdict,
) -> String {
    let arg = match verdict {
        Verdict::Confirm => "confirm".to_string(),
        Verdict::Undo => format!("undo-{}", action_arg(action)),
    };
    apply_script(deployment, remote_dir, image, &arg, manifest, bounds)
}

fn apply_script(
    deployment: &str,
    remote_dir: &str,
    image: &str,
    action: &str,
    manifest: &str,
    bounds: &Bounds,
) -> String {
    let secs = |d: Duration| d.as_secs().max(1).to_string();
    format!(
        "{}{COMMON}{APPLY}",
        header(&[
            ("PROJECT_PREFIX", project_prefix(deployment)),
            ("DIR", remote_dir.to_string()),
            ("IMAGE", image.to_string()),
            ("ACTION", action.to_string()),
            ("MANIFEST", manifest.to_string()),
            ("TIMEOUT", secs(bounds.ready)),
            ("VALIDATE_TIMEOUT", secs(bounds.validate)),
            ("PULL_TIMEOUT", secs(bounds.pull)),
            ("COMPOSE_TIMEOUT", secs(bounds.compose)),
            ("STEP_TIMEOUT", secs(bounds.docker_call)),
            ("LOCK_TIMEOUT", secs(bounds.lock)),
            ("LDM_WAIT", secs(bounds.lame_duck)),
        ])
    )
}

/// How `apply.sh` ended: its exit code and the `natsup.result=` it printed, parsed in one
/// place (the script's header lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// 0: applied and confirmed by the server's log.
    Applied,
    /// 3: rejected (validation, a check, the lock); nothing live changed.
    Rejected,
    /// 4: the server did not come back healthy; the previous configuration runs again.
    RolledBack,
    /// 4: the server did not start, and there was nothing to roll back to.
    Stopped,
    /// 5: neither the new nor the previous configuration came back healthy.
    RollbackFailed,
    /// 6: committed, but the log could not confirm it: natsup's own proof decides.
    Unconfirmed,
    /// 1 or anything else: the script failed before it could say more.
    Failed(Option<i32>),
}

impl ApplyOutcome {
    pub fn parse(status: i32, result: Option<&str>) -> ApplyOutcome {
        match (status, result) {
            (0, _) => ApplyOutcome::Applied,
            (3, _) => ApplyOutcome::Rejected,
            (6, _) => ApplyOutcome::Unconfirmed,
            (4 | 5, Some("rolled-back")) => ApplyOutcome::RolledBack,
            (4 | 5, Some("stopped")) => ApplyOutcome::Stopped,
            (4 | 5, _) => ApplyOutcome::RollbackFailed,
            (other, _) => ApplyOutcome::Failed(Some(other).filter(|c| *c >= 0)),
        }
    }
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
    pub mode: Http01Mode,
    /// The deployment directory (standalone mode keeps the token folder under it).
    pub remote_dir: String,
    pub port: u16,
    pub image: String,
    pub webroot: String,
    /// The standalone container's name.
    pub name: String,
    /// Each Docker call's bound: `docker_call` for a quick one, `pull`, `validate` for the
    /// start of the container, `ready` for it to serve the first token.
    pub bounds: Bounds,
    /// How long the standalone container may live at all: it stops by itself after this.
    pub lifetime: Duration,
}

impl Responder {
    /// The longest `Publish` runs when every bound of acme.sh holds (its deadline there): past
    /// this, natsup stops waiting for it.
    pub fn publish_total(&self) -> Duration {
        let b = &self.bounds;
        b.docker_call * 6 + b.pull + b.validate + b.ready + Duration::from_secs(60)
    }

    /// The longest `Remove` runs: it first waits for any publish of this responder that
    /// could still start the container, then a few quick calls.
    pub fn remove_total(&self) -> Duration {
        self.publish_total() + self.bounds.docker_call * 2 + Duration::from_secs(30)
    }
}

/// Whole seconds, at least one, for a `timeout` bound.
fn bound_secs(d: Duration) -> String {
    d.as_secs().max(1).to_string()
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
            (
                "MODE",
                match responder.mode {
                    Http01Mode::Standalone => "standalone",
                    Http01Mode::Webroot => "webroot",
                }
                .to_string(),
            ),
            ("DIR", responder.remote_dir.clone()),
            ("PORT", responder.port.to_string()),
            ("IMAGE", responder.image.clone()),
            ("WEBROOT", responder.webroot.clone()),
            ("NAME", responder.name.clone()),
            // One a line: acme.sh reads them line by line, never splitting or globbing.
            ("TOKENS", tokens.join("\n")),
            ("STEP_TIMEOUT", bound_secs(responder.bounds.docker_call)),
            ("PULL_TIMEOUT", bound_secs(responder.bounds.pull)),
            ("START_TIMEOUT", bound_secs(responder.bounds.validate)),
            ("READY_TIMEOUT", bound_secs(responder.bounds.ready)),
            ("LIFETIME", bound_secs(responder.lifetime)),
        ])
    )
}

/// How long each step of the apply script may take, all derived from the time the server
/// gets to become ready (`up --timeout`), so that one flag scales them together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The server becomes ready, or confirms a reload.
    pub ready: Duration,
    /// `nats-server -t` in a throwaway container: a container start, like readiness.
    pub validate: Duration,
    /// `docker pull`: ten times readiness, and never under five minutes (an image of a few
    /// megabytes over a slow link).
    pub pull: Duration,
    /// `compose up -d` (with `--force-recreate`, it stops the old container first).
    pub compose: Duration,
    /// One quick Docker call (inspect, logs, kill -s HUP).
    pub docker_call: Duration,
    /// Waiting for another run's apply on the same server to end.
    pub lock: Duration,
    /// How long a server stopped through lame duck may take to leave by itself before it is
    /// ended ([`Bounds::with_lame_duck`]).
    pub lame_duck: Duration,
}

impl Bounds {
    pub fn from_ready(ready: Duration) -> Bounds {
        let ready = ready.max(Duration::from_secs(1));
        Bounds {
            ready,
            validate: ready,
            pull: (ready * 10).max(Duration::from_secs(300)),
            compose: ready + Duration::from_secs(30),
            docker_call: Duration::from_secs(30),
            lock: ready * 2 + Duration::from_secs(120),
            lame_duck: Duration::from_secs(1),
        }
    }

    /// With `wait` for a server in lame duck to leave by itself.
    pub fn with_lame_duck(self, wait: Duration) -> Bounds {
        Bounds {
            lame_duck: wait,
            ..self
        }
    }

    /// The longest the apply script can run when every bound holds: the lock, a pull, a
    /// validation, then a start and a rollback (each a `compose up` and a readiness wait),
    /// and a few quick calls. Past this, natsup stops waiting for it.
    pub fn apply_total(&self) -> Duration {
        self.lock
            + self.pull
            + self.validate
            + (self.compose + self.ready) * 2
            // A recreate and its rollback each stop a server through lame duck: its wait, a
            // SIGINT's 10 s and a few calls.
            + (self.lame_duck + Duration::from_secs(10) + self.docker_call * 4) * 2
            + self.docker_call * 6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds::from_ready(Duration::from_secs(30))
    }

    #[test]
    fn every_bound_the_apply_script_reads_is_set() {
        let script = apply(
            "prod",
            "/srv/nats",
            "nats:2.10.21",
            Action::Reload,
            "",
            &bounds(),
        );
        for var in [
            "TIMEOUT",
            "VALIDATE_TIMEOUT",
            "PULL_TIMEOUT",
            "COMPOSE_TIMEOUT",
            "STEP_TIMEOUT",
            "LOCK_TIMEOUT",
            "LDM_WAIT",
        ] {
            assert!(script.contains(&format!("\n{var}='")), "{var} is not set");
            assert!(
                APPLY.contains(&format!("${var}")),
                "apply.sh never reads {var}"
            );
        }
        let b = bounds();
        assert_eq!(b.pull, Duration::from_secs(300));
        assert_eq!(
            b.lock,
            Duration::from_secs(180),
            "the wait apply.sh always had"
        );
        assert!(b.apply_total() > b.lock + b.pull + b.validate);
    }

    #[test]
    fn a_follow_up_carries_the_verdict_apply_sh_reads() {
        let b = bounds();
        let confirm = follow_up("d", "/d", "i", Action::Reload, "", &b, Verdict::Confirm);
        assert!(confirm.contains("\nACTION='confirm'\n"));
        let undo = follow_up("d", "/d", "i", Action::Recreate, "", &b, Verdict::Undo);
        assert!(undo.contains("\nACTION='undo-recreate'\n"));
        assert!(APPLY.contains("confirm) FOLLOW_UP=confirm"));
        assert!(APPLY.contains("undo-*) FOLLOW_UP=undo"));
    }

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
            let script = apply("prod", "/srv/nats", "nats:2.10.21", action, "", &bounds());
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

    /// The web-root responder run here with `sh`, as on a server, in a folder of its own.
    fn run_webroot(
        step: AcmeStep,
        webroot: &std::path::Path,
        tokens: &[String],
        stdin: &str,
    ) -> std::process::Output {
        use std::io::Write;
        let responder = Responder {
            mode: Http01Mode::Webroot,
            remote_dir: webroot.display().to_string(),
            port: 80,
            image: "busybox:1.36".into(),
            webroot: webroot.display().to_string(),
            name: "natsup-acme-t".into(),
            bounds: bounds(),
            lifetime: Duration::from_secs(600),
        };
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(acme(step, &responder, tokens))
            .env("HOME", webroot)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// natsup refuses a token that is not base64url before it reaches the server; acme.sh
    /// refuses it again before writing anything, and removes tokens one a line, never globbed.
    #[test]
    fn the_responder_script_writes_and_removes_only_base64url_tokens() {
        let top = tempfile::tempdir().unwrap();
        let webroot = top.path().join("site/www");
        std::fs::create_dir_all(&webroot).unwrap();
        std::fs::write(webroot.join("index.html"), "hello").unwrap();
        for token in ["../../../x", "a/b", "*", ".."] {
            let out = run_webroot(
                AcmeStep::Publish,
                &webroot,
                &[],
                &format!("ok-token k1\n{token} k2\n"),
            );
            assert_eq!(out.status.code(), Some(2), "{token}");
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("refused an ACME token"),
                "{token}"
            );
            // Checked before anything was written: not even the good token's file.
            assert!(!webroot.join(".well-known").exists(), "{token}");
            assert!(!top.path().join("site/x").exists(), "{token}");
        }
        // Removal: a `*` among the tokens globs nothing.
        let challenges = webroot.join(".well-known/acme-challenge");
        std::fs::create_dir_all(&challenges).unwrap();
        std::fs::write(challenges.join("keep"), "someone else's").unwrap();
        std::fs::write(challenges.join("ours"), "k").unwrap();
        let out = run_webroot(
            AcmeStep::Remove,
            &webroot,
            &["*".into(), "ours".into(), "../../index.html".into()],
            "",
        );
        assert!(out.status.success());
        assert!(challenges.join("keep").exists());
        assert!(!challenges.join("ours").exists());
        assert!(webroot.join("index.html").exists());
    }

    #[test]
    fn scripts_parse_under_sh() {
        let responder = Responder {
            mode: Http01Mode::Standalone,
            remote_dir: "nats bits".into(),
            port: 80,
            image: "busybox:1.36".into(),
            webroot: String::new(),
            name: "natsup-acme-t".into(),
            bounds: bounds(),
            lifetime: Duration::from_secs(600),
        };
        for script in [
            acme(AcmeStep::Preflight, &responder, &[]),
            acme(AcmeStep::Publish, &responder, &[]),
            acme(AcmeStep::Remove, &responder, &["a-b_c".into()]),
            observe("prod", "nats bits/'x'", 4222, Some(6222), None),
            apply(
                "prod",
                "/srv/nats",
                "nats:2.10.21",
                Action::Reload,
                "abc  docker-compose.yaml",
                &bounds(),
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
