//! A natsup user's working folder: natsup.yaml, the state directory and the remote_dir the
//! server side uses, all in one temp dir, and the built binary run inside it with nothing from
//! the caller's environment leaking in.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{ComposeProject, RuntimeDir, Sshd, free_port, test_image, unique_name, untimed};

pub struct Workspace {
    /// Closes the SSH masters natsup left open for its next run, when the test ends (first:
    /// fields drop in order, and `dir` holds their sockets).
    pub runtime: RuntimeDir,
    pub dir: tempfile::TempDir,
    /// The absolute remote_dir (on this machine: sshd and Docker run here).
    pub remote_dir: PathBuf,
    pub port: u16,
    /// Removes the deployment's containers by id when the test ends, pass or fail.
    pub project: ComposeProject,
}

/// The env a natsup run must not inherit from the developer's shell (the bench's runs too).
pub const FOREIGN_ENV: [&str; 8] = [
    "NATS_URL",
    "NATS_USER",
    "NATS_PASSWORD",
    "NATS_CA",
    "NATS_CA_CONTENTS",
    "NATSUP_CONFIG",
    "NATSUP_FAILPOINT",
    "NATSUP_SSH_PERSIST",
];

impl Workspace {
    pub fn new(prefix: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        let remote_dir = dir.path().join("server").join(unique_name(prefix));
        Workspace {
            project: ComposeProject::new(&remote_dir),
            runtime: RuntimeDir::new(dir.path()),
            remote_dir,
            port: free_port(),
            dir,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// `natsup ARGS` in this folder, with its own state dir, home and nats context dir.
    pub fn natsup(&self) -> Command {
        let mut cmd = Command::new(super::natsup_bin());
        cmd.current_dir(self.path())
            .env("NATSUP_STATE_DIR", self.state_dir())
            .env("HOME", self.path().join("home"))
            .env("XDG_CONFIG_HOME", self.path().join("xdg"))
            .env("XDG_RUNTIME_DIR", &self.runtime.0)
            .env("NO_COLOR", "1");
        for var in FOREIGN_ENV {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs natsup and returns its output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.natsup().args(args).output().expect("run natsup")
    }

    /// Runs natsup, killed (by pid) if it outlives `limit`, and then panics saying so; its
    /// wall time and output, whatever the exit code.
    pub fn run_within(
        &self,
        args: &[&str],
        limit: std::time::Duration,
    ) -> (std::time::Duration, Output) {
        use std::process::Stdio;
        let mut cmd = self.natsup();
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = std::time::Instant::now();
        let child = cmd.spawn().expect("spawn natsup");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(limit) {
            Ok(out) => (started.elapsed(), out.expect("natsup output")),
            Err(_) => {
                // SAFETY: a signal to the child this workspace spawned, by its pid.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                panic!("natsup {args:?} took longer than {limit:?}: killed");
            }
        }
    }

    /// Runs natsup and panics with its output unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "natsup {args:?} failed ({}):\n{}",
            out.status,
            text(&out)
        );
        out
    }

    /// `natsup verify ARGS`, graded on whether the server works (see [`super::UNTIMED`]);
    /// panics with its output unless every check passes.
    pub fn verify(&self, args: &[&str]) -> Output {
        self.ok(&untimed(&[&["verify"][..], args].concat()))
    }

    /// `natsup init` for a server on 127.0.0.1 at this workspace's port, with the test image.
    pub fn init_args(&self, name: &str) -> Vec<String> {
        [
            "init",
            "--name",
            name,
            "--host",
            "127.0.0.1",
            "--bind",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--image",
            &test_image(),
            "--remote-dir",
            &self.remote_dir.display().to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    pub fn init_local(&self, name: &str) {
        let args = self.init_args(name);
        self.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// A workspace whose deployment `name` is already up on the server behind `sshd`.
    pub fn deployed(name: &str, sshd: &Sshd) -> Workspace {
        let ws = Workspace::new(name);
        ws.init_ssh(name, sshd);
        ws.ok(&["up"]);
        ws
    }

    pub fn init_ssh(&self, name: &str, sshd: &Sshd) {
        let mut args = self.init_args(name);
        args.extend([
            "--ssh".to_string(),
            sshd.destination(),
            "--identity".to_string(),
            sshd.identity().display().to_string(),
            "--known-hosts".to_string(),
            sshd.known_hosts().display().to_string(),
        ]);
        self.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    pub fn config(&self) -> String {
        std::fs::read_to_string(self.path().join("natsup.yaml")).expect("read natsup.yaml")
    }

    pub fn set_config(&self, yaml: &str) {
        std::fs::write(self.path().join("natsup.yaml"), yaml).expect("write natsup.yaml");
    }

    /// Edits natsup.yaml: replaces `from` (which must be there) with `to`.
    pub fn edit_config(&self, from: &str, to: &str) {
        let yaml = self.config();
        assert!(yaml.contains(from), "natsup.yaml has no {from:?}:\n{yaml}");
        self.set_config(&yaml.replacen(from, to, 1));
    }

    /// A user's credentials as natsup hands them out (`natsup env USER --format json`): its
    /// NATS_USER and NATS_PASSWORD.
    pub fn login(&self, user: &str) -> Login {
        let out = self.ok(&["env", user, "--format", "json"]);
        let env: serde_json::Value = serde_json::from_slice(&out.stdout).expect("env json");
        let ca = env["NATS_CA"].as_str().expect("NATS_CA");
        Login {
            // NATS_USER, not the user's name: after a rotation with a grace period the new
            // password has a login of its own.
            user: env["NATS_USER"].as_str().expect("NATS_USER").into(),
            password: env["NATS_PASSWORD"].as_str().expect("NATS_PASSWORD").into(),
            ca_pem: std::fs::read_to_string(ca).expect("read NATS_CA"),
            port: self.port,
        }
    }

    /// The server's live nats-server.conf.
    /// Runs natsup stopped at failpoint `point` (`NATSUP_FAILPOINT`, exit 99): a crash there.
    pub fn crash_at(&self, point: &str, args: &[&str]) {
        let out = self
            .natsup()
            .env("NATSUP_FAILPOINT", point)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(99),
            "{point} was not reached:\n{}",
            text(&out)
        );
    }

    /// The passwords stored for `user` of deployment `name` (the system user's too): the
    /// current one, then a pending one if any.
    pub fn stored(&self, name: &str, user: &str) -> Vec<String> {
        let path = self.state_dir().join(name).join("secrets.yaml");
        let secrets: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let entry = if user == natsup::state::SYSTEM_USER {
            &secrets["system"]
        } else {
            &secrets["users"][user]
        };
        let mut passwords = vec![entry["password"].as_str().unwrap().to_string()];
        if let Some(p) = entry["pending"]["password"].as_str() {
            passwords.push(p.to_string());
        }
        passwords
    }

    /// Whether `user` logs in with `password` now.
    pub fn works(&self, user: &str, password: &str) -> bool {
        runtime()
            .block_on(self.login(user).with_password(password).connect())
            .is_ok()
    }

    pub fn live_conf(&self) -> String {
        std::fs::read_to_string(self.remote_dir.join("nats-config/nats-server.conf"))
            .expect("read the live nats-server.conf")
    }
}

/// stdout and stderr of a run, for assertion messages and substring checks.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What a NATS client needs to reach the deployment as one user.
#[derive(Clone, Debug)]
pub struct Login {
    pub user: String,
    pub password: String,
    pub ca_pem: String,
    pub port: u16,
}

impl Login {
    pub fn options(&self) -> async_nats::ConnectOptions {
        let tls = natsup::nats_client::client_tls(&self.ca_pem).expect("CA PEM");
        async_nats::ConnectOptions::with_user_and_password(self.user.clone(), self.password.clone())
            .require_tls(true)
            .tls_client_config(tls)
            .connection_timeout(std::time::Duration::from_secs(5))
    }

    pub fn url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port)
    }

    pub async fn connect(&self) -> Result<async_nats::Client, String> {
        let client = self
            .options()
            .connect(self.url())
            .await
            .map_err(|e| error_chain(&e))?;
        client.flush().await.map_err(|e| error_chain(&e))?;
        Ok(client)
    }

    /// With a different password (e.g. one that was just rotated away).
    pub fn with_password(&self, password: &str) -> Login {
        Login {
            password: password.to_string(),
            ..self.clone()
        }
    }

    /// Trusting a different CA PEM.
    pub fn trusting(&self, ca_pem: &str) -> Login {
        Login {
            ca_pem: ca_pem.to_string(),
            ..self.clone()
        }
    }
}

/// An error with its sources: async-nats puts the server's -ERR text in a source.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

/// A tokio runtime for tests (rustls' provider installed once, as natsup's main does).
pub fn runtime() -> tokio::runtime::Runtime {
    natsup::install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
