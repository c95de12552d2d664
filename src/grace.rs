//! The end of a credential's grace period: a rotation with `--grace` keeps the old credential
//! valid under its own login ([`crate::state::GracedCredential`]); once the grace has ended,
//! the next change ([`crate::operation::converge`]) stops rendering it, the reload drops it,
//! and every node must then refuse it before it is forgotten.

use futures_util::future::join_all;
use time::OffsetDateTime;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::nats_client::Endpoint;
use crate::settle::accepts;
use crate::state::State;
use crate::ui;

/// Marks the credentials whose grace ended by `now` as retiring, so the render leaves them
/// out; saved unless `dry_run` (a dry run only shows the reload it would make).
pub fn expire(state: &mut State, now: OffsetDateTime, dry_run: bool) -> Result<()> {
    if !state.secrets.expire_graces(now) {
        return Ok(());
    }
    for (user, login, _) in state.secrets.retiring() {
        ui::note(format!(
            "{user}: the grace period of its old credential (login {login}) has ended: \
             retiring it"
        ));
    }
    if !dry_run {
        state.save_secrets()?;
    }
    Ok(())
}

/// Every node refuses each retiring credential: then it is forgotten. One that a node still
/// takes is an error; one no node could be asked about stays for the next run.
pub async fn prove_retired(config: &Config, state: &mut State) -> Result<()> {
    let retiring = state.secrets.retiring();
    if retiring.is_empty() {
        return Ok(());
    }
    let state_ref = &*state;
    let asks = retiring.iter().map(|(user, login, password)| async move {
        let answers = join_all(
            config
                .nodes()
                .iter()
                .enumerate()
                .map(|(i, node)| async move {
                    let target = Endpoint::from_url(&node.url(), state_ref.node_ca(i).to_string())
                        .expect("a validated config always gives a valid URL");
                    (
                        node.name.clone(),
                        accepts(&target, config, user, login, password).await,
                    )
                }),
        )
        .await;
        (user, login, answers)
    });
    let mut failures = Vec::new();
    let mut proven = Vec::new();
    for (user, login, answers) in join_all(asks).await {
        let taking: Vec<&str> = answers
            .iter()
            .filter(|(_, a)| *a == Some(true))
            .map(|(n, _)| n.as_str())
            .collect();
        let unknown = answers.iter().any(|(_, a)| a.is_none());
        if !taking.is_empty() {
            failures.push(format!(
                "{user}: the old credential (login {login}) is still accepted by {}",
                if config.is_cluster() {
                    format!("node {}", taking.join(", "))
                } else {
                    "the server".to_string()
                }
            ));
        } else if unknown {
            ui::note(format!(
                "{user}: could not log in from here to prove the old credential (login {login}) \
                 is refused; the next run asks again"
            ));
        } else {
            ui::note(format!(
                "{user}: the old credential (login {login}) is refused{}: retired",
                if config.is_cluster() {
                    " by every node"
                } else {
                    ""
                }
            ));
            proven.push((user.clone(), login.clone()));
        }
    }
    for (user, login) in &proven {
        state.secrets.forget_retired(user, login);
    }
    if !proven.is_empty() {
        state.save_secrets()?;
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(Error::failed(
        failures.join("\n"),
        Some("run `natsup status`, then `natsup up`".to_string()),
    ))
}
