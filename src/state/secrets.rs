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
}

/// The user name nodes of a cluster log in to each other's routes with.
pub const ROUTE_USER: &str = "natsup_route";

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

    /// The server kept the old password: forget the pending one.
    pub fn discard_pending(&mut self, user: &str) {
        if let Some(s) = self.users.get_mut(user) {
            s.pending = None;
        }
    }
}
