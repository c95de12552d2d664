//! Where natsup touches the server: the only place that runs commands on it. A [`Remote`] runs
//! a shell script there, with bytes on stdin; scripts carry no secret, secrets travel on stdin
//! only.
//!
//! - this file: the [`Remote`] trait, its [`Output`], the one spawn-and-feed path both remotes
//!   share, and [`Via`] / [`AnyRemote`], which pick the remote at run time;
//! - `ssh.rs`: [`SshRemote`] over one SSH master connection (the openssh crate driving the
//!   system `ssh`, so `~/.ssh/config`, agents and ProxyJump work), its [`SshDestination`],
//!   and ssh's failures put into words;
//! - `ssh_master.rs`: where that master waits between runs, so the next run skips the
//!   handshake;
//! - `local.rs`: [`LocalRemote`], this machine, for `up --local`;
//! - [`script`]: the scripts both run, and the one shell-quoting function.

mod local;
pub mod script;
mod ssh;
mod ssh_master;

use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::Result;

pub use local::LocalRemote;
pub use ssh::{SshDestination, SshRemote};

/// What a script printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// How long the inspection may take: a handful of quick Docker calls.
pub const INSPECT_BOUND: Duration = Duration::from_secs(120);

pub trait Remote {
    /// Runs `script` with `sh -c`, feeding `stdin`. `step` names it in errors and logs.
    /// Unbounded: callers use [`run_within`](Self::run_within).
    fn run(
        &mut self,
        step: &str,
        script: &str,
        stdin: &[u8],
    ) -> impl std::future::Future<Output = Result<Output>>;
    /// As [`run`](Self::run), giving up after `bound`: a hung SSH connection or server must
    /// not hang natsup, and the local state lock it holds, forever. Giving up drops the
    /// command: the local `sh` is killed (kill_on_drop); a script on the server ignores the
    /// hang-up and ends within its own bounds.
    fn run_within(
        &mut self,
        step: &str,
        script: &str,
        stdin: &[u8],
        bound: Duration,
    ) -> impl std::future::Future<Output = Result<Output>> {
        async move {
            match tokio::time::timeout(bound, self.run(step, script, stdin)).await {
                Ok(result) => result,
                Err(_) => Err(ran_out(&self.describe(), step, bound)),
            }
        }
    }
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

/// The one path both remotes take once `sh -c SCRIPT` has started (over SSH or here): write
/// `stdin` to the child's `input` and close it, wait for `exited` (the child's
/// `wait_with_output`, not yet polled), log the command and collect its [`Output`]. `who`,
/// `step` and `started` are for the log line.
async fn feed_and_wait<E>(
    who: &str,
    step: &str,
    script: &str,
    started: Instant,
    input: Option<impl AsyncWrite + Unpin>,
    stdin: &[u8],
    exited: impl Future<Output = std::result::Result<std::process::Output, E>>,
) -> std::result::Result<Output, E> {
    if let Some(mut input) = input {
        // A failed write means the other side went away; waiting reports why.
        let _ = input.write_all(stdin).await;
        let _ = input.shutdown().await;
    }
    let out = exited.await?;
    log_command(who, step, script, started.elapsed(), out.status.code());
    Ok(Output {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    })
}

/// The error of a remote command that ran out of its `bound`.
fn ran_out(target: &str, step: &str, bound: Duration) -> crate::error::Error {
    crate::error::Error::Remote {
        target: target.to_string(),
        step: step.to_string(),
        message: format!(
            "the server did not answer within {}s, so natsup stopped waiting",
            bound.as_secs()
        ),
        hint: Some(
            "check the server (is Docker responding?), then run the same command again: the \
             server side stops by itself within its own bounds and releases its lock"
                .into(),
        ),
    }
}

/// `-v` shows each remote command and its duration; `-vv` the script too. Scripts hold no
/// secret (they travel on stdin), so logging them leaks nothing.
fn log_command(who: &str, step: &str, script: &str, elapsed: Duration, status: Option<i32>) {
    tracing::info!(
        "{who}: {step}: sh -c <script, {} bytes> exited {} in {:.0}ms",
        script.len(),
        status.map_or("by signal".to_string(), |c| c.to_string()),
        elapsed.as_secs_f64() * 1000.0
    );
    tracing::debug!("{who}: {step} script:\n{script}");
}

/// How to reach the server for this run.
#[derive(Debug, Clone)]
pub enum Via {
    Local,
    Ssh(SshDestination),
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
            Via::Ssh(dest) => Ok(AnyRemote::Ssh(SshRemote::connect(dest).await?)),
        }
    }

    /// Waits for `opening` (from [`open`](Self::open)) under a "connecting" step.
    pub async fn connected(
        &self,
        opening: impl Future<Output = Result<AnyRemote>>,
    ) -> Result<AnyRemote> {
        let Via::Ssh(dest) = self else {
            return opening.await;
        };
        let step = crate::ui::Step::start(format!("connecting to {}", dest.destination));
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
