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
    /// reload removes: a node keeps dialing a retired password until it is recreated, when its
    /// new server holds no connection made with it, so that dropping the URL closes nothing.
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
    /// The name the current password logs in with, when it is not the user's own: a rotation
    /// with a grace period gives the new password a login of its own ([`grace_login`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// Earlier credentials the server still accepts, each until its grace period ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub graced: Vec<GracedCredential>,
}

/// An earlier credential of a user, kept valid with the user's permissions for a grace period
/// after a rotation, so that the clients logged in with it stay connected.
///
/// It keeps the login it had, and the new password gets another: nats-server refuses two
/// entries with one user name (`Duplicate user`), and on every reload it checks each
/// connected client's CONNECT (user name and password) against the new users and closes those
/// that no longer match (nats-server 2.10.26, measured: a client of `U` with the old password
/// was closed with "Authorization Violation" when `U` got the new password and the old one
/// moved to another name; it stayed when `U` kept the old one and the new one got a new name).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GracedCredential {
    pub login: String,
    #[serde(with = "secret::exposed")]
    pub password: Secret,
    pub bcrypt: String,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    /// Its grace has ended and it is no longer rendered: it is forgotten once every node
    /// proved it refuses it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retiring: bool,
}

/// The login a password made at `at` by a rotation with a grace period gets:
/// `<user>__<yyyymmdd>T<hhmmss>` ([A-Za-z0-9_-], like every NATS user name natsup makes).
pub fn grace_login(user: &str, at: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]");
    format!(
        "{user}__{}",
        at.to_offset(time::UtcOffset::UTC)
            .format(&f)
            .expect("a UTC time formats")
    )
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingPassword {
    #[serde(with = "secret::exposed")]
    pub password: Secret,
    pub bcrypt: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// A rotation with a grace period: the new password logs in as `login`, and the current
    /// one stays valid for `grace_secs` once the new one is confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<PendingGrace>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingGrace {
    pub login: String,
    pub grace_secs: u64,
}

/// One credential the server should accept for a user, as rendered into nats-server.conf.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    pub login: &'a str,
    pub bcrypt: &'a str,
}

impl UserSecret {
    /// A new password of its own (natsup's route and system users), hashed at `cost`.
    pub fn generate(cost: u32, now: OffsetDateTime) -> UserSecret {
        let (password, bcrypt) = passwords::generate_hashed(1, cost)
            .pop()
            .expect("one password was asked for");
        UserSecret {
            password,
            bcrypt,
            rotated_at: now,
            pending: None,
            login: None,
            graced: Vec::new(),
        }
    }
}

impl Secrets {
    /// `user`'s credential: one of the users', or the system user's ([`SYSTEM_USER`]), which
    /// rotates the same way (pending, reload, proven, promoted) but lives apart, since it is
    /// in the system account and never handed to clients.
    pub fn entry(&self, user: &str) -> Option<&UserSecret> {
        if user == SYSTEM_USER {
            self.system.as_ref()
        } else {
            self.users.get(user)
        }
    }

    fn entry_mut(&mut self, user: &str) -> Option<&mut UserSecret> {
        if user == SYSTEM_USER {
            self.system.as_mut()
        } else {
            self.users.get_mut(user)
        }
    }

    fn known(&self, user: &str) -> &UserSecret {
        self.entry(user)
            .unwrap_or_else(|| panic!("no secret for user {user}"))
    }

    /// The hash the server should hold for `user`: the pending one while a rotation is under way.
    pub fn served_hash(&self, user: &str) -> &str {
        let s = self.known(user);
        s.pending.as_ref().map_or(&s.bcrypt, |p| &p.bcrypt)
    }

    /// The password a client should use once the server holds [`served_hash`](Self::served_hash).
    pub fn served_password(&self, user: &str) -> &Secret {
        let s = self.known(user);
        s.pending.as_ref().map_or(&s.password, |p| &p.password)
    }

