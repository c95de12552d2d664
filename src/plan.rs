//! Decides what `natsup up` must do: a pure function of the rendered bundle and what the
//! server reported. The same [`Plan`] is printed by `natsup plan` and `up --dry-run`, and run
//! by the executor in `deploy`.

use serde::Serialize;

use crate::observed::{Dir, Docker, Observed, PortRole};
use crate::render::{Bundle, COMPOSE_FILE, COMPOSE_MARK, CONF_FILE, sha256_hex};

/// What the running server goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Nothing to do.
    Nothing,
    /// New files only; the running server is already on their content.
    Files,
    /// SIGHUP: no restart, no client disconnected but those whose credentials changed.
    Reload,
    /// Create or start the container.
    Start,
    /// Recreate the container (a brief outage): for what nats-server cannot reload.
    Recreate,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Nothing => "nothing",
            Action::Files => "files",
            Action::Reload => "reload",
            Action::Start => "start",
            Action::Recreate => "recreate",
        }
    }

    /// What was done, for the one-line summary.
    pub fn done(self) -> &'static str {
        match self {
            Action::Nothing => "nothing to do",
            Action::Files => "restored files",
            Action::Reload => "reloaded",
            Action::Start => "started",
            Action::Recreate => "recreated",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Changed,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    pub path: String,
    pub change: Change,
    /// A unified diff with secrets redacted; none for keys and certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub action: Action,
    /// Why this action, in words.
    pub reasons: Vec<String>,
    /// Files that differ from what is on the server.
    pub files: Vec<FileChange>,
}

impl Plan {
    /// Reasons and changed files, one per line, with diffs if asked.
    pub fn describe(&self, with_diffs: bool) -> String {
        let mut out = String::new();
        for reason in &self.reasons {
            out.push_str(&format!("  - {reason}\n"));
        }
        for f in &self.files {
            out.push_str(&format!("  {:?} {}\n", f.change, f.path));
            if let (true, Some(diff)) = (with_diffs, &f.diff) {
                for line in diff.lines() {
                    out.push_str(&format!("    {line}\n"));
                }
            }
        }
        out
    }

    /// Whether the bundle must be sent.
    pub fn uploads(&self) -> bool {
        self.action != Action::Nothing
    }
}

/// Problems that stop a run before anything changes, with what to do about each.
pub fn preflight(observed: &Observed) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    match &observed.docker {
        Docker::Missing => problems.push((
            "docker is not installed on the server".into(),
            "install Docker Engine (https://docs.docker.com/engine/install/) and run again".into(),
        )),
        Docker::Denied => problems.push((
            "this SSH user cannot use docker".into(),
            "add the user to the docker group (`sudo usermod -aG docker USER`, then log in again), \
             connect as root, or allow passwordless sudo for docker"
                .into(),
        )),
        Docker::Usable { .. } if observed.compose.is_none() => problems.push((
            "neither `docker compose` nor `docker-compose` is installed on the server".into(),
            "install the Docker Compose plugin (docker-compose-plugin) and run again".into(),
        )),
        Docker::Usable { .. } => {}
    }
    if let Some(path) = &observed.unsafe_dir {
        problems.push((path.message(), path.hint()));
    }
    match observed.dir {
        Dir::Readonly | Dir::Unwritable => problems.push((
            "the deployment directory on the server is not writable by this user".into(),
            "fix its ownership, or choose another remote_dir in natsup.yaml".into(),
        )),
        Dir::Writable | Dir::Absent => {}
    }
    if let Some(what) = foreign_project(observed) {
        problems.push((
            format!(
                "{} holds a Compose project natsup did not make ({what})",
                observed
                    .dir_abs
                    .as_deref()
                    .unwrap_or("the deployment directory")
            ),
            "natsup does not take over what it did not make: stop that project there \
             (`docker compose down`) and move its compose file away, or choose another \
             remote_dir in natsup.yaml"
                .into(),
        ));
    }
    for taken in &observed.ports_taken {
        let (what, field) = match taken.role {
            PortRole::Client => ("client port", "`port`"),
            PortRole::Route => ("route port", "`cluster.port`"),
        };
        problems.push((
            format!(
                "the {what} {} is already taken on the server by {}",
                taken.port, taken.holder
            ),
            format!("stop it, or choose another {field} in natsup.yaml"),
        ));
    }
    problems
}

