//! The SSH remote: one master connection to the server (the openssh crate driving the system
//! `ssh`, so `~/.ssh/config`, agents and ProxyJump work), picked up from an earlier run when
//! one is still open (see `ssh_master`), and ssh's failures put into words.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use sha2::{Digest, Sha256};

use super::{Output, Remote, feed_and_wait, ssh_master};
use crate::config::{HostKeyPolicy, SshConfig};
use crate::error::{self, Error, Result};

pub struct SshRemote {
    session: Option<Session>,
    dest: SshDestination,
    /// How long the master stays open after the run (see `ssh_master`).
    persist: Duration,
    /// Where this destination's masters wait for the next run; `None` closes it at the end.
    folder: Option<PathBuf>,
    /// Picked up from an earlier run rather than opened by this one.
    reused: bool,
    commands: usize,
    /// Since when the master has run no command: its idle clock (ControlPersist), which keeps
    /// running *during* a run. A node waits its turn while the others roll, and a lame-duck
    /// stop takes the grace plus the time to close its clients: on a three-node upgrade the
    /// third node's master sat idle ~50 s and had exited by its turn ("the remote process has
    /// terminated", measured with 200 clients and the default 10 s grace).
    idle_since: Instant,
}

/// How to reach the server over SSH, from the config plus command-line overrides.
#[derive(Debug, Clone)]
pub struct SshDestination {
    pub destination: String,
    pub port: Option<u16>,
    pub identity: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub policy: HostKeyPolicy,
}

impl SshDestination {
    pub fn from_config(ssh: &SshConfig, accept_new_host_key: bool) -> SshDestination {
        SshDestination {
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

    /// Twelve hex digits naming everything that makes two connections the same connection,
    /// and the idle limit its master was opened with (a run that picks up a master must know
    /// when it exits): the name of the folder its kept masters live in.
    fn key(&self, persist: Duration) -> String {
        let mut h = Sha256::new();
        h.update(
            format!(
                "{}\0{:?}\0{:?}\0{:?}\0{:?}\0{}",
                self.destination,
                self.port,
                self.identity,
                self.known_hosts,
                self.policy,
                idle_secs(persist)
            )
            .as_bytes(),
        );
        hex::encode(&h.finalize()[..6])
    }
}

impl SshRemote {
    /// Opens the one SSH master connection this run uses, or picks up the one an earlier run
    /// on the same destination left open (see `ssh_master`).
    pub async fn connect(dest: &SshDestination) -> Result<SshRemote> {
        let persist = ssh_master::persist()?;
        let folder = if persist.is_zero() {
            None
        } else {
            ssh_master::folder_for(&dest.key(persist))
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
                    dest.destination
                );
                session
            }
            None => launch(dest, persist, folder.as_deref()).await?,
        };
        Ok(SshRemote {
            session: Some(session),
            dest: dest.clone(),
            persist,
            folder,
            reused,
            commands: 0,
            idle_since: Instant::now(),
        })
    }