    /// The current (confirmed) password.
    pub fn password(&self, user: &str) -> Option<&Secret> {
        self.entry(user).map(|s| &s.password)
    }

    /// The login the current (confirmed) password goes with: what `env` and `context` hand out.
    pub fn login<'a>(&'a self, user: &'a str) -> &'a str {
        self.entry(user)
            .and_then(|s| s.login.as_deref())
            .unwrap_or(user)
    }

    /// The login that goes with [`served_password`](Self::served_password).
    pub fn served_login<'a>(&'a self, user: &'a str) -> &'a str {
        match self.entry(user).and_then(|s| s.pending.as_ref()) {
            Some(PendingPassword { grace: Some(g), .. }) => &g.login,
            _ => self.login(user),
        }
    }

    /// Every credential the server should accept for `user`, in the order rendered: the served
    /// one, then (during a rotation with a grace period) the current one under its own login,
    /// then the earlier ones whose grace has not ended.
    pub fn served<'a>(&'a self, user: &'a str) -> Vec<Served<'a>> {
        let s = &self.users[user];
        let mut out = vec![Served {
            login: self.served_login(user),
            bcrypt: self.served_hash(user),
        }];
        if s.pending.as_ref().is_some_and(|p| p.grace.is_some()) {
            out.push(Served {
                login: self.login(user),
                bcrypt: &s.bcrypt,
            });
        }
        out.extend(s.graced.iter().filter(|g| !g.retiring).map(|g| Served {
            login: &g.login,
            bcrypt: &g.bcrypt,
        }));
        out
    }

    /// Marks every earlier credential whose grace ended by `now` as retiring (no longer
    /// rendered); returns whether any was newly marked.
    pub fn expire_graces(&mut self, now: OffsetDateTime) -> bool {
        let mut any = false;
        for g in self.users.values_mut().flat_map(|s| s.graced.iter_mut()) {
            if !g.retiring && g.until <= now {
                g.retiring = true;
                any = true;
            }
        }
        any
    }

    /// Ends `user`'s grace periods at once (a rotation without one: a password may have leaked).
    pub fn end_graces(&mut self, user: &str) {
        if let Some(s) = self.users.get_mut(user) {
            for g in &mut s.graced {
                g.retiring = true;
            }
        }
    }

    /// The credentials no longer rendered that every node must still be proven to refuse:
    /// (user, login, password).
    pub fn retiring(&self) -> Vec<(String, String, Secret)> {
        self.users
            .iter()
            .flat_map(|(u, s)| {
                s.graced
                    .iter()
                    .filter(|g| g.retiring)
                    .map(move |g| (u.clone(), g.login.clone(), g.password.clone()))
            })
            .collect()
    }

    /// Every node refuses `login` of `user`: it is forgotten.
    pub fn forget_retired(&mut self, user: &str, login: &str) {
        if let Some(s) = self.users.get_mut(user) {
            s.graced.retain(|g| !(g.retiring && g.login == login));
        }
    }

    /// Gives each named user a pending new password, keeping one an interrupted run already
    /// made (so its server may already hold it). With `grace`, each new password gets a login
    /// of its own and the current one stays valid that long ([`GracedCredential`]); without,
    /// the user's earlier credentials still in a grace period are retired with the current one.
    /// Returns the users with a pending password.
    pub fn begin_rotation(
        &mut self,
        users: &[String],
        cost: u32,
        now: OffsetDateTime,
        grace: Option<std::time::Duration>,
    ) -> Vec<String> {
        let fresh: Vec<&String> = users
            .iter()
            .filter(|u| self.entry(u).is_some_and(|s| s.pending.is_none()))
            .collect();
        let new = passwords::generate_hashed(fresh.len(), cost);
        for (user, (password, bcrypt)) in fresh.into_iter().zip(new) {
            let grace = grace.map(|g| PendingGrace {
                login: grace_login(user, now),
                grace_secs: g.as_secs(),
            });
            if grace.is_none() {
                self.end_graces(user);
            }
            if let Some(s) = self.entry_mut(user) {
                s.pending = Some(PendingPassword {
                    password,
                    bcrypt,
                    created_at: now,
                    grace,
                });
            }
        }
        self.pending_users()
    }