/// What shows that the deployment directory holds a Compose project natsup did not make:
/// nothing of natsup's there (its `.natsup/`, or its mark in docker-compose.yaml), and yet a
/// compose file or a container made from the folder. `up` would overwrite that project's
/// file and replace its container.
fn foreign_project(observed: &Observed) -> Option<String> {
    let p = &observed.projects;
    let marked = observed
        .content(COMPOSE_FILE)
        .is_some_and(|c| String::from_utf8_lossy(c).contains(COMPOSE_MARK));
    if p.marker || marked {
        return None;
    }
    let mut what: Vec<String> = Vec::new();
    if observed.content(COMPOSE_FILE).is_some() {
        what.push(COMPOSE_FILE.into());
    }
    what.extend(p.other_files.iter().cloned());
    for project in p
        .adopted()
        .into_iter()
        .chain(p.others.iter().map(String::as_str))
    {
        what.push(format!("containers of project `{project}`"));
    }
    (!what.is_empty()).then(|| what.join(", "))
}

/// The least disruptive action that makes the server run `bundle`.
pub fn plan(bundle: &Bundle, observed: &Observed) -> Plan {
    let mut files = Vec::new();
    for file in &bundle.files {
        let change = if file.path.ends_with(".pem") {
            match observed.pem_sha256.get(&file.path) {
                None => Some(Change::Added),
                Some(h) if *h != sha256_hex(&file.contents) => Some(Change::Changed),
                Some(_) => None,
            }
        } else {
            match observed.content(&file.path) {
                None => Some(Change::Added),
                Some(old) if old != file.contents.as_slice() => Some(Change::Changed),
                Some(_) => None,
            }
        };
        if let Some(change) = change {
            let diff = (!file.path.ends_with(".pem")).then(|| {
                let old = observed.content(&file.path).unwrap_or_default();
                redacted_diff(&file.path, old, &file.contents)
            });
            files.push(FileChange {
                path: file.path.clone(),
                change,
                diff,
            });
        }
    }

    // What the server runs now: the last confirmed files, or the live ones for a deployment
    // natsup has not applied before.
    let applied = |path: &str| {
        let name = path.rsplit('/').next().unwrap_or(path);
        observed
            .content(&format!(".natsup/applied/{name}"))
            .or_else(|| observed.content(path))
    };
    let want = |path: &str| {
        bundle
            .get(path)
            .map(|f| f.contents.as_slice())
            .unwrap_or_default()
    };
    let mut reasons = Vec::new();

    let action = match &observed.container {
        None => {
            reasons.push("no nats container exists yet".into());
            Action::Start
        }
        Some(c) if !c.running() => {
            reasons.push(format!("the container is {}", c.status));
            if applied(COMPOSE_FILE) != Some(want(COMPOSE_FILE)) {
                Action::Recreate
            } else {
                Action::Start
            }
        }
        Some(_) => {
            let conf_now = applied(CONF_FILE).unwrap_or_default();
            if applied(COMPOSE_FILE) != Some(want(COMPOSE_FILE)) {
                reasons.extend(compose_reasons(
                    applied(COMPOSE_FILE).unwrap_or_default(),
                    want(COMPOSE_FILE),
                ));
                Action::Recreate
            } else if conf_now != want(CONF_FILE) {
                let (old, new) = (
                    String::from_utf8_lossy(conf_now),
                    String::from_utf8_lossy(want(CONF_FILE)),
                );
                if static_settings(&old) != static_settings(&new) {
                    reasons.push(
                        "listen, JetStream limits or the lame-duck window changed, which nats-server cannot reload"
                            .into(),
                    );
                    Action::Recreate
                } else {
                    if !old.contains(SYSTEM_ACCOUNT) && new.contains(SYSTEM_ACCOUNT) {
                        reasons.push(
                            "the server gets natsup's system account (`$SYS`, with natsup's own \
                             user: `status` reads each server's figures with it, and `up` \
                             removes a node from the JetStream meta group with it); the users \
                             stay in the global account, and a reload adds it with no client \
                             disconnected"
                                .into(),
                        );
                    }
                    reasons.push(
                        "users, passwords, permissions or TLS files changed: a reload applies them"
                            .into(),
                    );
                    Action::Reload
                }
            } else if !files.is_empty() {
                reasons.push(
                    "files on the server differ from what the server runs; restoring them".into(),
                );
                Action::Files
            } else {
                Action::Nothing
            }
        }
    };
    if action == Action::Nothing {
        reasons.push("the server already runs this configuration".into());
    }
    Plan {
        action,
        reasons,
        files,
    }
}

