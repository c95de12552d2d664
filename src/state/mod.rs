//! natsup's local state: the CA, the server certificate and the passwords of one deployment,
//! kept in `<state-dir>/<name>/` (mode 0700), outside the project folder so that committing the
//! project never commits a secret.
//!
//! ```text
//! <state-dir>/<name>/
//!   ca/rootCA.pem            0644  what clients trust (`natsup ca path`): the CA, and during
//!                                  a CA rotation the next CA after it
//!   ca/rootCA-key.pem        0400  the key of the first CA in rootCA.pem; never leaves here
//!   ca/next-rootCA.pem       0644  only during `rotate-ca`: the CA that will replace it
//!   ca/next-rootCA-key.pem   0400
//!   server/nats-server-cert.pem  0644
//!   server/nats-server-key.pem   0600
//!   server/next-pair.pem         0600  only while a new server pair is written: both of it
//!   nodes/<node>/nats-server-{cert,key}.pem   a cluster's: one certificate per node
//!                                  (instead of server/), valid for clients and routes
//!   secrets.yaml             0600  per user: password, its bcrypt hash, when it was rotated;
//!                                  a cluster's route credential, kept the same way
//!   deployment.yaml          0600  which deployment the state belongs to (its `id`, its
//!                                  servers): another one of the same name is refused it
//!   acme/account-<id>.json   0600  the ACME account (its key), one per ACME directory
//!   acme/cert.pem            0644  the publicly trusted chain (`tls.issuer: acme`)
//!   acme/key.pem             0600  its key, made here, never sent to the ACME CA
//!   nodes/<node>/acme/{cert,key}.pem  an entry of `nodes`' own ACME certificate
//! ```
//!
//! Everything natsup creates is written here before any server sees it, so a run that dies
//! half-way never leaves the server holding a credential that exists nowhere else.
//!
//! A key and its certificate are two files, written one after the other. A run that dies
//! between them is finished or undone by the next one that opens the state (under its lock):
//! a new server pair is first written whole to `server/next-pair.pem`, which the next run
//! copies into place; a pair found mismatched or half there anyway gets a new certificate
//! (the server never holds a pair that is not here, so nothing is lost); a CA that a run
//! stopped creating, from which no server certificate was issued yet, is made again. A CA
//! that certificates did come from is never made again: a CA file missing, a CA key that is
//! not its certificate's (an interrupted `ca import --force`), or `ca/` gone while node
//! certificates remain is reported as corrupt, and nothing is changed.
//!
//! The directory is named after the deployment's `name`; `deployment.yaml` says which
//! deployment of that name it belongs to, and another one is refused it (`owner`).
//!
//! The state is held once per deployment, whatever its number of nodes: one CA, one set of
//! secrets, and one certificate per node ([`NodeCert`], in the order of the config's nodes).

mod dir;
mod owner;
pub mod reach;
mod repair;
mod secrets;

use time::OffsetDateTime;

use crate::config::{Config, Node};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::fsutil::{create_private_dir, write_atomic};
use crate::passwords;
use crate::pki::{self, Ca, CertInfo, ServerCert};
use crate::secret::Secret;

pub use dir::StateDir;
pub use owner::OWNER_FILE;
use repair::{
    acme_server, issue_and_store, load_cas, load_secrets, load_server, load_server_repairing,
    refuse_lost_ca, remove_next_ca, repair_half_made_cas, save_secrets,
};
pub use secrets::{
    GracedCredential, PendingGrace, PendingPassword, ROUTE_USER, RetiredRoute, RoutePhase,
    RouteRotation, SYSTEM_USER, Secrets, UserSecret, grace_login,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Ca,
    ServerCert {
        reason: String,
    },
    Passwords {
        users: Vec<String>,
    },
    /// Hashes made again at the config's bcrypt cost, of the same passwords.
    Rehashed {
        users: Vec<String>,
        cost: u32,
    },
}

/// Everything secret about one deployment, loaded.
#[derive(Debug, Clone)]
pub struct State {
    pub dir: StateDir,
    /// The CA that signs server certificates now.
    pub ca: Ca,
    /// During a CA rotation, the CA that will replace it.
    pub next_ca: Option<Ca>,
    /// What clients trust: `ca`, then `next_ca` if any (the contents of `ca/rootCA.pem`).
    pub trust_pem: String,
    pub secrets: Secrets,
    /// Each node's certificate, in the order of [`Config::nodes`].
    pub certs: Vec<NodeCert>,
}

