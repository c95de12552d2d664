//! The one path every day-2 change takes: **stage → apply → prove → promote**.
//!
//! `rotate-passwords`, `renew-cert`, `rotate-ca --finish` and `up` (with the renewal it does by
//! itself) stage their change in local state first, saved before the server sees it. They then
//! apply it with the executor ([`deploy`]), and only count it done once the server shows it,
//! over NATS, from natsup's side:
//! - a pending password is promoted once the server accepts it *and* refuses the old one, and
//!   dropped once the server still takes the old one (nats-server never holds two passwords for
//!   one user, so exactly one of them is served). Neither answer keeps both, so nobody is
//!   locked out by a run that died anywhere; the next run settles it. When the server's NATS
//!   port does not answer from here (`bind: 127.0.0.1` on a remote host, a firewall), the
//!   server is asked over its remote instead: the nats-server.conf it last confirmed holds
//!   exactly one of the two hashes;
//! - a new certificate counts once the server presents its serial to a TLS client.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::Config;
use crate::deploy::{self, Deployed, Node};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::nats_client::{self, Endpoint, Login};
use crate::pki;
use crate::remote::{Remote, Via};
use crate::render::CONF_FILE;
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
    prove(deployed, via, &session.config, &mut session.state, proof).await
}

/// The second half of [`apply`], for `up`, which applies over a connection it opened early.
/// Pending passwords are settled even when applying failed: a server that took them before
/// failing otherwise leaves clients holding a password that is no longer served.
pub async fn prove(
    deployed: Result<Deployed>,
    via: &Via,
    config: &Config,
    state: &mut State,
    proof: Proof,
) -> Result<Applied> {
    let settled = settle_pending(via, config, state).await?;
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

/// Asks the server which password each user with a pending one holds, and records the answer:
/// over NATS first, then, for the users NATS could not tell about, over `via`.
pub async fn settle_pending(via: &Via, config: &Config, state: &mut State) -> Result<Vec<Settled>> {
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
    let mut outcomes = futures_util::future::join_all(asked).await;
    if outcomes.contains(&Outcome::Unsettled) {
        let undecided: Vec<(usize, &String)> = users
            .iter()
            .enumerate()
            .filter(|(i, _)| outcomes[*i] == Outcome::Unsettled)
            .collect();
        let confirmed = confirmed_conf(via, config, state).await;
        for (i, user) in undecided {
            let answer = confirmed
                .as_deref()
                .map(|conf| held_in_conf(conf, &state.secrets, user));
            if let Some(outcome @ (Outcome::Promoted | Outcome::Discarded)) = answer {
                ui::note(format!(
                    "{user}: {} did not answer a login from here; the nats-server.conf the \
                     server last confirmed says which password it holds",
                    config.url()
                ));
                outcomes[i] = outcome;
            }
        }
    }
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

/// The nats-server.conf the running server was last confirmed on (the apply script copies it
/// to `.natsup/applied/` only once nats-server logged that it loaded it), read over the
/// deployment's remote. `None` when it cannot be read, or while a change is in flight (the
/// live file differs from the confirmed one: the server may hold either).
async fn confirmed_conf(via: &Via, config: &Config, state: &State) -> Option<String> {
    let mut remote = match via.connect().await {
        Ok(remote) => remote,
        Err(e) => {
            ui::note(format!(
                "could not ask the server over its remote either: {e}"
            ));
            return None;
        }
    };
    let observed = deploy::observe(&mut remote, &Node::of(config, state)).await;
    remote.close().await;
    let observed = observed
        .map_err(|e| {
            ui::note(format!(
                "could not ask the server over its remote either: {e}"
            ))
        })
        .ok()?;
    let applied = observed.content(".natsup/applied/nats-server.conf")?;
    let live = observed.content(CONF_FILE)?;
    (applied == live).then(|| String::from_utf8_lossy(applied).into_owned())
}

/// Which of `user`'s two hashes `conf` holds. bcrypt hashes carry a random salt, so a hash
/// names one password of one user.
fn held_in_conf(conf: &str, secrets: &crate::state::Secrets, user: &str) -> Outcome {
    let quoted = |hash: &str| format!("\"{hash}\"");
    let Some(current) = secrets.users.get(user) else {
        return Outcome::Unsettled;
    };
    let pending = secrets.served_hash(user);
    match (
        conf.contains(&quoted(pending)),
        conf.contains(&quoted(&current.bcrypt)),
    ) {
        (true, false) => Outcome::Promoted,
        (false, true) => Outcome::Discarded,
        _ => Outcome::Unsettled,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{PendingPassword, Secrets, UserSecret};

    fn secrets(current: &str, pending: Option<&str>) -> Secrets {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut s = Secrets::default();
        s.users.insert(
            "u".into(),
            UserSecret {
                password: Secret::new("old"),
                bcrypt: current.into(),
                rotated_at: now,
                pending: pending.map(|p| PendingPassword {
                    password: Secret::new("new"),
                    bcrypt: p.into(),
                    created_at: now,
                }),
            },
        );
        s
    }

    #[test]
    fn the_confirmed_conf_names_the_hash_the_server_holds() {
        let s = secrets("$2b$04$old", Some("$2b$04$new"));
        let conf = |hash: &str| format!("{{user: \"u\", password: \"{hash}\"}}");
        assert_eq!(
            held_in_conf(&conf("$2b$04$new"), &s, "u"),
            Outcome::Promoted
        );
        assert_eq!(
            held_in_conf(&conf("$2b$04$old"), &s, "u"),
            Outcome::Discarded
        );
        assert_eq!(
            held_in_conf(&conf("$2b$04$other"), &s, "u"),
            Outcome::Unsettled
        );
        // A hash is matched whole, quoted: a prefix of another is not it.
        assert_eq!(
            held_in_conf(&conf("$2b$04$newer"), &s, "u"),
            Outcome::Unsettled
        );
        assert_eq!(
            held_in_conf(&conf("$2b$04$new"), &s, "nobody"),
            Outcome::Unsettled
        );
    }
}