/// The line of a rendered nats-server.conf that gives the server natsup's system account.
const SYSTEM_ACCOUNT: &str = "\"$SYS\": {";

/// `stop_signal: SIGUSR2` in the rendered compose file: what shows that a container stops
/// through lame duck.
const LAME_DUCK_STOP: &str = "stop_signal: SIGUSR2";

/// Why a changed docker-compose.yaml recreates the container, in words: the image change as
/// nats-server versions, the one-time adoption of lame-duck stops, or the rest.
fn compose_reasons(old: &[u8], new: &[u8]) -> Vec<String> {
    let (old, new) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    let mut reasons = Vec::new();
    let (old_image, new_image) = (compose_image(&old), compose_image(&new));
    if let (Some(a), Some(b)) = (&old_image, &new_image)
        && a != b
    {
        reasons.push(format!(
            "{}: the container is recreated on the new image",
            crate::upgrade::describe(a, b)
        ));
        match crate::upgrade::judge(a, b) {
            crate::upgrade::Verdict::Safe => {}
            crate::upgrade::Verdict::Warn(why) => reasons.push(format!("warning: {why}")),
            crate::upgrade::Verdict::Refuse(why) => {
                reasons.push(format!("`natsup up` refuses this: {why}"))
            }
        }
    }
    if !old.contains(LAME_DUCK_STOP) && new.contains(LAME_DUCK_STOP) {
        reasons.push(
            "docker-compose.yaml now stops the server through lame duck (stop_signal: SIGUSR2, \
             and a stop_grace_period past the lame-duck window), so that any stop, natsup's, \
             `docker compose down` or a reboot, warns clients and moves JetStream leaders first; \
             a container takes this only when it is created, so it is recreated once, and this \
             recreate already goes through lame duck"
                .into(),
        );
    }
    let rest = |c: &str| {
        c.lines()
            .filter(|l| {
                let t = l.trim_start();
                !t.starts_with("image:") && !t.starts_with("stop_") && !t.starts_with('#')
            })
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    if rest(&old) != rest(&new) {
        reasons.push("docker-compose.yaml changed (image, port or bind)".into());
    } else if reasons.is_empty() {
        reasons.push(
            "the lame-duck window changed: Docker's stop_grace_period follows it, and a \
             container takes it only when it is created"
                .into(),
        );
    }
    reasons
}

/// The `image:` of the nats service in a compose file natsup rendered (single-quoted YAML).
pub fn compose_image(compose: &str) -> Option<String> {
    let line = compose
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("image:"))?
        .trim();
    let unquoted = match line.strip_prefix('\'').and_then(|l| l.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None => line.trim_matches('"').to_string(),
    };
    Some(unquoted)
}

/// The parts of nats-server.conf that a reload cannot change: `listen` (host and port) and
/// the `jetstream` block (`store_dir`; and on 2.10.x, changing `max_memory_store` or
/// `max_file_store` fails the reload with only a log line, so it needs a restart).
/// A cluster node's `server_name` and route `listen` are as static.
fn static_settings(conf: &str) -> (Vec<&str>, Vec<&str>) {
    let listen = conf
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            // nats-server's reload knows no lame-duck option: a change fails the reload.
            t.starts_with("listen") || t.starts_with("server_name") || t.starts_with("lame_duck")
        })
        .collect();
    let mut jetstream = Vec::new();
    let mut inside = false;
    for line in conf.lines() {
        let t = line.trim();
        if t.starts_with("jetstream") {
            inside = true;
        }
        if inside {
            jetstream.push(t);
            if t == "}" {
                inside = false;
            }
        }
    }
    (listen, jetstream)
}

/// A unified diff in which every password (hash) is shown as `[REDACTED <hash of the line>]`,
/// so a changed password still shows as a changed line.
pub fn redacted_diff(path: &str, old: &[u8], new: &[u8]) -> String {
    let redact = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .map(|l| redact_route_url(&redact_line(l)))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    let (old, new) = (redact(old), redact(new));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(2)
        .header(&format!("server/{path}"), &format!("natsup/{path}"))
        .to_string()
}

/// Keys whose value is a secret. nats-server reads keys case-insensitively and takes `pass` as
/// `password` (its `server/opts.go`, `parseUsers`: `switch strings.ToLower(k)` ...
/// `case "pass", "password"`); `token` is the `authorization` block's single-secret login.
const SECRET_KEYS: [&str; 3] = ["password", "pass", "token"];