/// The certificate one node should present.
#[derive(Debug, Clone)]
pub struct NodeCert {
    /// The deployment's state, with this node's `server_subdir`.
    pub dir: StateDir,
    /// From `ca`, or with `tls.issuer: acme` the ACME CA's once there is one.
    pub server: ServerCert,
    /// `server.info()`, kept here for the many readers of the served serial and expiry.
    pub info: CertInfo,
    /// True when `server` is the ACME CA's: clients trust it through their system roots.
    pub publicly_trusted: bool,
    /// The node's certificate from natsup's CA: `server` itself, unless that is the ACME
    /// CA's. A cluster's routes present this one: the nodes verify each other against
    /// natsup's CA, and a route is dialed as a client, which a public CA's server
    /// certificate is not issued for.
    pub ca_issued: ServerCert,
}

impl NodeCert {
    /// A node that presents `ca_issued`, natsup's CA's certificate.
    fn own(dir: StateDir, ca_issued: ServerCert) -> NodeCert {
        NodeCert {
            dir,
            info: ca_issued.info().clone(),
            server: ca_issued.clone(),
            publicly_trusted: false,
            ca_issued,
        }
    }

    /// A node that presents the ACME CA's `acme` to clients.
    fn public(dir: StateDir, acme: ServerCert, ca_issued: ServerCert) -> NodeCert {
        NodeCert {
            dir,
            info: acme.info().clone(),
            server: acme,
            publicly_trusted: true,
            ca_issued,
        }
    }
}

impl State {
    /// Loads the state, creating what is missing: the CA, each node's certificate (also when
    /// its names changed, or the CA did), passwords for users that have none, and a cluster's
    /// route credential. Each new piece is on disk before this returns.
    pub fn ensure(
        config: &Config,
        dir: &StateDir,
        now: OffsetDateTime,
    ) -> Result<(State, Vec<Created>)> {
        // Before anything is read or repaired: another deployment's state is left as it is.
        owner::claim(config, dir)?;
        create_private_dir(&dir.root)?;
        let mut created = Vec::new();

        repair_half_made_cas(dir)?;
        let (ca, next_ca, trust_pem) = match load_cas(dir)? {
            Some(cas) => cas,
            None => {
                refuse_lost_ca(dir)?;
                let ca = pki::new_ca(&config.name, now)?;
                dir.write_ca(&ca)?;
                created.push(Created::Ca);
                let trust = ca.cert_pem().to_string();
                (ca, None, trust)
            }
        };
        let mut certs = Vec::new();
        for node in config.nodes() {
            let node_dir = dir.for_subdir(&node.state_subdir);
            let (cert, reason) = ensure_cert(config, node, &node_dir, &ca, next_ca.as_ref(), now)?;
            if let Some(reason) = reason {
                let reason = if config.is_cluster() {
                    format!("{reason} (node {})", node.name)
                } else {
                    reason
                };
                created.push(Created::ServerCert { reason });
            }
            certs.push(cert);
            // How to reach it, kept for the run that finds it removed from `nodes`.
            if config.is_cluster() {
                reach::record(dir, node)?;
            }
        }

        let mut secrets = load_secrets(&dir.secrets())?.unwrap_or_default();
        // A pending rotation of a user since removed from the config can never settle: the
        // server no longer has the user, so it takes neither password, and nobody is handed
        // either. It is dropped; the user's current password stays, should they come back.
        let removed: Vec<String> = secrets
            .pending_users()
            .into_iter()
            .filter(|u| u != SYSTEM_USER && config.user(u).is_none())
            .collect();
        if !removed.is_empty() {
            for user in &removed {
                secrets.discard_pending(user);
            }
            save_secrets(dir, &secrets)?;
            crate::ui::note(format!(
                "dropped the pending new password of {}: no longer a user in the config",
                removed.join(", ")
            ));
        }
        let missing: Vec<&str> = config
            .users
            .iter()
            .map(|u| u.name.as_str())
            .filter(|n| !secrets.users.contains_key(*n))
            .collect();
        if !missing.is_empty() {
            let new = passwords::generate_hashed(missing.len(), config.auth.bcrypt_cost);
            for (name, (password, bcrypt)) in missing.iter().zip(new) {
                secrets.users.insert(
                    name.to_string(),
                    UserSecret {
                        password,
                        bcrypt,
                        rotated_at: now,
                        pending: None,
                        login: None,
                        graced: Vec::new(),
                    },
                );
            }
            save_secrets(dir, &secrets)?;
            created.push(Created::Passwords {
                users: missing.iter().map(|s| s.to_string()).collect(),
            });
        }
        if config.is_cluster() && secrets.route.is_none() {
            secrets.route = Some(UserSecret::generate(config.auth.bcrypt_cost, now));
            save_secrets(dir, &secrets)?;
            created.push(Created::Passwords {
                users: vec![ROUTE_USER.to_string()],
            });
        }
        // Every deployment has a system user, one server too: `status` reads the server's own
        // figures with it, and a cluster removes a JetStream peer with it.
        if secrets.system.is_none() {
            secrets.system = Some(UserSecret::generate(config.auth.bcrypt_cost, now));
            save_secrets(dir, &secrets)?;
            created.push(Created::Passwords {
                users: vec![SYSTEM_USER.to_string()],
            });
        }
        // A node removed from the config still holds the route credential (in its
        // nats-server.conf, and a certificate valid for routes for up to 825 days): started
        // again, it would rejoin the cluster. Its state folder says it was a node; the route
        // credential is rotated ([`crate::route_rotation`]), and the folder goes once every
        // node refuses the old one.
        let removed = dir.removed_nodes(config);
        if config.is_cluster() && !removed.is_empty() && secrets.route_rotation.is_none() {
            secrets.schedule_route_rotation(format!(
                "node {} was removed from `nodes`",
                removed.join(", ")
            ));
            save_secrets(dir, &secrets)?;
        }
        // A hash of another cost than the config's (an older natsup's 11, or a changed
        // `auth.bcrypt_cost`) is made again, of the same password: the next `up` reloads the
        // server with it, and no client has to change anything or is disconnected.
        let cost = config.auth.bcrypt_cost;
        let rehashed = secrets.rehash(cost);
        if !rehashed.is_empty() {
            save_secrets(dir, &secrets)?;
            created.push(Created::Rehashed {
                users: rehashed,
                cost,
            });
        }

        Ok((
            State {
                dir: dir.clone(),
                ca,
                next_ca,
                trust_pem,
                secrets,
                certs,
            },
            created,
        ))
    }

