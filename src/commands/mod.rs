//! One file per subcommand. Each takes parsed arguments and the shared [`Context`], does its
//! work through the pure modules and the executor, and returns the process exit code.

pub mod bundle;
pub mod ca;
pub mod context;
pub mod env;
pub mod init;
pub mod render;
pub mod renew;
pub mod rotate;
pub mod rotate_ca;
pub mod status;
pub mod up;
pub mod verify;

use std::path::PathBuf;

use crate::cli::Cli;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::state::StateDir;

/// What every command needs from the global options.
#[derive(Debug, Clone)]
pub struct Context {
    pub config_path: PathBuf,
    pub state_base: PathBuf,
}

impl Context {
    pub fn from_cli(cli: &Cli) -> Result<Context> {
        let state_base = match &cli.state_dir {
            Some(dir) => dir.clone(),
            None => StateDir::default_base().ok_or_else(|| {
                Error::usage(
                    "cannot find a home directory for natsup's state",
                    Some("pass --state-dir DIR or set NATSUP_STATE_DIR".to_string()),
                )
            })?,
        };
        Ok(Context {
            config_path: cli.config.clone(),
            state_base,
        })
    }

    /// natsup.yaml; with none here, the built-in `local` deployment once `up --local` has
    /// made its state, so `env`, `context`, `verify` and the rest work for it too.
    pub fn load_config(&self) -> Result<Config> {
        if !self.config_path.exists() {
            let local = Config::local_default();
            if self.state_dir(&local).root.is_dir() {
                crate::ui::note(format!(
                    "no {} here: using the built-in `local` deployment that `up --local` made",
                    self.config_path.display()
                ));
                return Ok(local);
            }
        }
        Config::load(&self.config_path)
    }

    pub fn state_dir(&self, config: &Config) -> StateDir {
        StateDir::new(&self.state_base, &config.name)
    }
}
