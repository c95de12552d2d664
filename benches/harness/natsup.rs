//! natsup, driven through its built (release) binary the way a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::SshEndpoint;
use crate::support::{self, ComposeProject, RuntimeDir, free_port, unique_name};
use support::workspace::FOREIGN_ENV;

pub struct NatsupDeployment {
    /// natsup's SSH masters live here; dropped (and closed) before `work`, which holds them.
    runtime: RuntimeDir,
    work: tempfile::TempDir,
    pub port: u16,
    pub project: ComposeProject,
    /// The natsup binary this deployment is run with, `init` included.
    bin: PathBuf,
}

/// The binary under test: `NATSUP_BIN` (bench.sh points it at the release build), else the
/// one cargo built beside this benchmark.
pub fn natsup_bin() -> PathBuf {
    std::env::var_os("NATSUP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(support::natsup_bin)
}

impl NatsupDeployment {
    /// `natsup init` for a deployment over the test sshd, published on 127.0.0.1.
    pub fn new(ssh: &SshEndpoint, image: &str) -> NatsupDeployment {
        NatsupDeployment::with_bin(ssh, image, &natsup_bin())
    }

    /// As [`new`](Self::new), run with the natsup binary `bin` (another build, to compare).
    pub fn with_bin(ssh: &SshEndpoint, image: &str, bin: &Path) -> NatsupDeployment {
        let work = tempfile::tempdir().expect("tempdir");
        let remote_dir = work.path().join("server").join(unique_name("natsup"));
        let port = free_port();
        let deployment = NatsupDeployment {
            project: ComposeProject::new(&remote_dir),
            runtime: RuntimeDir::new(work.path()),
            work,
            port,
            bin: bin.to_path_buf(),
        };
        deployment.run_ok(&[
            "init",
            "--name",
            &unique_name("bench"),
            "--host",
            "127.0.0.1",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--image",
            image,
            "--remote-dir",
            &remote_dir.display().to_string(),
            "--ssh",
            &ssh.destination(),
            "--identity",
            &ssh.identity.display().to_string(),
            "--known-hosts",
            &ssh.known_hosts.display().to_string(),
        ]);
        deployment
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(self.work.path())
            .env("NATSUP_STATE_DIR", self.work.path().join("state"))
            .env("XDG_RUNTIME_DIR", &self.runtime.0)
            .env("NO_COLOR", "1")
            .args(args);
        for var in FOREIGN_ENV {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs natsup, panics if it fails, and returns its wall time and output.
    pub fn run_ok(&self, args: &[&str]) -> (Duration, Output) {
        self.timed(self.command(args), args)
    }

    /// As [`run_ok`](Self::run_ok), on a connection of its own: no master of an earlier run
    /// is reused, and none is left open (`NATSUP_SSH_PERSIST=0`).
    pub fn run_cold(&self, args: &[&str]) -> (Duration, Output) {
        let mut cmd = self.command(args);
        cmd.env("NATSUP_SSH_PERSIST", "0");
        self.timed(cmd, args)
    }

    /// Runs natsup and returns its wall time and output, whether it succeeded or not (at scale,
    /// an operation failing is a result to report).
    pub fn run(&self, args: &[&str]) -> (Duration, Output) {
        let started = Instant::now();
        let out = self.command(args).output().expect("run natsup");
        (started.elapsed(), out)
    }

    fn timed(&self, mut cmd: Command, args: &[&str]) -> (Duration, Output) {
        let started = Instant::now();
        let out = cmd.output().expect("run natsup");
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "natsup {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (took, out)
    }

    /// Adds a user to natsup.yaml (a change `up` applies by reload).
    pub fn add_user(&self, name: &str) {
        let path = self.work.path().join("natsup.yaml");
        let yaml = std::fs::read_to_string(&path).expect("read natsup.yaml");
        let yaml = yaml.replace(
            "- name: webhook\n",
            &format!("- name: webhook\n- name: {name}\n"),
        );
        std::fs::write(&path, yaml).expect("write natsup.yaml");
    }

    /// Appends top-level keys to natsup.yaml (e.g. `auth:` before the first `up`).
    pub fn append_config(&self, yaml: &str) {
        let path = self.work.path().join("natsup.yaml");
        let mut text = std::fs::read_to_string(&path).expect("read natsup.yaml");
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(yaml);
        std::fs::write(&path, text).expect("write natsup.yaml");
    }

    /// Replaces `from` by `to` in natsup.yaml (e.g. the image), panicking if `from` is not there.
    pub fn edit_config(&self, from: &str, to: &str) {
        let path = self.work.path().join("natsup.yaml");
        let text = std::fs::read_to_string(&path).expect("read natsup.yaml");
        assert!(text.contains(from), "natsup.yaml has no {from:?}:\n{text}");
        std::fs::write(&path, text.replace(from, to)).expect("write natsup.yaml");
    }

    /// A user's password as natsup hands it out (`natsup env USER --format json`).
    pub fn password(&self, user: &str) -> String {
        let (_, out) = self.run_ok(&["env", user, "--format", "json"]);
        let env: serde_json::Value = serde_json::from_slice(&out.stdout).expect("env json");
        env["NATS_PASSWORD"]
            .as_str()
            .expect("NATS_PASSWORD")
            .to_string()
    }

    pub fn ca_pem(&self) -> String {
        let (_, out) = self.run_ok(&["ca", "path"]);
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }
}
