//! Where natsup touches the server: a [`Remote`] runs a shell script there, with bytes on
//! stdin. [`SshRemote`] goes over one SSH master connection (the openssh crate driving the
//! system `ssh`, so `~/.ssh/config`, agents and ProxyJump work); [`LocalRemote`] runs on this
//! machine for `up --local`. Scripts carry no secret: secrets travel on stdin only.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use tokio::io::AsyncWriteExt;

use crate::config::{HostKeyPolicy, SshConfig};
use crate::error::{Error, Result};
use crate::ssh_master;

/// What a script printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

pub trait Remote {
    /// Runs `script` with `sh -c`, feeding `stdin`. `step` names it in errors and logs.
    fn run(
        &mut self,
        step: &str,
        script: &str,
        stdin: &[u8],
    ) -> impl std::future::Future<Output = Result<Output>>;
    /// `user@host` or `local`, for messages.
    fn describe(&self) -> String;
    /// Remote commands run so far (each is one round trip).
    fn commands(&self) -> usize;
    /// Ends the session (the SSH master must be closed explicitly; Drop only tries).
    fn close(self) -> impl std::future::Future<Output = ()>
    where
        Self: Sized,
    {
        async {}
    }
}

pub struct SshRemote {
    session: Option<Session>,
    target: SshTarget,
    /// How long the master stays open after the run (see [`crate::ssh_master`]).
    persist: Duration,
    /// Where this target's masters wait for the next run; `None` closes it at the end.
    folder: Option<PathBuf>,
    /// Picked up from an earlier run rather than opened by this one.
    reused: bool,
    commands: usize,
}

/// How to reach the server, from the config plus command-line overrides.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub destination: String,
    pub port: Option<u16>,
    pub identity: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub policy: HostKeyPolicy,
}

impl SshTarget {
    pub fn from_config(ssh: &SshConfig, accept_new_host_key: bool) -> SshTarget {
        SshTarget {
            destination: ssh.destination.clone(),
            port: ssh.port,
            identity: ssh.identity.clone(),
            known_hosts: ssh.known_hosts.clone(),
            policy: if accept_new_host_key {
                HostKeyPolicy::AcceptNew
            } else {
                ssh.host_key_policy
            },
        }
    }
}

impl SshRemote {
    /// Opens the one SSH master connection this run uses, or picks up the one an earlier run
    /// on the same target left open (see [`crate::ssh_master`]).
    pub async fn connect(target: &SshTarget) -> Result<SshRemote> {
        let persist = ssh_master::persist()?;
        let folder = if persist.is_zero() {
            None
        } else {
            ssh_master::folder_for(target)
        };
        let kept = match &folder {
            Some(folder) => ssh_master::resume(folder).await,
            None => None,
        };
        let reused = kept.is_some();
        let session = match kept {
            Some(session) => {
                tracing::info!(
                    "{}: reusing the SSH connection of an earlier run",
                    target.destination
                );
                session
            }
            None => launch(target, persist, folder.as_deref()).await?,
        };
        Ok(SshRemote {
            session: Some(session),
            target: target.clone(),
            persist,
            folder,
            reused,
            commands: 0,
        })
    }

    /// A master that was alive when checked can still have lost its TCP connection (the
    /// server rebooted within the persist window): then the first command fails before it
    /// starts, and one new connection is opened in its place.
    async fn reconnect(&mut self) -> Result<()> {
        if let Some(stale) = self.session.take() {
            ssh_master::close(stale).await;
        }
        self.session = Some(launch(&self.target, self.persist, self.folder.as_deref()).await?);
        self.reused = false;
        Ok(())
    }

    /// Whether this run picked up an earlier run's connection instead of opening one.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// The control socket of the master, so tests can cut the connection mid-run.
    pub fn control_socket(&self) -> Option<PathBuf> {
        self.session
            .as_ref()
            .map(|s| s.control_socket().to_path_buf())
    }
}

/// Opens a master connection: strict host keys unless told otherwise, no prompts, and an
/// idle timeout so that it never outlives its use by long.
async fn launch(target: &SshTarget, persist: Duration, folder: Option<&Path>) -> Result<Session> {
    let mut b = SessionBuilder::default();
    b.known_hosts_check(match target.policy {
        HostKeyPolicy::Strict => KnownHosts::Strict,
        // accept-new: a first contact is recorded; a changed key is still refused.
        HostKeyPolicy::AcceptNew => KnownHosts::Add,
    })
    .connect_timeout(Duration::from_secs(15))
    .server_alive_interval(Duration::from_secs(15))
    // Idle for this long, the master exits. The crate's default keeps it forever, and a
    // natsup that is killed or interrupted (Ctrl-C runs no Drop) would leave an ssh process
    // here and a session on the server each time. A run never idles for 30 s.
    .control_persist(ControlPersist::IdleFor(idle_secs(persist)))
    .control_directory(folder.map_or_else(ssh_master::runtime_dir, Path::to_path_buf));
    if let Some(port) = target.port {
        b.port(port);
    }
    if let Some(key) = &target.identity {
        b.keyfile(key);
    }
    if let Some(kh) = &target.known_hosts {
        b.user_known_hosts_file(kh);
    }
    b.connect(&target.destination)
        .await
        .map_err(|e| ssh_error(target, e))
}