    /// Loads existing state; anything missing is an error that says how to create it.
    pub fn load(config: &Config, dir: &StateDir) -> Result<State> {
        let all: Vec<String> = config.users.iter().map(|u| u.name.clone()).collect();
        State::load_for(config, dir, &all)
    }

    /// Like [`load`](Self::load), but only `users` need a password: `natsup env gameserver`
    /// works while a user just added to natsup.yaml has none yet.
    pub fn load_for(config: &Config, dir: &StateDir, users: &[String]) -> Result<State> {
        owner::check(config, dir)?;
        let (ca, next_ca, trust_pem) = load_cas(dir)?.ok_or_else(|| dir.missing("CA"))?;
        let mut certs = Vec::new();
        for node in config.nodes() {
            let node_dir = dir.for_subdir(&node.state_subdir);
            let what = if config.is_cluster() {
                format!("server certificate of node {}", node.name)
            } else {
                "server certificate".to_string()
            };
            let server = load_server(&node_dir, false)?.ok_or_else(|| dir.missing(&what))?;
            certs.push(match acme_server(config, node, &node_dir)? {
                Some(acme) => NodeCert::public(node_dir, acme, server),
                None => NodeCert::own(node_dir, server),
            });
        }
        let secrets = load_secrets(&dir.secrets())?.ok_or_else(|| dir.missing("passwords"))?;
        if let Some(user) = users.iter().find(|u| !secrets.users.contains_key(*u)) {
            return Err(dir.missing(&format!("password for user `{user}`")));
        }
        Ok(State {
            dir: dir.clone(),
            ca,
            next_ca,
            trust_pem,
            secrets,
            certs,
        })
    }

    /// What clients must trust: the CA bundle, or nothing (an empty string: the system's
    /// roots) when every node's certificate is publicly trusted.
    pub fn client_ca(&self) -> &str {
        if self.certs.iter().all(|c| c.publicly_trusted) {
            ""
        } else {
            &self.trust_pem
        }
    }

