//! A new route credential for a cluster, with no route closed and no message lost: what
//! `rotate-passwords --route` asks for, and what `up` does once a node was removed from
//! `nodes` (that node's server still holds the old credential, and its certificate stays
//! valid for routes).
//!
//! What nats-server 2.10 does, measured on 2.10.26 with three nodes in a full mesh (every
//! node lists every other in `routes`), and read in its route and reload code:
//! - `cluster.authorization` holds one user and password; a `users` list there is refused
//!   ("Cluster authorization does not allow multiple users"). No node accepts two.
//! - Only the accepting side checks a route's password. On a reload that changes it, a node
//!   re-checks only the routes it accepted and never dialed; in a full mesh each node also
//!   dials its peers, so every route counts as dialed on both sides, none is re-checked and
//!   none is closed. New route logins with the old password are refused from then on.
//! - A route URL carries the password it dials with, and each route connection is tagged with
//!   the URL it was made from; a reload that removes a URL closes the connections tagged with
//!   it, and a node re-dials only URLs the reload added. Changing the password in a node's
//!   URLs therefore closes every route of that node until it has dialed again (tens of ms):
//!   with six clients (two per node) each publishing to an R3 stream every 10 ms, a rolling
//!   pass that dropped the old password from the URLs after every node accepted the new one
//!   failed 41 publishes ("no responders": the stream's node was unreachable for that moment).
//!   Switching a node to accept-new *and* dial-new in one reload is worse: its peers still
//!   accept only the old password and it accepts only the new one, so it is cut off (seen
//!   here: not back in the cluster after 60 s).
//! - A URL to a server that is already routed to ends as a duplicate route, and a refused
//!   login ends its attempt: the extra URLs cost a few "authentication error" lines, not a
//!   loop (measured: 4-6 per node over both passes, 12-15 per node when a node restarted with
//!   a retired password still in its URLs).
//!
//! So the rotation takes two rolling passes through [`operation::converge`] (gate, reload,
//! back in the cluster, one node at a time), each resumable from state:
//! 1. every node dials each peer with the current *and* the new password, and accepts the
//!    current one (the new URLs are refused, or found to duplicate a route already up);
//! 2. every node accepts only the new password. Every route stays up, and a route that drops
//!    during either pass comes back, since one of its two nodes can always log in to the other.
//!
//! Then every node is asked, as a route would ([`crate::route_probe`]), and must refuse the
//! old password and accept the new one; only then is the new one made current (the same rule
//! as a user's password in [`crate::settle`]). The old password stays in each node's route
//! URLs, refused everywhere, until that node is recreated (see
//! [`crate::state::Secrets::retired_routes`]): dropping it before would close its routes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use time::OffsetDateTime;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::operation::{self, Change, Member};
use crate::passwords;
use crate::route_probe::{RouteListener, RouteLogin, route_login};
use crate::secret::Secret;
use crate::state::{PendingPassword, ROUTE_USER, RoutePhase, State};
use crate::ui;

/// What a finished rotation did.
#[derive(Debug)]
pub struct Rotated {
    pub reason: String,
    /// Removed nodes whose state folder was forgotten.
    pub forgotten: Vec<String>,
    pub commands: usize,
    pub elapsed: Duration,
}

/// How long every node gets to show it refuses the old password and accepts the new one.
const PROOF_PATIENCE: Duration = Duration::from_secs(15);