/// ssh counts ControlPersist in whole seconds, so a part of one rounds up (`500ms` is 1 s, not
/// 0, which would mean "forever"). With persistence off, the master is closed at the end of the
/// run, and the idle timeout only matters for a run that was killed.
fn idle_secs(persist: Duration) -> std::num::NonZeroUsize {
    let secs = if persist.is_zero() {
        30
    } else {
        persist.as_secs_f64().ceil() as usize
    };
    std::num::NonZeroUsize::new(secs).expect("a duration over zero rounds up to at least 1 s")
}

/// Turns ssh's own stderr into one sentence and a next step.
fn ssh_error(target: &SshTarget, e: openssh::Error) -> Error {
    let text = {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(inner) = src {
            s = format!("{s}: {inner}");
            src = inner.source();
        }
        s
    };
    let lower = text.to_ascii_lowercase();
    let (message, hint) = if lower.contains("remote host identification has changed")
        || lower.contains("host key for") && lower.contains("has changed")
    {
        (
            "the server's host key has CHANGED since it was recorded in known_hosts".to_string(),
            "this can mean a reinstalled server or an attack; confirm the new key out of band, \
             then remove the old one with `ssh-keygen -R HOST` (natsup never accepts a changed key)"
                .to_string(),
        )
    } else if lower.contains("host key verification failed")
        || lower.contains("no host key is known")
    {
        (
            "the server's host key is not in known_hosts".to_string(),
            "if this is your first connection to this server, check its fingerprint and run again \
             with --accept-new-host-key (or set ssh.host_key_policy: accept-new)"
                .to_string(),
        )
    } else if lower.contains("permission denied") {
        (
            "the server refused the SSH key".to_string(),
            match &target.identity {
                Some(k) => format!(
                    "check that {} is authorized for this user on the server (authorized_keys)",
                    k.display()
                ),
                None => "set ssh.identity in natsup.yaml (or --identity at init), or load the key into ssh-agent".to_string(),
            },
        )
    } else if lower.contains("connection refused")
        || lower.contains("timed out")
        || lower.contains("could not resolve")
    {
        (
            text.clone(),
            "check the host and port, and that sshd is running and reachable".to_string(),
        )
    } else {
        (
            text.clone(),
            "run `ssh` with the same destination by hand to see more".to_string(),
        )
    };
    Error::Ssh {
        destination: target.destination.clone(),
        message,
        hint: Some(hint),
    }
}

impl Remote for SshRemote {
    async fn run(&mut self, step: &str, script: &str, stdin: &[u8]) -> Result<Output> {
        let first = self.commands == 0;
        self.commands += 1;
        match self.run_once(step, script, stdin).await {
            // Only a read-only first command (no upload on stdin) is safe to run twice.
            Err(e) if first && self.reused && stdin.is_empty() => {
                tracing::info!(
                    "{}: the earlier run's connection is gone ({e}); reconnecting",
                    self.target.destination
                );
                self.reconnect().await?;
                self.run_once(step, script, stdin).await
            }
            result => result,
        }
    }

    fn describe(&self) -> String {
        self.target.destination.clone()
    }

    fn commands(&self) -> usize {
        self.commands
    }

    /// Leaves the master open for the next run, or closes it (Drop would only try
    /// `ssh -O exit`, FACTS.md).
    async fn close(mut self) {
        if let Some(s) = self.session.take() {
            if self.folder.is_some() {
                // It exits by itself once idle for NATSUP_SSH_PERSIST seconds.
                let _ = s.detach();
            } else {
                ssh_master::close(s).await;
            }
        }
    }
}

impl SshRemote {
    async fn run_once(&self, step: &str, script: &str, stdin: &[u8]) -> Result<Output> {
        let session = self
            .session
            .as_ref()
            .expect("session is open until close()");
        let started = Instant::now();
        let mut child = session
            .command("sh")
            .arg("-c")
            .arg(script)
            .stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped())
            .spawn()
            .await
            .map_err(|e| self.broken(step, e))?;
        if let Some(mut input) = child.stdin().take() {
            // A failed write means the remote side went away; wait_with_output reports why.
            let _ = input.write_all(stdin).await;
            let _ = input.shutdown().await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| self.broken(step, e))?;
        log_command(
            &self.target.destination,
            step,
            script,
            started.elapsed(),
            out.status.code(),
        );
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed(),
        })
    }

    fn broken(&self, step: &str, e: openssh::Error) -> Error {
        Error::Remote {
            target: self.target.destination.clone(),
            step: step.to_string(),
            message: format!("the SSH connection broke: {e}"),
            hint: Some("run the same command again: natsup picks up where it stopped".into()),
        }
    }
}

