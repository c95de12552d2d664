//! What a command starts from: the global options ([`Context`]), the deployment's config and
//! the way to its server ([`server`]), and the local state, locked, with whatever was missing
//! created ([`Session`]).
//!
//! Local state always comes first: whatever a server is about to get already exists on this
//! disk, so a run that dies anywhere never leaves a credential that exists only on the server.

use std::fs::File;
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::cli::{Cli, TargetArgs};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::remote::{SshDestination, Via};
use crate::state::{Created, State, StateDir};
use crate::ui;

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
                ui::note(format!(
                    "no {} here: using the built-in `local` deployment that `up --local` made",
                    self.config_path.display()
                ));
                return Ok(local);
            }
        }
        Config::load(&self.config_path)
    }

    /// Where the state a client's settings come from lives (the CA and the passwords, which
    /// every node shares): a cluster's first node's.
    pub fn client_state_dir(&self, config: &Config) -> StateDir {
        if config.is_cluster() {
            self.state_dir(&config.node_view(0))
        } else {
            self.state_dir(config)
        }
    }

    /// The deployment's state; for one node's view of a cluster, with that node's certificate.
    pub fn state_dir(&self, config: &Config) -> StateDir {
        let dir = StateDir::new(&self.state_base, &config.name);
        match config.this_node {
            Some(i) => dir.for_node(&config.nodes[i].name),
            None => dir,
        }
    }
}

/// The config, when it is a cluster's (`nodes`); `--image` overrides its image for this run.
/// `None` for one server, whose commands go on with [`server`].
pub fn cluster_config(ctx: &Context, args: &TargetArgs) -> Result<Option<Config>> {
    if args.local || !ctx.config_path.exists() {
        return Ok(None);
    }
    let mut config = ctx.load_config()?;
    if !config.is_cluster() {
        return Ok(None);
    }
    if let Some(image) = &args.image {
        config.image = image.clone();
    }
    Ok(Some(config))
}

/// The config and how to reach its server. `--local` without a natsup.yaml uses the built-in
/// local deployment; `--image` overrides the config's image for this run.
pub fn server(ctx: &Context, args: &TargetArgs) -> Result<(Config, Via)> {
    let mut config = if args.local && !ctx.config_path.exists() {
        Config::local_default()
    } else {
        ctx.load_config()?
    };
    if let Some(image) = &args.image {
        config.image = image.clone();
    }
    if config.is_cluster() {
        return Err(Error::usage(
            format!(
                "deployment `{}` is a cluster of {} nodes; this command works on one server",
                config.name,
                config.nodes.len()
            ),
            Some(
                "for a cluster, use `natsup up`, `verify`, `env`, `context` or `bundle`"
                    .to_string(),
            ),
        ));
    }
    let via = if args.local {
        Via::Local
    } else {
        match &config.ssh {
            Some(ssh) => Via::Ssh(SshDestination::from_config(ssh, args.accept_new_host_key)),
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
    Ok((config, via))
}

/// A deployment's config and its local state, held under the state lock for as long as the
/// session lives: no other natsup run touches this deployment meanwhile.
pub struct Session {
    pub config: Config,
    pub state: State,
    /// What opening the session had to make (a first run's CA, certificate, passwords).
    pub created: Vec<Created>,
    pub now: OffsetDateTime,
    /// A cluster's nodes: each node's view of the config ([`Config::node_view`]) and its
    /// state (the shared CA and passwords, its own certificate). `state` is the first's.
    /// Empty for one server.
    pub nodes: Vec<(Config, State)>,
    _lock: File,
}

impl Session {
    /// Locks the state, makes whatever is missing (and says what it made), and loads it.
    pub fn open(ctx: &Context, config: Config) -> Result<Session> {
        let dir = ctx.state_dir(&config);
        let lock = dir.lock()?;
        let now = OffsetDateTime::now_utc();
        if config.is_cluster() {
            let mut created = Vec::new();
            let mut nodes = Vec::new();
            for view in config.node_views() {
                let (state, made) = State::ensure(&view, &ctx.state_dir(&view), now)?;
                let node = &view.nodes[view.this_node.expect("a node's view")].name;
                created.extend(made.into_iter().map(|c| match c {
                    Created::ServerCert { reason } => Created::ServerCert {
                        reason: format!("{reason} (node {node})"),
                    },
                    other => other,
                }));
                nodes.push((view, state));
            }
            report_created(&created);
            return Ok(Session {
                config,
                state: nodes[0].1.clone(),
                created,
                now,
                nodes,
                _lock: lock,
            });
        }
        let (state, created) = State::ensure(&config, &dir, now)?;
        report_created(&created);
        Ok(Session {
            config,
            state,
            created,
            now,
            nodes: Vec::new(),
            _lock: lock,
        })
    }

    /// The session of the server `args` names, and the way to it.
    pub fn open_server(ctx: &Context, args: &TargetArgs) -> Result<(Session, Via)> {
        let (config, via) = server(ctx, args)?;
        Ok((Session::open(ctx, config)?, via))
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
