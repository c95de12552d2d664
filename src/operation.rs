//! The one path every day-2 change takes: **stage → apply → prove → promote**.
//!
//! `rotate-passwords`, `renew-cert`, `rotate-ca --finish` and `up` (with the renewal it does by
//! itself) stage their change in local state first, saved before the server sees it. They then
//! apply it with the executor ([`deploy`]), and only count it done once the server shows it,
//! over NATS, from natsup's side:
//! - a pending password is promoted once the server accepts it *and* refuses the old one, and
//!   dropped once the server still takes the old one (nats-server never holds two passwords for
//!   one user, so exactly one of them is served). Neither answer keeps both, so nobody is
//!   locked out by a run that died anywhere; the next run settles it;
//! - a new certificate counts once the server presents its serial to a TLS client.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::Config;
use crate::deploy::{self, Deployed, Node};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::nats_client::{self, Endpoint, Login};
use crate::pki;
use crate::remote::Via;
use crate::secret::Secret;
use crate::session::Session;
use crate::state::State;
use crate::tls_probe;
use crate::ui;

/// How long the server has to confirm a reload or a start, for every change but `up
/// --timeout`'s.
pub const READY_TIMEOUT: Duration = deploy::DEFAULT_READY_TIMEOUT;

/// What the server must show, beyond settled passwords, before a change counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// Nothing more: the change was passwords (settled anyway) or plain files.
    Settled,
    /// The server presents the certificate in local state; `retry` is the command that
    /// finishes the job if it does not.
    ServesCertificate { retry: &'static str },
}

/// A change that reached the server and was proven.
#[derive(Debug)]
pub struct Applied {
    pub deployed: Deployed,
    pub settled: Vec<Settled>,
}

/// Applies what `session` has staged, then proves it. `step` names the command, for the
/// failpoint the crash tests stop at between applying and proving (`<step>:applied`).
pub async fn apply(step: &str, via: &Via, session: &mut Session, proof: Proof) -> Result<Applied> {
    let deployed = deploy::deploy(
        via,
        &Node::of(&session.config, &session.state),
        false,
        READY_TIMEOUT,
    )
    .await;
    failpoint::hit(&format!("{step}:applied"));
    prove(deployed, &session.config, &mut session.state, proof).await
}

/// The second half of [`apply`], for `up`, which applies over a connection it opened early.
/// Pending passwords are settled even when applying failed: a server that took them before
/// failing otherwise leaves clients holding a password that is no longer served.
pub async fn prove(
    deployed: Result<Deployed>,
    config: &Config,
    state: &mut State,
    proof: Proof,
) -> Result<Applied> {
    let settled = settle_pending(config, state).await?;
    let deployed = deployed?;
    ui::note(deployed.summary());
    if let Proof::ServesCertificate { retry } = proof {
        let served = served_serial(config).await?;
        if served != state.server_info.serial {
            return Err(Error::failed(
                format!(
                    "the server presents certificate {served}, not the new {}",
                    state.server_info.serial
                ),
                Some(format!("run `natsup status`, then `natsup {retry}`")),
            ));
        }
    }
    Ok(Applied { deployed, settled })
}

/// What became of a password that was pending.
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
    let target = Endpoint::from_url(&config.url(), state.client_ca().to_string())
        .expect("a validated config always gives a valid URL");
    // Every user is asked at once: a rotation of many users costs one user's logins.
    let asked = users.iter().map(|user| {
        let new = state.secrets.served_password(user).clone();
        let old = state
            .secrets
            .password(user)
            .cloned()
            .expect("pending users exist");
        let target = &target;
        async move {
            if accepts(target, config, user, &new).await == Some(true) {
                // The old one must be refused too; nats-server never holds two for one user.
                if accepts(target, config, user, &old).await == Some(true) {
                    Outcome::Unsettled
                } else {
                    Outcome::Promoted
                }
            } else if accepts(target, config, user, &old).await == Some(true) {
                Outcome::Discarded
            } else {
                Outcome::Unsettled
            }
        }
    });
    let outcomes = futures_util::future::join_all(asked).await;
    let mut settled = Vec::new();
    for (user, outcome) in users.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Promoted => state.secrets.promote(&user, OffsetDateTime::now_utc()),
            Outcome::Discarded => {
                ui::note(format!(
                    "{user}: the server kept the old password; the new one was dropped"
                ));
                state.secrets.discard_pending(&user)
            }
            Outcome::Unsettled => ui::note(format!(
                "{user}: could not tell which password the server holds; both are kept, run again"
            )),
        }
        settled.push(Settled { user, outcome });
    }
    state.save_secrets()?;
    Ok(settled)
}

/// `Some(true)` accepted, `Some(false)` refused as a bad login, `None` could not tell.
/// The user's own permissions go along: the login is only taken as accepted once it made a
/// round trip on a subject it may use.
async fn accepts(
    target: &Endpoint,
    config: &Config,
    user: &str,
    password: &Secret,
) -> Option<bool> {
    let login = Login {
        user: user.to_string(),
        password: password.clone(),
        permissions: config.user(user).and_then(|u| u.permissions.clone()),
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

/// The serial of the certificate the server presents now (a rustls probe, like a client).
pub async fn served_serial(config: &Config) -> Result<String> {
    let addr = Endpoint::from_url(&config.url(), String::new())
        .map_err(|e| Error::failed(e, None))?
        .addr;
    let probe = tls_probe::probe(&addr, &config.host, nats_client::STEP_TIMEOUT)
        .await
        .map_err(|e| Error::failed(e, None))?;
    let leaf = probe
        .chain
        .first()
        .ok_or_else(|| Error::failed("the server presented no certificate", None))?;
    Ok(pki::inspect_der(leaf)?.serial)
}
