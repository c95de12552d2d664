//! Which password a server holds for a user whose rotation is pending, and what becomes of
//! the pending one: promoted once a server accepts it *and* refuses the old one, dropped once
//! the server still takes the old one (nats-server never holds two passwords for one user, so
//! exactly one of them is served). Neither answer keeps both, so nobody is locked out by a run
//! that died anywhere; the next run settles it. When the NATS port does not answer from here
//! (`bind: 127.0.0.1` on a remote host, a firewall), the node is asked over its open
//! connection instead: the nats-server.conf it last confirmed holds exactly one of the hashes.

use futures_util::future::join_all;
use time::OffsetDateTime;

use crate::config::Config;
use crate::deploy::{self, Server};
use crate::error::{Error, Result};
use crate::nats_client::{self, Endpoint, Login};
use crate::remote::AnyRemote;
use crate::render::CONF_FILE;
use crate::secret::Secret;
use crate::state::{Secrets, State};
use crate::ui;

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

/// Asks node `i` which password each user with a pending one holds, and records the answer:
/// over NATS first, then, for the users NATS could not tell about, over `remote`.
pub async fn settle_pending(
    config: &Config,
    state: &mut State,
    i: usize,
    remote: &mut AnyRemote,
) -> Result<Vec<Settled>> {
    let users = state.secrets.pending_users();
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let node = &config.nodes()[i];
    let target = Endpoint::from_url(&node.url(), state.node_ca(i).to_string())
        .expect("a validated config always gives a valid URL");
    // Every user is asked at once: a rotation of many users costs one user's logins.
    let asked = users.iter().map(|user| {
        let new = state.secrets.served_password(user).clone();
        let new_login = state.secrets.served_login(user).to_string();
        let old = state
            .secrets
            .password(user)
            .cloned()
            .expect("pending users exist");
        let old_login = state.secrets.login(user).to_string();
        // With a grace period the old credential stays, under its own login: the new one
        // being taken settles it.
        let graced = state.secrets.pending_graced(user);
        let target = &target;
        async move {
            if accepts(target, config, user, &new_login, &new).await == Some(true) {
                // The old one must be refused too; nats-server never holds two for one user.
                if graced {
                    Outcome::Promoted
                } else if accepts(target, config, user, &old_login, &old).await == Some(true) {
                    Outcome::Unsettled
                } else {
                    Outcome::Promoted
                }
            } else if accepts(target, config, user, &old_login, &old).await == Some(true) {
                Outcome::Discarded
            } else {
                Outcome::Unsettled
            }
        }
    });
    let mut outcomes = join_all(asked).await;
    if outcomes.contains(&Outcome::Unsettled) {
        let confirmed = confirmed_conf(config, state, i, remote).await;
        for (k, user) in users.iter().enumerate() {
            if outcomes[k] != Outcome::Unsettled {
                continue;
            }
            let answer = confirmed
                .as_deref()
                .map(|conf| held_in_conf(conf, &state.secrets, user));
            if let Some(outcome @ (Outcome::Promoted | Outcome::Discarded)) = answer {
                ui::note(format!(
                    "{user}: {} did not answer a login from here; the nats-server.conf the \
                     server last confirmed says which password it holds",
                    node.url()
                ));
                outcomes[k] = outcome;
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

/// The old credential of a user whose rotation is pending: its login and password.
#[derive(Debug, Clone)]
pub struct Rotating {
    pub user: String,
    pub login: String,
    pub password: Secret,
}

/// On a cluster, a rotated user's new password was proven on the node that settled it; the
/// others reloaded with the same hash. Each is asked too: the new password is accepted and
/// the old one refused (or, in a grace period, still accepted), on every node.
pub async fn prove_rotated(
    config: &Config,
    state: &State,
    rotating: &[Rotating],
    settled: &[Settled],
) -> Result<()> {
    let promoted: Vec<&Rotating> = rotating
        .iter()
        .filter(|Rotating { user: u, .. }| {
            settled
                .iter()
                .any(|s| &s.user == u && s.outcome == Outcome::Promoted)
        })
        .collect();
    if promoted.is_empty() {
        return Ok(());
    }
    let asks = config.nodes().iter().enumerate().flat_map(|(i, node)| {
        promoted.iter().map(move |r| async move {
            let user = &r.user;
            let target = Endpoint::from_url(&node.url(), state.node_ca(i).to_string())
                .expect("a validated config always gives a valid URL");
            let new = state.secrets.password(user).expect("a promoted user");
            let new_ok = accepts(&target, config, user, state.secrets.login(user), new).await;
            let old_ok = accepts(&target, config, user, &r.login, &r.password).await;
            let graced = state
                .secrets
                .entry(user)
                .expect("a promoted user")
                .graced
                .iter()
                .any(|g| g.login == r.login && !g.retiring);
            match (new_ok, old_ok) {
                (Some(true), Some(false)) if !graced => Ok(()),
                (Some(true), Some(true)) if graced => Ok(()),
                (Some(true), Some(false)) => Err(format!(
                    "node {} refuses {user}'s old password before its grace period ends",
                    node.name
                )),
                (None, _) | (_, None) => {
                    ui::note(format!(
                        "node {}: could not log in from here to check {user}'s passwords",
                        node.name
                    ));
                    Ok(())
                }
                (Some(false), _) => {
                    Err(format!("node {} refuses {user}'s new password", node.name))
                }
                (_, Some(true)) => Err(format!(
                    "node {} still takes {user}'s old password",
                    node.name
                )),
            }
        })
    });
    let failures: Vec<String> = join_all(asks)
        .await
        .into_iter()
        .filter_map(|r| r.err())
        .collect();
    if failures.is_empty() {
        return Ok(());
    }
    Err(Error::failed(
        failures.join("\n"),
        Some("run `natsup status`, then `natsup up`".to_string()),
    ))
}

/// The nats-server.conf node `i` was last confirmed on (the apply script copies it to
/// `.natsup/applied/` only once nats-server logged that it loaded it). `None` when it cannot
/// be read, or while a change is in flight (the live file differs from the confirmed one: the
/// server may hold either).
async fn confirmed_conf(
    config: &Config,
    state: &State,
    i: usize,
    remote: &mut AnyRemote,
) -> Option<String> {
    let observed = deploy::observe(remote, &Server::of(config, i, state))
        .await
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
fn held_in_conf(conf: &str, secrets: &Secrets, user: &str) -> Outcome {
    let quoted = |hash: &str| format!("\"{hash}\"");
    let Some(current) = secrets.entry(user) else {
        return Outcome::Unsettled;
    };
    let pending = secrets.served_hash(user);
    match (
        conf.contains(&quoted(pending)),
        conf.contains(&quoted(&current.bcrypt)),
    ) {
        (true, false) => Outcome::Promoted,
        // A rotation with a grace period serves both.
        (true, true) if secrets.pending_graced(user) => Outcome::Promoted,
        (false, true) => Outcome::Discarded,
        _ => Outcome::Unsettled,
    }
}

/// `Some(true)` accepted, `Some(false)` refused as a bad login, `None` could not tell.
/// The user's own permissions go along: `login` (the user's name, or a login of its own from
/// a rotation with a grace period) is only taken as accepted once it made a round trip on a
/// subject it may use.
pub async fn accepts(
    target: &Endpoint,
    config: &Config,
    user: &str,
    login: &str,
    password: &Secret,
) -> Option<bool> {
    let login = Login {
        user: login.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::state::{PendingPassword, UserSecret};

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
                    grace: None,
                }),
                login: None,
                graced: Vec::new(),
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