/// One line with everything after its first secret key redacted. A key counts wherever the
/// text around it could make it one: alone or quoted (`"password": ...`, JSON), and followed by
/// any separator nats-server's config accepts (`:`, `=`, or only spaces). A line the server
/// would not read as a key (a comment, say) may be redacted too: showing less is the safe way.
/// A cluster's route URL carries the route password: `nats-route://user:[REDACTED ..]@host`.
fn redact_route_url(line: &str) -> String {
    let Some(i) = line.find("nats-route://") else {
        return line.to_string();
    };
    let start = i + "nats-route://".len();
    match line[start..].find('@') {
        Some(at) => format!(
            "{}[REDACTED {}]{}",
            &line[..start],
            &sha256_hex(line.as_bytes())[..8],
            &line[start + at..]
        ),
        None => line.to_string(),
    }
}

fn redact_line(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find(['p', 't']) {
        let i = from + at;
        from = i + 1;
        let starts_word = lower[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        if !starts_word {
            continue;
        }
        let Some(key) = SECRET_KEYS.iter().find(|k| lower[i..].starts_with(*k)) else {
            continue;
        };
        let mut j = i + key.len();
        // A quoted key: `"password"` or `'password'`.
        if let Some(q @ ('"' | '\'')) = lower[..i].chars().next_back() {
            if !lower[j..].starts_with(q) {
                continue;
            }
            j += 1;
        }
        let rest = &lower[j..];
        let value = rest.trim_start_matches([' ', '\t']);
        let value = value.strip_prefix([':', '=']).unwrap_or(value);
        let value = value.trim_start_matches([' ', '\t']);
        let separated = rest.starts_with([':', '=', ' ', '\t']);
        if !separated || value.is_empty() {
            continue;
        }
        let kept = line.len() - value.len();
        return format!(
            "{}[REDACTED {}]",
            &line[..kept],
            &sha256_hex(line.as_bytes())[..8]
        );
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way a config text can hold a password or token (issue 11, 4.6 d).
    #[test]
    fn every_way_of_writing_a_password_is_redacted() {
        let secret = "hunter2-$2b$04$abcdefghijklmnopqrstuv";
        let table = [
            ("      password: \"@\"", "      password: "),
            ("password:\"@\"", "password:"),
            ("password = \"@\"", "password = "),
            ("password=@", "password="),
            ("password @", "password "),
            ("PASSWORD: @", "PASSWORD: "),
            ("  pass: @", "  pass: "),
            ("pass = '@'", "pass = "),
            ("  \"password\": \"@\",", "  \"password\": "),
            (
                "{\"user\":\"a\",\"password\":\"@\"}",
                "{\"user\":\"a\",\"password\":",
            ),
            ("'pass': '@'", "'pass': "),
            (
                "{user: a, password: @}, {user: b, password: @}",
                "{user: a, password: ",
            ),
            ("{user: a, pass: \"@\"}", "{user: a, pass: "),
            ("authorization { token: \"@\" }", "authorization { token: "),
            ("\tpassword\t\"@\"", "\tpassword\t"),
            ("# password: @", "# password: "),
        ];
        let redacted = |line: &str| {
            let line = line.replace('@', secret);
            let out = redact_line(&line);
            (line, out)
        };
        let leaks: Vec<_> = table
            .iter()
            .map(|(line, _)| redacted(line))
            .filter(|(_, out)| out.contains("hunter2"))
            .collect();
        assert!(leaks.is_empty(), "leaked: {leaks:#?}");
        for (line, kept) in table {
            let (line, out) = redacted(line);
            assert!(
                out.starts_with(kept) && out[kept.len()..].starts_with("[REDACTED "),
                "{line:?} -> {out:?}"
            );
        }
    }

    #[test]
    fn lines_without_a_secret_are_kept() {
        for line in [
            "# Passwords are bcrypt hashes; the plaintext lives only in natsup's local state.",
            "      user: \"passenger\"",
            "  bypass: true",
            "  passwords_file: x",
            "  password:",
            "    image: nats:2.10.21",
            "port: 4222",
        ] {
            assert_eq!(redact_line(line), line);
        }
    }

    #[test]
    fn a_changed_password_is_a_changed_line() {
        let diff = redacted_diff("c.conf", b"password: \"a\"\n", b"password: \"b\"\n");
        assert!(diff.contains("-password: [REDACTED "), "{diff}");
        assert!(diff.contains("+password: [REDACTED "), "{diff}");
        assert!(!diff.contains("\"a\"") && !diff.contains("\"b\""), "{diff}");
    }
}