/// `-v` shows each remote command and its duration; `-vv` the script too. Scripts hold no
/// secret (they travel on stdin), so logging them leaks nothing.
fn log_command(target: &str, step: &str, script: &str, elapsed: Duration, status: Option<i32>) {
    tracing::info!(
        "{target}: {step}: sh -c <script, {} bytes> exited {} in {:.0}ms",
        script.len(),
        status.map_or("by signal".to_string(), |c| c.to_string()),
        elapsed.as_secs_f64() * 1000.0
    );
    tracing::debug!("{target}: {step} script:\n{script}");
}

/// This machine, for `natsup up --local`. Scripts run from $HOME like a fresh SSH login.
#[derive(Debug, Default)]
pub struct LocalRemote {
    commands: usize,
}

impl Remote for LocalRemote {
    async fn run(&mut self, step: &str, script: &str, stdin: &[u8]) -> Result<Output> {
        self.commands += 1;
        let started = Instant::now();
        // The scripts `cd "$HOME"` themselves (falling back to /), as over SSH.
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Remote {
                target: "local".into(),
                step: step.into(),
                message: format!("cannot start sh: {e}"),
                hint: None,
            })?;
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin).await;
            let _ = input.shutdown().await;
        }
        let out = child.wait_with_output().await.map_err(|e| Error::Remote {
            target: "local".into(),
            step: step.into(),
            message: e.to_string(),
            hint: None,
        })?;
        log_command("local", step, script, started.elapsed(), out.status.code());
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed(),
        })
    }

    fn describe(&self) -> String {
        "local".into()
    }

    fn commands(&self) -> usize {
        self.commands
    }
}

/// How to reach the server for this run.
#[derive(Debug, Clone)]
pub enum Via {
    Local,
    Ssh(SshTarget),
}

impl Via {
    /// Opens the connection, showing it as a step.
    pub async fn connect(&self) -> Result<AnyRemote> {
        self.connected(self.open()).await
    }

    /// Opens the connection without a word, so it can run in the background while the
    /// terminal shows other work; [`connected`](Self::connected) shows it when it is awaited.
    pub async fn open(&self) -> Result<AnyRemote> {
        match self {
            Via::Local => Ok(AnyRemote::Local(LocalRemote::default())),
            Via::Ssh(target) => Ok(AnyRemote::Ssh(SshRemote::connect(target).await?)),
        }
    }

    /// Waits for `opening` (from [`open`](Self::open)) under a "connecting" step.
    pub async fn connected(
        &self,
        opening: impl Future<Output = Result<AnyRemote>>,
    ) -> Result<AnyRemote> {
        let Via::Ssh(target) = self else {
            return opening.await;
        };
        let step = crate::ui::Step::start(format!("connecting to {}", target.destination));
        let remote = opening.await?;
        step.done(match &remote {
            AnyRemote::Ssh(ssh) if ssh.reused() => "reused the open connection of an earlier run",
            _ => "connected",
        });
        Ok(remote)
    }
}

/// Either remote, chosen at run time.
pub enum AnyRemote {
    Local(LocalRemote),
    Ssh(SshRemote),
}

impl Remote for AnyRemote {
    async fn run(&mut self, step: &str, script: &str, stdin: &[u8]) -> Result<Output> {
        match self {
            AnyRemote::Local(r) => r.run(step, script, stdin).await,
            AnyRemote::Ssh(r) => r.run(step, script, stdin).await,
        }
    }

    fn describe(&self) -> String {
        match self {
            AnyRemote::Local(r) => r.describe(),
            AnyRemote::Ssh(r) => r.describe(),
        }
    }

    fn commands(&self) -> usize {
        match self {
            AnyRemote::Local(r) => r.commands(),
            AnyRemote::Ssh(r) => r.commands(),
        }
    }

    async fn close(self) {
        match self {
            AnyRemote::Local(r) => r.close().await,
            AnyRemote::Ssh(r) => r.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_timeout_is_whole_seconds_and_never_zero() {
        let secs = |d: Duration| idle_secs(d).get();
        assert_eq!(secs(Duration::from_millis(500)), 1);
        assert_eq!(secs(Duration::from_millis(1500)), 2);
        assert_eq!(secs(Duration::from_secs(120)), 120);
        // Persistence off: the run closes its master; 30 s only bounds a killed run's.
        assert_eq!(secs(Duration::ZERO), 30);
    }
}
