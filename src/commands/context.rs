//! `natsup context`: nats CLI contexts, one per user, so `nats --context NAME ...` just works.
//! Replaces the tutorial's `nats context save`.
//!
//! The nats CLI keeps them at `$XDG_CONFIG_HOME/nats/context/NAME.json` (else
//! `~/.config/nats/context/`), 0600 in a 0700 directory, and the selected name in
//! `.../nats/context.txt` (nats.go's natscontext package); the JSON keys are the CLI's own.

use std::path::PathBuf;

use serde::Serialize;

use crate::cli::ContextArgs;
use crate::error::{Error, Result};
use crate::fsutil::{create_private_dir, write_atomic};
use crate::state::State;

use super::Context;

/// The subset of the nats CLI's context file natsup fills in.
#[derive(Debug, Serialize)]
pub struct NatsContext {
    pub description: String,
    pub url: String,
    pub user: String,
    pub password: String,
    /// What `nats context save --tlsca` sets.
    pub ca: String,
}

/// `$XDG_CONFIG_HOME/nats`, else `~/.config/nats`.
pub fn nats_config_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("nats"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::usage("neither XDG_CONFIG_HOME nor HOME is set", None))?;
    Ok(PathBuf::from(home).join(".config/nats"))
}

pub fn run(ctx: &Context, args: ContextArgs) -> Result<i32> {
    let config = ctx.load_config()?;
    if args.system {
        return system(ctx, &config, args.select);
    }
    let users = config.select_users(&args.users)?;
    let state = State::load_for(&config, &ctx.state_dir(&config), &users)?;
    if args.select && users.len() != 1 {
        return Err(Error::usage(
            "--select needs exactly one context",
            Some("name the user with --user NAME".to_string()),
        ));
    }
    let base = nats_config_dir()?;
    let dir = base.join("context");
    create_private_dir(&dir)?;
    let ca = std::path::absolute(state.dir.ca_cert())
        .map_err(|e| Error::io("resolve", state.dir.ca_cert(), e))?;
    for user in &users {
        let name = context_name(&config.name, user);
        let context = NatsContext {
            description: format!("natsup deployment {} as {user}", config.name),
            url: crate::client_env::nats_url(&config),
            // The login the current password goes with (after a rotation with a grace
            // period, not the user's own name): the context's name stays the same.
            user: state.secrets.login(user).to_string(),
            password: state
                .secrets
                .password(user)
                .expect("State::load_for checked these users")
                .expose()
                .to_string(),
            // A publicly trusted certificate needs no CA: the nats CLI uses the system's roots.
            ca: if state.client_ca().is_empty() {
                String::new()
            } else {
                ca.display().to_string()
            },
        };
        let path = dir.join(format!("{name}.json"));
        let json = serde_json::to_string_pretty(&context).expect("contexts serialize");
        write_atomic(&path, json.as_bytes(), 0o600)?;
        println!("wrote nats context {name} ({})", path.display());
    }
    if args.select {
        let name = context_name(&config.name, &users[0]);
        write_atomic(&base.join("context.txt"), name.as_bytes(), 0o600)?;
        println!("selected {name}");
    }
    Ok(0)
}

/// `--system`: the context of the system account's user, written apart from every user's.
fn system(ctx: &Context, config: &crate::config::Config, select: bool) -> Result<i32> {
    let state = State::load_for(config, &ctx.state_dir(config), &[])?;
    let secret = state.secrets.system.as_ref().ok_or_else(|| {
        Error::usage(
            format!("deployment `{}` has no system user yet", config.name),
            Some("run `natsup up`: it makes one and gives it to every server".to_string()),
        )
    })?;
    let base = nats_config_dir()?;
    let dir = base.join("context");
    create_private_dir(&dir)?;
    let ca = std::path::absolute(state.dir.ca_cert())
        .map_err(|e| Error::io("resolve", state.dir.ca_cert(), e))?;
    // A config user cannot be named so, so this never overwrites a user's context.
    let name = context_name(&config.name, crate::state::SYSTEM_USER);
    let context = NatsContext {
        description: format!(
            "natsup deployment {} as its system-account user (operators only)",
            config.name
        ),
        url: crate::client_env::nats_url(config),
        user: crate::state::SYSTEM_USER.to_string(),
        password: secret.password.expose().to_string(),
        ca: if state.client_ca().is_empty() {
            String::new()
        } else {
            ca.display().to_string()
        },
    };
    let path = dir.join(format!("{name}.json"));
    let json = serde_json::to_string_pretty(&context).expect("contexts serialize");
    write_atomic(&path, json.as_bytes(), 0o600)?;
    println!("wrote nats context {name} ({})", path.display());
    if select {
        write_atomic(&base.join("context.txt"), name.as_bytes(), 0o600)?;
        println!("selected {name}");
    }
    Ok(0)
}

pub fn context_name(deployment: &str, user: &str) -> String {
    format!("{deployment}-{user}")
}