    /// What a client of node `i` must trust: the CA bundle, or nothing when the node's
    /// certificate is publicly trusted.
    pub fn node_ca(&self, i: usize) -> &str {
        if self.certs[i].publicly_trusted {
            ""
        } else {
            &self.trust_pem
        }
    }

    /// With `tls.issuer: acme`, why node `i`'s certificate must be ordered now, if it must:
    /// none yet, other names than the node's public ones, or a third of its lifetime left.
    pub fn acme_due(&self, config: &Config, i: usize, now: OffsetDateTime) -> Option<String> {
        config.acme()?;
        self.acme_missing(config, i)
            .or_else(|| self.certs[i].info.renewal_reason(now))
    }

    /// With `tls.issuer: acme`, why node `i` has no ACME certificate it can present, if it
    /// has none: none ordered yet, or the stored one no longer fits (its names differ from the
    /// config's public names, or its key and certificate do not match after a run died
    /// between the two writes). Such a node holds only natsup's CA's certificate.
    pub fn acme_missing(&self, config: &Config, i: usize) -> Option<String> {
        config.acme()?;
        let cert = &self.certs[i];
        if cert.publicly_trusted {
            return None;
        }
        Some(
            if cert.dir.acme_cert().exists() || cert.dir.acme_key().exists() {
                "the stored ACME certificate does not fit: its names differ from the config's public names, or its key does not match it".into()
            } else {
                "none from the ACME CA yet".into()
            },
        )
    }

    /// Refuses to hand node `i` natsup's CA's certificate when the config says its clients
    /// get the ACME CA's (`tls.issuer: acme`). Those clients trust only their system's roots:
    /// natsup's own check, which trusts natsup's CA, would pass, and every client would fail
    /// with UnknownIssuer. Every command that deploys asks this of every node once its ACME
    /// orders are done (`up` and `renew-cert` order what is missing first); `step` is the
    /// command, for the hint.
    pub fn refuse_private_ca_for_acme(&self, config: &Config, i: usize, step: &str) -> Result<()> {
        let Some(why) = self.acme_missing(config, i) else {
            return Ok(());
        };
        let who = if config.is_cluster() {
            format!("node {}", config.nodes()[i].name)
        } else {
            "the server".to_string()
        };
        let retry = if step == "up" {
            String::new()
        } else {
            format!(", then `natsup {step}` again")
        };
        Err(Error::usage(
            format!(
                "{who} must present the ACME CA's certificate (tls.issuer: acme), and there is none to deploy ({why}); natsup does not put its own CA's certificate in its place, which clients that trust the system's roots refuse"
            ),
            Some(format!(
                "run `natsup up`: it orders the certificate from the ACME CA{retry}; nothing was changed"
            )),
        ))
    }

    /// Stores the ACME CA's chain for node `i` and the key natsup made for it (key first),
    /// and makes it the certificate that node gets.
    pub fn store_acme(&mut self, i: usize, chain_pem: String, key_pem: Secret) -> Result<()> {
        let pair = ServerCert::from_pem(chain_pem, key_pem)
            .map_err(|e| Error::failed(format!("the ACME CA's certificate {e}"), None))?;
        let cert = &self.certs[i];
        let dir = &cert.dir;
        create_private_dir(&dir.acme_dir())?;
        write_atomic(&dir.acme_key(), pair.key_pem().expose().as_bytes(), 0o600)?;
        write_atomic(&dir.acme_cert(), pair.cert_pem().as_bytes(), 0o644)?;
        self.certs[i] = NodeCert::public(dir.clone(), pair, cert.ca_issued.clone());
        Ok(())
    }

    pub fn save_secrets(&self) -> Result<()> {
        save_secrets(&self.dir, &self.secrets)
    }

    /// Issues node `i` a new certificate from the CA and stores it. A node that presents the
    /// ACME CA's keeps doing so: the new one is for its routes.
    pub fn reissue_server_cert(
        &mut self,
        config: &Config,
        i: usize,
        now: OffsetDateTime,
    ) -> Result<()> {
        let node = &config.nodes()[i];
        let cert = &self.certs[i];
        let pair = issue_and_store(config, node, &cert.dir, &self.ca, now)?;
        self.certs[i] = if cert.publicly_trusted {
            NodeCert::public(cert.dir.clone(), cert.server.clone(), pair)
        } else {
            NodeCert::own(cert.dir.clone(), pair)
        };
        Ok(())
    }
}