/// Runs (or resumes) the rotation the state has due, if any.
pub async fn finish(
    config: &Config,
    state: &mut State,
    members: &[Member],
    timeout: Duration,
) -> Result<Option<Rotated>> {
    let Some(rotation) = state.secrets.route_rotation.clone() else {
        return Ok(None);
    };
    let started = Instant::now();
    if !config.is_cluster() {
        // One server has no routes, so no route credential to take back.
        state.secrets.route_rotation = None;
        state.save_secrets()?;
        let forgotten = forget_removed(config, state)?;
        return Ok(Some(Rotated {
            reason: rotation.reason,
            forgotten,
            commands: 0,
            elapsed: started.elapsed(),
        }));
    }
    ui::note(format!(
        "rotating the route credential: {}",
        rotation.reason
    ));
    let change = Change {
        timeout,
        ..Change::settled("rotate-route", config)
    };
    let mut commands = 0;
    let mut phase = rotation.phase;
    if phase == RoutePhase::Due {
        let (password, bcrypt) = passwords::generate_hashed(1, config.auth.bcrypt_cost)
            .pop()
            .expect("one password was asked for");
        let route = state
            .secrets
            .route
            .as_mut()
            .expect("a cluster's state always has its route credential");
        route.pending = Some(PendingPassword {
            password,
            bcrypt,
            created_at: OffsetDateTime::now_utc(),
            grace: None,
        });
        phase = set_phase(state, RoutePhase::Dialing)?;
        failpoint::hit("rotate-route:pending-saved");
    }
    if phase == RoutePhase::Dialing {
        given_to(config, state)?;
        ui::note("route credential, pass 1 of 2: every node dials its peers with both passwords");
        commands += operation::converge(config, state, members, None, &change)
            .await?
            .commands;
        set_phase(state, RoutePhase::Accepting)?;
        failpoint::hit("rotate-route:dialing-both");
    }
    given_to(config, state)?;
    ui::note("route credential, pass 2 of 2: every node accepts only the new password");
    let rolled = operation::converge(config, state, members, None, &change).await?;
    commands += rolled.commands;
    let route = state.secrets.route.as_ref().expect("a cluster's route");
    let old = route.password.clone();
    let new = route
        .pending
        .as_ref()
        .expect("a rotation under way has its new password")
        .password
        .clone();
    prove(config, state, &old, &new).await?;
    // Each node's server may hold routes made with the old password until it restarts.
    let held_by: BTreeMap<String, String> = members
        .iter()
        .filter_map(|m| Some((m.name.clone(), rolled.servers.get(m.index)?.clone()?)))
        .collect();
    // A node dropped from the config after its files carried the new password (this rotation
    // was interrupted, then the node removed) holds what is now current: it needs a rotation
    // of its own, run at once.
    let names: Vec<&str> = config.nodes().iter().map(|n| n.name.as_str()).collect();
    let holders: Vec<String> = state
        .secrets
        .route_rotation
        .as_ref()
        .map(|r| r.given_to.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|n| !names.contains(&n.as_str()))
        .collect();
    state
        .secrets
        .promote_route(held_by, OffsetDateTime::now_utc());
    state.save_secrets()?;
    let mut forgotten = forget_removed(config, state)?;
    if !holders.is_empty() {
        state.secrets.schedule_route_rotation(format!(
            "node {} was removed while the route credential was being rotated, and holds the new one",
            holders.join(", ")
        ));
        state.save_secrets()?;
        let again = Box::pin(finish(config, state, members, timeout))
            .await?
            .expect("a rotation was just scheduled");
        commands += again.commands;
        forgotten.extend(again.forgotten);
    }
    Ok(Some(Rotated {
        reason: rotation.reason,
        forgotten,
        commands,
        elapsed: started.elapsed(),
    }))
}

/// Records that every node now in the config carries the new password from here on.
fn given_to(config: &Config, state: &mut State) -> Result<()> {
    if let Some(r) = state.secrets.route_rotation.as_mut() {
        for node in config.nodes() {
            if !r.given_to.contains(&node.name) {
                r.given_to.push(node.name.clone());
            }
        }
    }
    state.save_secrets()
}

fn set_phase(state: &mut State, phase: RoutePhase) -> Result<RoutePhase> {
    if let Some(r) = state.secrets.route_rotation.as_mut() {
        r.phase = phase;
    }
    state.save_secrets()?;
    Ok(phase)
}

/// Forgets the state folders of nodes no longer in the config: their credential is refused.
fn forget_removed(config: &Config, state: &State) -> Result<Vec<String>> {
    let removed = state.dir.removed_nodes(config);
    for name in &removed {
        state.dir.forget_node(name)?;
    }
    Ok(removed)
}

/// Every node refuses a route login with `old` and accepts one with `new`, asked as a peer
/// would (its own certificate, the deployment's CA), all at once; a node that cannot be
/// asked yet is asked again until [`PROOF_PATIENCE`] is over.
pub async fn prove(config: &Config, state: &State, old: &Secret, new: &Secret) -> Result<()> {
    let deadline = Instant::now() + PROOF_PATIENCE;
    let asks = config
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, node)| async move {
            let addr = crate::config::host_port(&node.host, config.cluster.port);
            let cert = &state.certs[i].ca_issued;
            loop {
                let ask = |password: Secret| {
                    let addr = addr.clone();
                    async move {
                        let listener = RouteListener {
                            addr: &addr,
                            host: &node.host,
                            ca_pem: &state.trust_pem,
                            client: cert,
                            cluster: &config.name,
                        };
                        route_login(
                            listener,
                            ROUTE_USER,
                            &password,
                            crate::nats_client::STEP_TIMEOUT,
                        )
                        .await
                    }
                };
                let (with_old, with_new) = (ask(old.clone()).await, ask(new.clone()).await);
                let verdict = match (&with_old, &with_new) {
                    (RouteLogin::Refused, RouteLogin::Accepted) => return Ok(()),
                    (RouteLogin::Accepted, _) => {
                        format!("node {} still accepts the old route password", node.name)
                    }
                    (_, RouteLogin::Refused) => {
                        format!("node {} refuses the new route password", node.name)
                    }
                    (RouteLogin::Unknown(why), _) | (_, RouteLogin::Unknown(why)) => {
                        // The proof dials the route port from this machine, as a peer would:
                        // a firewall that opens it only between the nodes stops it here.
                        format!(
                            "node {}: could not log in to its route port {addr} from this machine: {why} (the proof dials it as a peer would: allow this machine to reach it, at least while rotating)",
                            node.name
                        )
                    }
                };
                if Instant::now() >= deadline {
                    return Err(verdict);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
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
        Some(
            "the old route password is kept as current until every node refuses it; run the \
             same command again (it resumes where it stopped)"
                .to_string(),
        ),
    ))
}
