//! What a command starts from: where natsup.yaml and the state are ([`Context`]), the
//! deployment's config and the way to each of its nodes ([`deployment`]), and the local state,
//! locked, with whatever was missing created ([`Session`]).
//!
//! Local state always comes first: whatever a server is about to get already exists on this
//! disk, so a run that dies anywhere never leaves a credential that exists only on a server.

use std::fs::File;
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil::{read_optional, write_atomic};
use crate::operation::Member;
use crate::remote::{SshDestination, Via};
use crate::state::{Created, State, StateDir};
use crate::ui;

/// Where the config and the state are.
#[derive(Debug, Clone)]
pub struct Context {
    pub config_path: PathBuf,
    pub state_base: PathBuf,
}

/// How a command reaches the deployment's nodes, from the command line's target options.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// This machine's Docker instead of SSH (a deployment of one node only).
    pub local: bool,
    /// Accept and record a node's host key on first contact.
    pub accept_new_host_key: bool,
    /// This image instead of the config's, for this run.
    pub image: Option<String>,
}

impl Context {
    /// `state_dir`: `--state-dir`, else the platform's data dir.
    pub fn new(config_path: PathBuf, state_dir: Option<PathBuf>) -> Result<Context> {
        let state_base = match state_dir {
            Some(dir) => dir,
            None => StateDir::default_base().ok_or_else(|| {
                Error::usage(
                    "cannot find a home directory for natsup's state",
                    Some("pass --state-dir DIR or set NATSUP_STATE_DIR".to_string()),
                )
            })?,
        };
        Ok(Context {
            config_path,
            state_base,
        })
    }

    /// natsup.yaml; with none here, the built-in `local` deployment once `up --local` has
    /// made its state, so `env`, `context`, `verify` and the rest work for it too.
    pub fn load_config(&self) -> Result<Config> {
        if !self.config_path.exists() {
            let local = self.local_default()?;
            if self.state_dir(&local).root.is_dir() {
                ui::note(format!(
                    "no {} here: using the built-in `local` deployment that `up --local` made",
                    self.config_path.display()
                ));
                return Ok(local);
            }
        }
        Config::load(&self.config_path)
    }

    /// The built-in `local` deployment, running the image its last `up --local --image`
    /// asked for (kept in its state: there is no natsup.yaml to hold it), so a later plain
    /// `up --local` or `status --local` does not go back to the default image.
    fn local_default(&self) -> Result<Config> {
        let mut local = Config::local_default();
        if let Some(image) = read_optional(&self.local_image_file(&local))? {
            local.set_image(image.trim());
        }
        Ok(local)
    }

    fn local_image_file(&self, local: &Config) -> PathBuf {
        self.state_dir(local).root.join("image")
    }

    /// The deployment's state (one for all its nodes).
    pub fn state_dir(&self, config: &Config) -> StateDir {
        StateDir::new(&self.state_base, &config.name)
    }
}

/// The config, with `--image` applied, and the way to each of its nodes. `--local` without a
/// natsup.yaml uses the built-in local deployment.
pub fn deployment(ctx: &Context, target: &Target) -> Result<(Config, Vec<Member>)> {
    let builtin = target.local && !ctx.config_path.exists();
    let mut config = if builtin {
        ctx.local_default()?
    } else {
        ctx.load_config()?
    };
    if let Some(image) = &target.image {
        config.set_image(image);
    }
    let members = members(&config, target)?;
    Ok((config, members))
}

/// Each node of `config` and how to reach it.
pub fn members(config: &Config, target: &Target) -> Result<Vec<Member>> {
    if target.local && config.is_cluster() {
        return Err(Error::usage(
            format!(
                "--local runs one server on this machine's Docker; deployment `{}` is a cluster of {} nodes",
                config.name,
                config.nodes().len()
            ),
            Some("leave out --local: natsup reaches each node over SSH".to_string()),
        ));
    }
    config
        .nodes()
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let via = if target.local {
                Via::Local
            } else {
                match &node.ssh {
                    Some(ssh) => Via::Ssh(SshDestination::from_config(ssh, target.accept_new_host_key)),
                    None => {
                        return Err(Error::usage(
                            format!(
                                "deployment `{}` has no ssh section, so natsup does not know which server to use",
                                config.name
                            ),
                            Some(
                                "add `ssh: {destination: user@host}` to natsup.yaml, or run with --local for this machine's Docker"
                                    .to_string(),
                            ),
                        ));
                    }
                }
            };
            Ok(Member {
                index,
                name: node.name.clone(),
                via,
            })
        })
        .collect()
}

/// A deployment's config and its local state, held under the state lock for as long as the
/// session lives: no other natsup run touches this deployment meanwhile.
pub struct Session {
    pub config: Config,
    pub state: State,
    /// What opening the session had to make (a first run's CA, certificates, passwords).
    pub created: Vec<Created>,
    pub now: OffsetDateTime,
    _lock: File,
}

impl Session {
    /// Locks the state, makes whatever is missing (and says what it made), and loads it.
    pub fn open(ctx: &Context, config: Config) -> Result<Session> {
        let dir = ctx.state_dir(&config);
        let lock = dir.lock()?;
        let now = OffsetDateTime::now_utc();
        let (state, created) = State::ensure(&config, &dir, now)?;
        report_created(&created);
        // The built-in local deployment remembers the image it was last run with.
        if !ctx.config_path.exists() && config.name == Config::local_default().name {
            let file = ctx.local_image_file(&config);
            if read_optional(&file)?.as_deref().map(str::trim) != Some(config.image.as_str()) {
                write_atomic(&file, config.image.as_bytes(), 0o600)?;
            }
        }
        Ok(Session {
            config,
            state,
            created,
            now,
            _lock: lock,
        })
    }

    /// Whether opening the session issued a server certificate (none existed, or the names
    /// changed), which then still has to reach the server.
    pub fn issued_server_cert(&self) -> bool {
        self.created
            .iter()
            .any(|c| matches!(c, Created::ServerCert { .. }))
    }
}

fn report_created(created: &[Created]) {
    for c in created {
        match c {
            Created::Ca => ui::note("created a new CA"),
            Created::ServerCert { reason } => {
                ui::note(format!("issued a server certificate: {reason}"))
            }
            Created::Passwords { users } => {
                ui::note(format!("generated passwords for {}", users.join(", ")))
            }
            Created::Rehashed { users, cost } => ui::note(format!(
                "hashed the passwords of {} again at bcrypt cost {cost} (auth.bcrypt_cost); \
                 the passwords stay the same",
                users.join(", ")
            )),
        }
    }
}