    /// Opens a new master in place of this one; the old one stays until the new one is up, so
    /// a failed launch leaves the run where it was. The old master is ended only when it is
    /// known dead (`dead`) or is this run's alone: a kept master (`folder`) may be serving
    /// another node on the same destination, or another run, so it is left to its idle limit.
    async fn reconnect(&mut self, dead: bool) -> Result<()> {
        let fresh = launch(&self.dest, self.persist, self.folder.as_deref()).await?;
        if let Some(old) = self.session.replace(fresh) {
            if dead || self.folder.is_none() {
                // `ssh -O exit` to a wedged master must not hang the run.
                let _ = tokio::time::timeout(Duration::from_secs(10), ssh_master::close(old)).await;
            } else {
                let _ = old.detach();
            }
        }
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
async fn launch(
    dest: &SshDestination,
    persist: Duration,
    folder: Option<&Path>,
) -> Result<Session> {
    let mut b = SessionBuilder::default();
    b.known_hosts_check(match dest.policy {
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
    if let Some(port) = dest.port {
        b.port(port);
    }
    if let Some(key) = &dest.identity {
        b.keyfile(key);
    }
    if let Some(kh) = &dest.known_hosts {
        b.user_known_hosts_file(kh);
    }
    b.connect(&dest.destination)
        .await
        .map_err(|e| ssh_error(dest, e))
}

/// How long the master lives with no command running (its ControlPersist).
fn master_idle(persist: Duration) -> Duration {
    Duration::from_secs(idle_secs(persist).get() as u64)
}

/// Whether a master idle for `idle` may be gone by the time a command reaches it: within 5 s
/// of its limit (half the limit, for a limit under 10 s) counts as gone.
fn expired(idle: Duration, limit: Duration) -> bool {
    idle + (limit / 2).min(Duration::from_secs(5)) >= limit
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
fn ssh_error(dest: &SshDestination, e: openssh::Error) -> Error {
    let text = error::chain(&e);
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
            match &dest.identity {
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
        destination: dest.destination.clone(),
        message,
        hint: Some(hint),
    }
}

impl Remote for SshRemote {
    async fn run(&mut self, step: &str, script: &str, stdin: &[u8]) -> Result<Output> {
        let first = self.commands == 0;
        self.commands += 1;
        let idle = self.idle_since.elapsed();
        if expired(idle, master_idle(self.persist)) {
            // Its master may have exited, or may exit before this command reaches it: a new
            // connection costs one handshake, a command lost to a dying master a failed run.
            tracing::info!(
                "{}: the SSH connection sat idle {:.0}s, past its idle limit; reconnecting",
                self.dest.destination,
                idle.as_secs_f64()
            );
            self.reconnect(false).await?;
        }
        let result = match self.run_once(step, script, stdin).await {
            // A master that was alive when checked can still have lost its TCP connection (the
            // server rebooted within the persist window): then the first command fails before
            // it starts. Only a read-only first command (no upload on stdin) is safe to run
            // twice.
            Err(e) if first && self.reused && stdin.is_empty() => {
                tracing::info!(
                    "{}: the earlier run's connection is gone ({e}); reconnecting",
                    self.dest.destination
                );
                self.reconnect(true).await?;
                self.run_once(step, script, stdin).await
            }
            result => result,
        };
        self.idle_since = Instant::now();
        result
    }

    fn describe(&self) -> String {
        self.dest.destination.clone()
    }

    fn commands(&self) -> usize {
        self.commands
    }

    /// Leaves the master open for the next run, or closes it (openssh's Drop only tries
    /// `ssh -O exit`; its `close()` is what ends a master for sure).
    async fn close(mut self) {
        if let Some(s) = self.session.take() {
            if self.folder.is_some() {
                // It exits by itself once idle for NATSUP_SSH_PERSIST seconds.
                let _ = s.detach();
            } else {
                // `ssh -O exit` to a wedged master must not hang the end of the run; the
                // master exits by itself once idle anyway.
                let _ = tokio::time::timeout(Duration::from_secs(10), ssh_master::close(s)).await;
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
        let input = child.stdin().take();
        feed_and_wait(
            &self.dest.destination,
            step,
            script,
            started,
            input,
            stdin,
            child.wait_with_output(),
        )
        .await
        .map_err(|e| self.broken(step, e))
    }

    fn broken(&self, step: &str, e: openssh::Error) -> Error {
        Error::Remote {
            target: self.dest.destination.clone(),
            step: step.to_string(),
            message: format!("the SSH connection broke: {e}"),
            hint: Some("run the same command again: natsup picks up where it stopped".into()),
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

    #[test]
    fn a_master_near_its_idle_limit_is_replaced_before_a_command() {
        let s = Duration::from_secs;
        assert!(!expired(s(24), s(30)));
        assert!(expired(s(25), s(30)));
        assert!(expired(s(50), s(30)));
        // A short NATSUP_SSH_PERSIST: half its limit.
        assert!(!expired(Duration::from_millis(400), s(1)));
        assert!(expired(Duration::from_millis(500), s(1)));
    }

    fn dest(identity: &str, policy: HostKeyPolicy) -> SshDestination {
        SshDestination {
            destination: "deploy@nats.example.com".into(),
            port: Some(22),
            identity: Some(identity.into()),
            known_hosts: None,
            policy,
        }
    }

    #[test]
    fn a_master_is_only_shared_by_the_same_connection_and_idle_limit() {
        let key = |d: &SshDestination| d.key(Duration::from_secs(30));
        let strict = dest("~/.ssh/a", HostKeyPolicy::Strict);
        assert_eq!(key(&strict), key(&strict.clone()));
        assert_ne!(key(&strict), key(&dest("~/.ssh/b", HostKeyPolicy::Strict)));
        assert_ne!(
            key(&strict),
            key(&dest("~/.ssh/a", HostKeyPolicy::AcceptNew))
        );
        // A master opened to exit after 5 s idle is not picked up by a run counting on 30 s.
        assert_ne!(key(&strict), strict.key(Duration::from_secs(5)));
    }
}
