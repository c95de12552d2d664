//! `natsup rotate-passwords`: new passwords, applied by reload, proven, then made current.
//!
//! Order is what keeps anyone from being locked out: the new password is saved locally as
//! *pending* before the server sees it, and becomes current only once the server accepted it
//! and refused the old one. A run that dies anywhere leaves both on disk; the next
//! `rotate-passwords` or `up` settles which one the server holds.

use std::time::Duration;

use time::OffsetDateTime;

use crate::cli::{EnvFormat, RotatePasswordsArgs};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::nats_client::{self, Endpoint, Login};
use crate::secret::Secret;
use crate::state::State;

use super::Context;
use super::up::{Opened, open};
use crate::deploy::deploy;

pub fn run(ctx: &Context, args: RotatePasswordsArgs) -> Result<i32> {
    let Opened {
        config,
        via,
        mut state,
        now,
        lock: _lock,
        ..
    } = open(ctx, &args.target)?;
    let users = config.select_users(&args.users)?;

    let pending = state.secrets.begin_rotation(&users, now);
    if args.dry_run {
        crate::ui::note(format!(
            "would rotate the passwords of: {}",
            pending.join(", ")
        ));
        return crate::runtime().block_on(async {
            deploy(&via, &config, &state, true, Duration::from_secs(30))
                .await
                .map(|_| 0)
        });
    }
    // Saved before the server sees them: from here on, no outcome can lose a password.
    state.save_secrets()?;
    failpoint::hit("rotate-passwords:pending-saved");

    crate::runtime().block_on(async {
        let deployed = deploy(&via, &config, &state, false, Duration::from_secs(30)).await;
        failpoint::hit("rotate-passwords:applied");
        let settled = settle_pending(&config, &mut state).await?;
        let deployed = deployed?;
        crate::ui::note(deployed.summary());
        let rotated: Vec<&Settled> = settled.iter().filter(|s| s.outcome == Outcome::Promoted).collect();
        if rotated.len() != pending.len() {
            return Err(Error::failed(
                "the server did not take every new password",
                Some("run `natsup rotate-passwords` again".to_string()),
            ));
        }
        println!("rotated: {}", rotated.iter().map(|s| s.user.as_str()).collect::<Vec<_>>().join(", "));
        println!("These clients must now use their new password (their old connections were closed by the server):");
        for s in &rotated {
            println!();
            println!("# natsup env {}", s.user);
            let vars = super::env::vars(&config, &state, &s.user)?;
            print!("{}", super::env::format_vars(&vars, EnvFormat::Dotenv));
        }
        Ok(0)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server takes the new password and refuses the old: it is now current.
    Promoted,
    /// The server still takes the old password: the pending one was dropped.
    Discarded,
    /// The server took neither (unreachable?): both stay on disk for the next run.
    Unsettled,
}

#[derive(Debug, Clone)]
pub struct Settled {
    pub user: String,
    pub outcome: Outcome,
}

/// Asks the server which password each user with a pending one holds, and records the answer.
pub async fn settle_pending(config: &Config, state: &mut State) -> Result<Vec<Settled>> {
    let users = state.secrets.pending_users();
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let target = Endpoint::from_url(&config.url(), state.trust_pem.clone())
        .expect("a validated config always gives a valid URL");
    let mut settled = Vec::new();
    for user in users {
        let new = state.secrets.served_password(&user).clone();
        let old = state
            .secrets
            .password(&user)
            .cloned()
            .expect("pending users exist");
        let outcome = if accepts(&target, &user, &new).await == Some(true) {
            // The old one must be refused too; nats-server never holds two for one user.
            if accepts(&target, &user, &old).await == Some(true) {
                Outcome::Unsettled
            } else {
                Outcome::Promoted
            }
        } else if accepts(&target, &user, &old).await == Some(true) {
            Outcome::Discarded
        } else {
            Outcome::Unsettled
        };
        match outcome {
            Outcome::Promoted => state.secrets.promote(&user, OffsetDateTime::now_utc()),
            Outcome::Discarded => {
                crate::ui::note(format!(
                    "{user}: the server kept the old password; the new one was dropped"
                ));
                state.secrets.discard_pending(&user)
            }
            Outcome::Unsettled => crate::ui::note(format!(
                "{user}: could not tell which password the server holds; both are kept, run again"
            )),
        }
        settled.push(Settled { user, outcome });
    }
    state.save_secrets()?;
    Ok(settled)
}

/// `Some(true)` accepted, `Some(false)` refused as a bad login, `None` could not tell.
async fn accepts(target: &Endpoint, user: &str, password: &Secret) -> Option<bool> {
    let login = Login {
        user: user.to_string(),
        password: password.clone(),
        permissions: None,
    };
    match nats_client::connect(target, &login).await {
        Ok(client) => {
            drop(client);
            Some(true)
        }
        Err(e) if nats_client::is_auth_error(&e) => Some(false),
        Err(_) => None,
    }
}