/// A node's certificate as it is on disk, or a new one and the reason it was needed.
fn ensure_cert(
    config: &Config,
    node: &Node,
    dir: &StateDir,
    ca: &Ca,
    next_ca: Option<&Ca>,
    now: OffsetDateTime,
) -> Result<(NodeCert, Option<String>)> {
    // A server certificate from either CA of a rotation is in place: `rotate-ca --finish`
    // issues from the next one before it retires the old.
    let issuers: Vec<&str> = std::iter::once(ca)
        .chain(next_ca)
        .map(|c| c.info().subject.as_str())
        .collect();
    let (existing, broken) = load_server_repairing(dir)?;
    let sans = config.sans(node);
    let reason = match &existing {
        None => Some(broken.unwrap_or_else(|| "none existed".to_string())),
        Some(pair) => {
            let info = pair.info();
            if !info.has_sans(&sans) {
                Some(format!(
                    "its names ({}) differ from the config's ({})",
                    info.sans.join(", "),
                    sans.join(", ")
                ))
            } else if !issuers.contains(&info.issuer.as_str()) {
                Some("it was issued by another CA".to_string())
            } else {
                None
            }
        }
    };
    let server = match (existing, &reason) {
        (Some(pair), None) => pair,
        _ => issue_and_store(config, node, dir, ca, now)?,
    };
    let cert = match acme_server(config, node, dir)? {
        Some(acme) => NodeCert::public(dir.clone(), acme, server),
        None => NodeCert::own(dir.clone(), server),
    };
    Ok((cert, reason))
}

/// Where a deployment stands in replacing its CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaPhase {
    /// One CA; clients trust it.
    Single,
    /// `rotate-ca --begin` ran: clients trust old + new, the server still presents the old.
    Rotating,
}

impl State {
    pub fn ca_phase(&self) -> CaPhase {
        if self.next_ca.is_some() {
            CaPhase::Rotating
        } else {
            CaPhase::Single
        }
    }

    /// Makes the next CA and adds it to the trust bundle. Idempotent.
    pub fn begin_ca_rotation(&mut self, config: &Config, now: OffsetDateTime) -> Result<bool> {
        if self.next_ca.is_some() {
            return Ok(false);
        }
        let next = pki::new_ca(&config.name, now)?;
        write_atomic(
            &self.dir.next_ca_key(),
            next.key_pem().expose().as_bytes(),
            0o400,
        )?;
        failpoint::hit("state:next-ca-key-written");
        write_atomic(&self.dir.next_ca_cert(), next.cert_pem().as_bytes(), 0o644)?;
        self.trust_pem = format!("{}{}", self.ca.cert_pem(), next.cert_pem());
        write_atomic(&self.dir.ca_cert(), self.trust_pem.as_bytes(), 0o644)?;
        self.next_ca = Some(next);
        Ok(true)
    }

    /// Issues every node's certificate from the next CA (those that are not yet).
    pub fn issue_from_next_ca(&mut self, config: &Config, now: OffsetDateTime) -> Result<()> {
        let next = self.next_ca.clone().ok_or_else(|| {
            Error::usage(
                "no CA rotation is under way",
                Some("start one with `natsup rotate-ca --begin`".to_string()),
            )
        })?;
        for (node, cert) in config.nodes().iter().zip(&mut self.certs) {
            if cert.ca_issued.info().issuer != next.info().subject {
                let pair = issue_and_store(config, node, &cert.dir, &next, now)?;
                *cert = NodeCert::own(cert.dir.clone(), pair);
            }
        }
        Ok(())
    }

    /// Drops the old CA: the next one becomes the only one. Call once the server presents a
    /// certificate from the next CA.
    pub fn retire_old_ca(&mut self) -> Result<()> {
        let next = self
            .next_ca
            .take()
            .ok_or_else(|| Error::failed("no CA rotation is under way", None))?;
        // Key first; `load_cas` completes the rest if this run dies in between.
        write_atomic(
            &self.dir.ca_key(),
            next.key_pem().expose().as_bytes(),
            0o400,
        )?;
        write_atomic(&self.dir.ca_cert(), next.cert_pem().as_bytes(), 0o644)?;
        remove_next_ca(&self.dir)?;
        self.trust_pem = next.cert_pem().to_string();
        self.ca = next;
        Ok(())
    }
}
