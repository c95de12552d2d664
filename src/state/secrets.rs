//! The passwords of a deployment's users and its route credential, and their rotation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::passwords;
use crate::secret::{self, Secret};

/// Per-user passwords. The plaintext is what clients use; the hash is what the server gets,
/// stored so that rendering again is byte-identical.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    pub users: BTreeMap<String, UserSecret>,
    /// A cluster's route credential: the nodes dial each other with the password, and each
    /// accepts the hash (`cluster.authorization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<UserSecret>,
    /// A rotation of the route credential that is due or under way: saved before any server
    /// sees the new password, so an interrupted run resumes it where it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_rotation: Option<RouteRotation>,
    /// Route passwords that every node refuses, which some nodes still dial their peers with
    /// as well as the current one. nats-server tags each route connection with the route URL
    /// it was dialed with (password included) and closes the connections of a URL that a
    /// reload removes: a node keeps dialing a retired password until its server has restarted,
    /// when it holds no connection made with it, so that dropping the URL closes nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_routes: Vec<RetiredRoute>,
    /// The system account's one user ([`SYSTEM_USER`]): what natsup reads server figures
    /// (`$SYS.REQ.SERVER.PING.*`) and removes JetStream peers with. Never a user of the
    /// config, so `env`, `context` and `bundle` of a user never hand it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<UserSecret>,
}

/// Where a rotation of the route credential is. The new password is `route.pending`.
///
/// nats-server (2.10) accepts exactly one route user and password (`cluster.authorization`
/// with a `users` list is refused), so no node can accept both at once. It does not re-check
/// the routes of a full mesh on a reload that changes that password (each route counts as
/// one it dialed itself, and only accepted ones are re-checked), and a route is up as long
/// as one of its two nodes can log in to the other. So: first every node dials each peer
/// with both passwords ([`RoutePhase::Dialing`]), then every node accepts only the new one
/// ([`RoutePhase::Accepting`]); a route that drops at any moment comes back, and none is
/// closed on the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRotation {
    /// Why: asked for, or the nodes removed from the config.
    pub reason: String,
    pub phase: RoutePhase,
    /// The nodes whose config has carried the new password, so far: one removed from the
    /// config before the rotation ends holds it, and needs a rotation of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub given_to: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutePhase {
    /// Scheduled; no new password yet.
    Due,
    /// Every node accepts the current password and dials with both.
    Dialing,
    /// Every node accepts the new password and dials with both.
    Accepting,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredRoute {
    #[serde(with = "secret::exposed")]
    pub password: Secret,
    #[serde(with = "time::serde::rfc3339")]
    pub retired_at: OffsetDateTime,
    /// The nodes that still dial with it, each with the server (container id and start time)
    /// that may hold routes made with it: once a node runs another server, it is dropped.
    pub held_by: BTreeMap<String, String>,
}

/// The user name nodes of a cluster log in to each other's routes with.
pub const ROUTE_USER: &str = "natsup_route";

