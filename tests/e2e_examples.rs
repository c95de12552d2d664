//! The files in examples/ run as written (issue 5), against real servers deployed over the real
//! sshd into Docker: the GitHub Actions smoke check, the cron line and the systemd unit's
//! command; and the bevygap natsup.yaml loads.
//!
//! One substitution: the workflow's install step (`cargo install --git ...`) is replaced by
//! the binary this test suite built, put first on PATH.

use natsup_dev_support as support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::workspace::{Workspace, text};
use support::*;

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A folder holding only `natsup` (the built binary), for PATH.
fn bin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_natsup"), dir.path().join("natsup")).unwrap();
    dir
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs a workflow step's `run:` with bash -e, its `env:` filled from `secrets`.
fn run_step(step: &serde_yaml::Value, secrets: &BTreeMap<&str, String>, bin: &Path) -> Output {
    let script = step["run"].as_str().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg("-e")
        .arg("-c")
        .arg(script)
        .current_dir(empty.path())
        .env("PATH", path_with(bin))
        .env("HOME", empty.path())
        .env("NATSUP_STATE_DIR", empty.path().join("state"));
    // Nothing of the caller's NATS_* or NATSUP_* settings: the step's env below is all it gets.
    for var in support::workspace::FOREIGN_ENV {
        cmd.env_remove(var);
    }
    if let Some(env) = step["env"].as_mapping() {
        for (k, v) in env {
            let template = v.as_str().unwrap();
            let name = template
                .strip_prefix("${{ secrets.")
                .and_then(|s| s.strip_suffix(" }}"))
                .unwrap_or_else(|| panic!("env {k:?} is not a secret: {template}"));
            cmd.env(k.as_str().unwrap(), &secrets[name]);
        }
    }
    cmd.output().unwrap()
}

#[test]
fn the_github_actions_smoke_check_runs_as_written() {
    // The server, set up as in part 2: over the real sshd into Docker.
    let sshd = Sshd::start();
    let ws = Workspace::deployed("actions", &sshd);

    let workflow: serde_yaml::Value =
        serde_yaml::from_str(&example("github-actions-smoke.yml")).expect("the workflow is YAML");
    let steps = workflow["jobs"]["smoke"]["steps"].as_sequence().unwrap();
    let install = steps[0]["run"].as_str().unwrap();
    assert!(
        install.starts_with("cargo install") && install.ends_with(" natsup"),
        "{install}"
    );
    let check = &steps[1];
    assert!(check["run"].as_str().unwrap().starts_with("natsup verify"));

    // The secrets, made the way the workflow's header comment says.
    let out = ws.ok(&["env", "gameserver", "--format", "json", "--ca-contents"]);
    let env: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut secrets = BTreeMap::new();
    secrets.insert(
        "NATS_URL",
        format!("tls://{}", env["NATS_HOST"].as_str().unwrap()),
    );
    for key in ["NATS_USER", "NATS_PASSWORD", "NATS_CA_CONTENTS"] {
        secrets.insert(key, env[key].as_str().unwrap().to_string());
    }

    let bin = bin_dir();
    let out = run_step(check, &secrets, bin.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.starts_with("OK ") && line.contains("connect_time="),
        "{line}"
    );

    secrets.insert("NATS_PASSWORD", "rotated-away".into());
    let out = run_step(check, &secrets, bin.path());
    assert_eq!(
        out.status.code(),
        Some(2),
        "a wrong password must fail the job: {}",
        text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("CRITICAL"));
}

/// $HOME for the cron and systemd examples: ~/nats-deploy holds natsup.yaml for a server over
/// the real sshd, ~/.cargo/bin/natsup is the built binary, state in ~/.local/share/natsup.
struct Home {
    ws: Workspace,
    home: PathBuf,
}

fn home_with_deployment(sshd: &Sshd, name: &str) -> Home {
    let ws = Workspace::new(name);
    let home = ws.path().join("home");
    let deploy = home.join("nats-deploy");
    std::fs::create_dir_all(&deploy).unwrap();
    std::fs::create_dir_all(home.join(".cargo/bin")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_natsup"), home.join(".cargo/bin/natsup"))
        .unwrap();
    ws.init_ssh(name, sshd);
    std::fs::rename(ws.path().join("natsup.yaml"), deploy.join("natsup.yaml")).unwrap();
    Home { ws, home }
}

fn sh_as_cron(home: &Home, command: &str) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env_clear()
        .env("HOME", &home.home)
        .env("PATH", "/usr/bin:/bin")
        .env("NATSUP_STATE_DIR", home.ws.state_dir())
        // Where natsup keeps its SSH connection for the next run: the test's own, so that
        // the test closes it (cron would have none and use /tmp/natsup-UID).
        .env("XDG_RUNTIME_DIR", &home.ws.runtime.0);
    cmd.output().unwrap()
}

#[test]
fn the_cron_line_and_the_systemd_unit_converge_the_server() {
    let sshd = Sshd::start();
    let home = home_with_deployment(&sshd, "cron");

    let crontab = example("crontab.txt");
    let line = crontab
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[..5], ["23", "4", "*", "*", "1"], "{line}");
    let command = line[line.find("cd ").unwrap()..].to_string();
    assert!(
        command.contains("natsup") && command.contains(" up"),
        "{command:?}"
    );

    let out = sh_as_cron(&home, &command);
    assert!(out.status.success(), "{}", text(&out));
    let log = std::fs::read_to_string(home.home.join("natsup-up.log")).unwrap();
    assert!(log.contains("OK: 15 of 15 checks OK"), "{log}");
    let id = home.ws.project.container_id();
    let started = home.ws.project.started_at(&id);

    // The systemd unit runs the same command from its WorkingDirectory; %h is $HOME.
    let unit = example("natsup-up.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
            .replace("%h", &home.home.display().to_string())
    };
    assert_eq!(value("Type"), "oneshot");
    let out = sh_as_cron(
        &home,
        &format!(
            "cd '{}' && {}",
            value("WorkingDirectory"),
            value("ExecStart")
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        home.ws.project.started_at(&id),
        started,
        "a weekly run restarted the server"
    );

    // The timer's calendar spec is one systemd understands.
    let timer = example("natsup-up.timer");
    let calendar = timer
        .lines()
        .find_map(|l| l.strip_prefix("OnCalendar="))
        .unwrap();
    run(Command::new("systemd-analyze").args(["calendar", calendar]));
}

#[test]
fn the_bevygap_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bevygap.natsup.yaml");
    let config = natsup::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.name, "bevygap");
    let users: Vec<_> = config.users.iter().map(|u| u.name.as_str()).collect();
    for user in ["matchmaker", "matchmaker_httpd", "gameserver", "webhook"] {
        assert!(users.contains(&user), "{users:?}");
    }
    let node = &config.nodes()[0];
    assert!(config.sans(node).contains(&node.host));
}