    /// Hashes again, at `cost`, every password (current or pending) whose hash has another
    /// cost; returns the users whose hashes changed.
    pub fn rehash(&mut self, cost: u32) -> Vec<String> {
        let stale = |hash: &str| passwords::cost_of(hash) != Some(cost);
        let system_user = SYSTEM_USER.to_string();
        let mut targets: Vec<(&String, &Secret, &mut String)> = Vec::new();
        let system = self.system.as_mut().map(|s| (&system_user, s));
        for (user, s) in system.into_iter().chain(self.users.iter_mut()) {
            if stale(&s.bcrypt) {
                targets.push((user, &s.password, &mut s.bcrypt));
            }
            if let Some(p) = s.pending.as_mut().filter(|p| stale(&p.bcrypt)) {
                targets.push((user, &p.password, &mut p.bcrypt));
            }
            for g in s.graced.iter_mut().filter(|g| stale(&g.bcrypt)) {
                targets.push((user, &g.password, &mut g.bcrypt));
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

    /// The users with a pending password, the system user last.
    pub fn pending_users(&self) -> Vec<String> {
        self.users
            .iter()
            .filter(|(_, s)| s.pending.is_some())
            .map(|(u, _)| u.clone())
            .chain(
                self.system
                    .as_ref()
                    .filter(|s| s.pending.is_some())
                    .map(|_| SYSTEM_USER.to_string()),
            )
            .collect()
    }

    /// The server proved it holds the pending password: it becomes the current one. With a
    /// grace period, the one it replaces stays valid, under its own login, until it ends.
    pub fn promote(&mut self, user: &str, now: OffsetDateTime) {
        if let Some(s) = self.entry_mut(user)
            && let Some(p) = s.pending.take()
        {
            let old_password = std::mem::replace(&mut s.password, p.password);
            let old_bcrypt = std::mem::replace(&mut s.bcrypt, p.bcrypt);
            if let Some(g) = p.grace {
                let old_login = s.login.replace(g.login).unwrap_or_else(|| user.to_string());
                s.graced.push(GracedCredential {
                    login: old_login,
                    password: old_password,
                    bcrypt: old_bcrypt,
                    until: now + time::Duration::seconds(g.grace_secs as i64),
                    retiring: false,
                });
            }
            s.rotated_at = now;
        }
    }

    /// Whether `user`'s pending password comes with a grace period (the current one stays).
    pub fn pending_graced(&self, user: &str) -> bool {
        self.entry(user)
            .and_then(|s| s.pending.as_ref())
            .is_some_and(|p| p.grace.is_some())
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

    /// Forgets the retired route passwords that `nodes` dial with, since each of them is about
    /// to run a new server (recreated), which makes no route with one. Returns those nodes that
    /// dialed one.
    pub fn forget_retired_routes_of(&mut self, nodes: &[String]) -> Vec<String> {
        let mut dropped = Vec::new();
        for r in &mut self.retired_routes {
            r.held_by.retain(|node, _| {
                let keep = !nodes.contains(node);
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
        if let Some(s) = self.entry_mut(user) {
            s.pending = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_user() -> Secrets {
        let mut s = Secrets::default();
        let password = Secret::new("old-password");
        s.users.insert(
            "gameserver".into(),
            UserSecret {
                bcrypt: passwords::hash(&password, 4),
                password,
                rotated_at: OffsetDateTime::UNIX_EPOCH,
                pending: None,
                login: None,
                graced: Vec::new(),
            },
        );
        s
    }

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    fn logins(s: &Secrets) -> Vec<&str> {
        s.served("gameserver").iter().map(|c| c.login).collect()
    }

    #[test]
    fn the_system_user_rotates_like_a_user_but_apart_from_them() {
        let mut s = one_user();
        s.system = Some(UserSecret::generate(4, at(0)));
        let old = s.password(SYSTEM_USER).unwrap().clone();
        let pending = s.begin_rotation(&[SYSTEM_USER.to_string()], 4, at(10), None);
        assert_eq!(pending, [SYSTEM_USER]);
        let new = s.served_password(SYSTEM_USER).clone();
        assert_ne!(new.expose(), old.expose());
        assert_ne!(
            s.served_hash(SYSTEM_USER),
            s.system.as_ref().unwrap().bcrypt
        );
        // The users are untouched, and no user of that name appears among them.
        assert!(s.users["gameserver"].pending.is_none());
        assert!(!s.users.contains_key(SYSTEM_USER));
        s.promote(SYSTEM_USER, at(20));
        assert_eq!(s.password(SYSTEM_USER).unwrap().expose(), new.expose());
        assert!(s.pending_users().is_empty());
        assert_eq!(s.login(SYSTEM_USER), SYSTEM_USER);
    }

    #[test]
    fn a_graced_rotation_serves_the_new_password_under_a_login_of_its_own() {
        let mut s = one_user();
        let old = s.password("gameserver").unwrap().clone();
        let now = at(1_796_000_000);
        let hour = std::time::Duration::from_secs(3600);
        s.begin_rotation(&["gameserver".into()], 4, now, Some(hour));
        let new_login = grace_login("gameserver", now);
        assert_eq!(new_login, "gameserver__20261130T005320");
        // Pending: both served, the old under the user's own name; env still hands out the old.
        assert_eq!(logins(&s), [new_login.as_str(), "gameserver"]);
        assert_eq!(s.login("gameserver"), "gameserver");
        assert_eq!(s.served_login("gameserver"), new_login);
        s.promote("gameserver", now);
        // Promoted: env hands out the new login; the old credential stays for the grace.
        assert_eq!(s.login("gameserver"), new_login);
        assert_ne!(s.password("gameserver").unwrap(), &old);
        assert_eq!(logins(&s), [new_login.as_str(), "gameserver"]);
        let g = &s.users["gameserver"].graced[0];
        assert_eq!((g.login.as_str(), &g.password), ("gameserver", &old));
        assert_eq!(g.until, now + time::Duration::hours(1));
        // Not yet over: nothing expires.
        assert!(!s.expire_graces(now + time::Duration::minutes(59)));
        assert!(s.retiring().is_empty());
        // Over: no longer served, retiring until proven refused, then forgotten.
        assert!(s.expire_graces(now + time::Duration::hours(1)));
        assert_eq!(logins(&s), [new_login.as_str()]);
        assert_eq!(s.retiring().len(), 1);
        s.forget_retired("gameserver", "gameserver");
        assert!(s.users["gameserver"].graced.is_empty());
        assert_eq!(logins(&s), [new_login.as_str()]);
    }

    #[test]
    fn a_rotation_without_grace_keeps_the_login_and_ends_earlier_graces() {
        let mut s = one_user();
        let now = at(1_796_000_000);
        s.begin_rotation(&["gameserver".into()], 4, now, None);
        // As before grace periods existed: one credential, the user's own name.
        assert_eq!(logins(&s), ["gameserver"]);
        s.promote("gameserver", now);
        assert_eq!(s.login("gameserver"), "gameserver");
        assert!(s.users["gameserver"].graced.is_empty());

        let hour = std::time::Duration::from_secs(3600);
        s.begin_rotation(&["gameserver".into()], 4, now, Some(hour));
        s.promote("gameserver", now);
        let login = s.login("gameserver").to_string();
        let later = now + time::Duration::minutes(5);
        s.begin_rotation(&["gameserver".into()], 4, later, None);
        // The new password keeps the current login; the graced one is retired at once.
        assert_eq!(s.served_login("gameserver"), login);
        assert_eq!(logins(&s), [login.as_str()]);
        assert_eq!(s.retiring().len(), 1);
    }
}