/// The user of the system account (`$SYS`), natsup's own: the config refuses a user of this
/// name, since nats-server refuses one user name twice (`Duplicate user`).
pub const SYSTEM_USER: &str = "natsup_sys";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSecret {
    #[serde(with = "secret::exposed")]
    pub password: Secret,
    pub bcrypt: String,
    #[serde(with = "time::serde::rfc3339")]
    pub rotated_at: OffsetDateTime,
    /// A new password saved before the server has it; promoted once the server proves it took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingPassword>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingPassword {
    #[serde(with = "secret::exposed")]
    pub password: Secret,
    pub bcrypt: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl Secrets {
    /// The hash the server should hold for `user`: the pending one while a rotation is under way.
    pub fn served_hash(&self, user: &str) -> &str {
        let s = &self.users[user];
        s.pending.as_ref().map_or(&s.bcrypt, |p| &p.bcrypt)
    }

    /// The password a client should use once the server holds [`served_hash`](Self::served_hash).
    pub fn served_password(&self, user: &str) -> &Secret {
        let s = &self.users[user];
        s.pending.as_ref().map_or(&s.password, |p| &p.password)
    }

    /// The current (confirmed) password.
    pub fn password(&self, user: &str) -> Option<&Secret> {
        self.users.get(user).map(|s| &s.password)
    }

    /// Gives each named user a pending new password, keeping one an interrupted run already
    /// made (so its server may already hold it). Returns the users with a pending password.
    pub fn begin_rotation(
        &mut self,
        users: &[String],
        cost: u32,
        now: OffsetDateTime,
    ) -> Vec<String> {
        let fresh: Vec<&String> = users
            .iter()
            .filter(|u| self.users.get(*u).is_some_and(|s| s.pending.is_none()))
            .collect();
        let new = passwords::generate_hashed(fresh.len(), cost);
        for (user, (password, bcrypt)) in fresh.into_iter().zip(new) {
            if let Some(s) = self.users.get_mut(user) {
                s.pending = Some(PendingPassword {
                    password,
                    bcrypt,
                    created_at: now,
                });
            }
        }
        self.pending_users()
    }

    /// Hashes again, at `cost`, every password (current or pending) whose hash has another
    /// cost; returns the users whose hashes changed.
    pub fn rehash(&mut self, cost: u32) -> Vec<String> {
        let stale = |hash: &str| passwords::cost_of(hash) != Some(cost);
        let mut targets: Vec<(&String, &Secret, &mut String)> = Vec::new();
        for (user, s) in self.users.iter_mut() {
            if stale(&s.bcrypt) {
                targets.push((user, &s.password, &mut s.bcrypt));
            }
            if let Some(p) = s.pending.as_mut().filter(|p| stale(&p.bcrypt)) {
                targets.push((user, &p.password, &mut p.bcrypt));
            }
        }
        let passwords: Vec<&Secret> = targets.iter().map(|(_, p, _)| *p).collect();
        let hashes = passwords::hash_all(&passwords, cost);
        let mut users = Vec::new();
        for ((user, _, slot), hash) in targets.into_iter().zip(hashes) {
            *slot = hash;
            if users.last() != Some(user) {
                users.push(user.clone());
            }
        }
        users
    }

    pub fn pending_users(&self) -> Vec<String> {
        self.users
            .iter()
            .filter(|(_, s)| s.pending.is_some())
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// The server proved it holds the pending password: it becomes the current one.
    pub fn promote(&mut self, user: &str, now: OffsetDateTime) {
        if let Some(s) = self.users.get_mut(user)
            && let Some(p) = s.pending.take()
        {
            s.password = p.password;
            s.bcrypt = p.bcrypt;
            s.rotated_at = now;
        }
    }

    /// The route password hash nodes accept now: the new one once a rotation reached
    /// [`RoutePhase::Accepting`].
    pub fn route_accepted_hash(&self) -> Option<&str> {
        let route = self.route.as_ref()?;
        let accepting = self
            .route_rotation
            .as_ref()
            .is_some_and(|r| r.phase == RoutePhase::Accepting);
        Some(match (&route.pending, accepting) {
            (Some(p), true) => &p.bcrypt,
            _ => &route.bcrypt,
        })
    }

    /// The passwords node `node` dials each peer with, in order: the retired ones its server
    /// may still hold routes of, the current one, and a rotation's new one.
    pub fn route_dial_passwords(&self, node: &str) -> Vec<&Secret> {
        let Some(route) = self.route.as_ref() else {
            return Vec::new();
        };
        let mut dial: Vec<&Secret> = self
            .retired_routes
            .iter()
            .filter(|r| r.held_by.contains_key(node))
            .map(|r| &r.password)
            .collect();
        dial.push(&route.password);
        if let Some(p) = &route.pending {
            dial.push(&p.password);
        }
        dial
    }

    /// Schedules a rotation of the route credential, unless one is already under way.
    pub fn schedule_route_rotation(&mut self, reason: String) {
        if self.route_rotation.is_none() {
            self.route_rotation = Some(RouteRotation {
                reason,
                phase: RoutePhase::Due,
                given_to: Vec::new(),
            });
        }
    }

    /// Every node refuses the old route password and accepts the new one: the new one becomes
    /// current, and the old one is retired, still dialed by the nodes in `held_by` (see
    /// [`Secrets::retired_routes`]).
    pub fn promote_route(&mut self, held_by: BTreeMap<String, String>, now: OffsetDateTime) {
        let Some(route) = self.route.as_mut() else {
            return;
        };
        let Some(p) = route.pending.take() else {
            return;
        };
        let old = std::mem::replace(&mut route.password, p.password);
        route.bcrypt = p.bcrypt;
        route.rotated_at = now;
        self.route_rotation = None;
        if !held_by.is_empty() {
            self.retired_routes.push(RetiredRoute {
                password: old,
                retired_at: now,
                held_by,
            });
        }
    }

    /// Forgets, for each node, the retired route passwords its running server cannot hold
    /// routes of: `running(node)` is the server it runs now (None: none, or a node no longer
    /// in the config). Returns the nodes that dropped one.
    pub fn prune_retired_routes(
        &mut self,
        running: impl Fn(&str) -> Option<String>,
    ) -> Vec<String> {
        let mut dropped = Vec::new();
        for r in &mut self.retired_routes {
            r.held_by.retain(|node, server| {
                let keep = running(node).as_deref() == Some(server.as_str());
                if !keep && !dropped.contains(node) {
                    dropped.push(node.clone());
                }
                keep
            });
        }
        self.retired_routes.retain(|r| !r.held_by.is_empty());
        dropped
    }

    /// The server kept the old password: forget the pending one.
    pub fn discard_pending(&mut self, user: &str) {
        if let Some(s) = self.users.get_mut(user) {
            s.pending = None;
        }
    }
}
