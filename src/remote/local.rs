//! This machine as the server, for `natsup up --local`: the same scripts, run by the local `sh`.

use std::process::Stdio;
use std::time::Instant;

use super::{Output, Remote, feed_and_wait};
use crate::error::{Error, Result};

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
        let input = child.stdin.take();
        feed_and_wait(
            "local",
            step,
            script,
            started,
            input,
            stdin,
            child.wait_with_output(),
        )
        .await
        .map_err(|e| Error::Remote {
            target: "local".into(),
            step: step.into(),
            message: e.to_string(),
            hint: None,
        })
    }

    fn describe(&self) -> String {
        "local".into()
    }

    fn commands(&self) -> usize {
        self.commands
    }
}
