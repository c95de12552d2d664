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
//!   acme/account-<id>.json   0600  the ACME account (its key), one per ACME directory
//!   acme/cert.pem            0644  the publicly trusted chain (`tls.issuer: acme`)
//!   acme/key.pem             0600  its key, made here, never sent to the ACME CA
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
//! stopped creating, from which no server certificate was issued yet, is made again.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::fsutil::{create_private_dir, read_optional, sync_dir, write_atomic};
use crate::passwords;
use crate::pki::{self, Ca, CertInfo, ServerCert};
use crate::secret::{self, Secret};

/// The paths of one deployment's state.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
    pub name: String,
    /// Where the server certificate lives under `root`: `server`, or `nodes/<node>` for one
    /// node of a cluster.
    pub server_subdir: String,
}

impl StateDir {
    pub fn new(state_dir: &Path, name: &str) -> StateDir {
        StateDir {
            root: state_dir.join(name),
            name: name.into(),
            server_subdir: "server".into(),
        }
    }

    /// The same deployment's state, with the certificate of cluster node `node`.
    pub fn for_node(&self, node: &str) -> StateDir {
        StateDir {
            server_subdir: format!("nodes/{node}"),
            ..self.clone()
        }
    }

    /// `~/.local/share/natsup` on Linux, the platform's data dir elsewhere.
    pub fn default_base() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "natsup").map(|d| d.data_dir().to_path_buf())
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca/rootCA.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca/rootCA-key.pem")
    }
    pub fn next_ca_cert(&self) -> PathBuf {
        self.root.join("ca/next-rootCA.pem")
    }
    pub fn next_ca_key(&self) -> PathBuf {
        self.root.join("ca/next-rootCA-key.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.root
            .join(&self.server_subdir)
            .join("nats-server-cert.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.root
            .join(&self.server_subdir)
            .join("nats-server-key.pem")
    }
    /// A new server certificate and its key in one file, written before either of the two
    /// files it replaces and removed after both.
    pub fn server_pair_journal(&self) -> PathBuf {
        self.root.join(&self.server_subdir).join("next-pair.pem")
    }
    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets.yaml")
    }
    /// The ACME account for one directory URL: an account belongs to one CA.
    pub fn acme_account(&self, directory_url: &str) -> PathBuf {
        use sha2::Digest;
        let id = hex::encode(&sha2::Sha256::digest(directory_url.as_bytes())[..8]);
        self.root.join(format!("acme/account-{id}.json"))
    }
    pub fn acme_cert(&self) -> PathBuf {
        self.root.join("acme/cert.pem")
    }
    pub fn acme_key(&self) -> PathBuf {
        self.root.join("acme/key.pem")
    }

    /// The stored ACME account credentials for `directory_url` (JSON, holding its key).
    pub fn read_acme_account(&self, directory_url: &str) -> Result<Option<Secret>> {
        Ok(read_optional(&self.acme_account(directory_url))?.map(Secret::new))
    }

    /// Keeps a new ACME account (0600): it is made once per directory and reused.
    pub fn write_acme_account(&self, directory_url: &str, json: &Secret) -> Result<()> {
        create_private_dir(&self.root.join("acme"))?;
        write_atomic(
            &self.acme_account(directory_url),
            json.expose().as_bytes(),
            0o600,
        )
    }

    /// Holds an exclusive lock on the deployment's state until the guard is dropped, so two
    /// natsup runs can never interleave their writes.
    pub fn lock(&self) -> Result<File> {
        create_private_dir(&self.root)?;
        let path = self.root.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        if file.try_lock().is_err() {
            crate::ui::note(format!(
                "natsup: waiting for another natsup run on `{}` to finish",
                self.name
            ));
            file.lock().map_err(|e| Error::io("lock", &path, e))?;
        }
        Ok(file)
    }

    /// Adopts `ca` as the deployment's CA (`natsup ca import`). Replacing a CA cuts off every
    /// client that trusts the old one, so an existing CA stays unless `force`.
    pub fn import_ca(&self, ca: &Ca, force: bool) -> Result<()> {
        let _lock = self.lock()?;
        if self.ca_cert().exists() && !force {
            return Err(Error::usage(
                format!("deployment `{}` already has a CA", self.name),
                Some("replacing it cuts off every client that trusts the old one; use `natsup rotate-ca`, or pass --force".to_string()),
            ));
        }
        self.write_ca(ca)
    }

    /// Key first: a CA certificate on disk always has its key beside it.
    fn write_ca(&self, ca: &Ca) -> Result<()> {
        create_private_dir(&self.root.join("ca"))?;
        write_atomic(&self.ca_key(), ca.key_pem().expose().as_bytes(), 0o400)?;
        failpoint::hit("state:ca-key-written");
        write_atomic(&self.ca_cert(), ca.cert_pem().as_bytes(), 0o644)
    }

    fn missing(&self, what: &str) -> Error {
        Error::MissingState {
            name: self.name.clone(),
            what: what.into(),
            dir: self.root.clone(),
        }
    }
}

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

/// What [`State::ensure`] had to create.
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
    /// The certificate the server should present: from `ca`, or with `tls.issuer: acme` the
    /// ACME CA's once there is one.
    pub server: ServerCert,
    /// `server.info()`, kept here for the many readers of the served serial and expiry.
    pub server_info: CertInfo,
    pub secrets: Secrets,
    /// True when `server` is the ACME CA's: clients trust it through their system roots and
    /// need no CA from natsup.
    pub publicly_trusted: bool,
}

impl State {
    /// Loads the state, creating what is missing: the CA, a server certificate (also when the
    /// config's SANs changed, or the CA did), and passwords for users that have none. Each new
    /// piece is on disk before this returns.
    pub fn ensure(
        config: &Config,
        dir: &StateDir,
        now: OffsetDateTime,
    ) -> Result<(State, Vec<Created>)> {
        create_private_dir(&dir.root)?;
        let mut created = Vec::new();

        repair_half_made_cas(dir)?;
        let (ca, next_ca, trust_pem) = match load_cas(dir)? {
            Some(cas) => cas,
            None => {
                let ca = pki::new_ca(&config.name, now)?;
                dir.write_ca(&ca)?;
                created.push(Created::Ca);
                let trust = ca.cert_pem().to_string();
                (ca, None, trust)
            }
        };
        // A server certificate from either CA of a rotation is in place: `rotate-ca --finish`
        // issues from the next one before it retires the old.
        let issuers: Vec<&str> = std::iter::once(&ca)
            .chain(next_ca.as_ref())
            .map(|c| c.info().subject.as_str())
            .collect();

        let (existing, broken) = load_server_repairing(dir)?;
        let reissue_reason = match &existing {
            None => Some(broken.unwrap_or_else(|| "none existed".to_string())),
            Some(pair) => {
                let info = pair.info();
                if !info.has_sans(&config.sans()) {
                    Some(format!(
                        "its names ({}) differ from the config's ({})",
                        info.sans.join(", "),
                        config.sans().join(", ")
                    ))
                } else if !issuers.contains(&info.issuer.as_str()) {
                    Some("it was issued by another CA".to_string())
                } else {
                    None
                }
            }
        };
        let server = match (existing, reissue_reason) {
            (Some(pair), None) => pair,
            (_, Some(reason)) => {
                let pair = issue_and_store(config, dir, &ca, now)?;
                created.push(Created::ServerCert { reason });
                pair
            }
            (None, None) => unreachable!(),
        };
        let (server, publicly_trusted) = match acme_server(config, dir)? {
            Some(acme) => (acme, true),
            None => (server, false),
        };
        let server_info = server.info().clone();

        let mut secrets = load_secrets(&dir.secrets())?.unwrap_or_default();
        // A pending rotation of a user since removed from the config can never settle: the
        // server no longer has the user, so it takes neither password, and nobody is handed
        // either. It is dropped; the user's current password stays, should they come back.
        let removed: Vec<String> = secrets
            .pending_users()
            .into_iter()
            .filter(|u| config.user(u).is_none())
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
                    },
                );
            }
            save_secrets(dir, &secrets)?;
            created.push(Created::Passwords {
                users: missing.iter().map(|s| s.to_string()).collect(),
            });
        }
        if config.is_cluster() && secrets.route.is_none() {
            let (password, bcrypt) = passwords::generate_hashed(1, config.auth.bcrypt_cost)
                .pop()
                .expect("one password was asked for");
            secrets.route = Some(UserSecret {
                password,
                bcrypt,
                rotated_at: now,
                pending: None,
            });
            save_secrets(dir, &secrets)?;
            created.push(Created::Passwords {
                users: vec![ROUTE_USER.to_string()],
            });
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
                server,
                server_info,
                secrets,
                publicly_trusted,
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
        let (ca, next_ca, trust_pem) = load_cas(dir)?.ok_or_else(|| dir.missing("CA"))?;
        let server = load_server(dir, false)?.ok_or_else(|| dir.missing("server certificate"))?;
        let (server, publicly_trusted) = match acme_server(config, dir)? {
            Some(acme) => (acme, true),
            None => (server, false),
        };
        let server_info = server.info().clone();
        let secrets = load_secrets(&dir.secrets())?.ok_or_else(|| dir.missing("passwords"))?;
        if let Some(user) = users.iter().find(|u| !secrets.users.contains_key(*u)) {
            return Err(dir.missing(&format!("password for user `{user}`")));
        }
        Ok(State {
            dir: dir.clone(),
            ca,
            next_ca,
            trust_pem,
            server,
            server_info,
            secrets,
            publicly_trusted,
        })
    }

    /// What clients must trust: the CA bundle, or nothing (an empty string: the system's
    /// roots) when the certificate is publicly trusted.
    pub fn client_ca(&self) -> &str {
        if self.publicly_trusted {
            ""
        } else {
            &self.trust_pem
        }
    }

    /// With `tls.issuer: acme`, why a certificate must be ordered now, if it must: none yet,
    /// other names than the config's public ones, or a third of its lifetime left.
    pub fn acme_due(&self, config: &Config, now: OffsetDateTime) -> Option<String> {
        config.acme()?;
        if !self.publicly_trusted {
            return Some(if self.dir.acme_cert().exists() {
                "the ACME certificate's names differ from the config's public names".into()
            } else {
                "none from the ACME CA yet".into()
            });
        }
        self.server_info.renewal_reason(now)
    }

    /// Stores the ACME CA's chain and the key natsup made for it (key first), and makes it
    /// the certificate the server gets.
    pub fn store_acme(&mut self, chain_pem: String, key_pem: Secret) -> Result<()> {
        let pair = ServerCert::from_pem(chain_pem, key_pem)
            .map_err(|e| Error::failed(format!("the ACME CA's certificate {e}"), None))?;
        create_private_dir(&self.dir.root.join("acme"))?;
        write_atomic(
            &self.dir.acme_key(),
            pair.key_pem().expose().as_bytes(),
            0o600,
        )?;
        write_atomic(&self.dir.acme_cert(), pair.cert_pem().as_bytes(), 0o644)?;
        self.server_info = pair.info().clone();
        self.server = pair;
        self.publicly_trusted = true;
        Ok(())
    }

    pub fn save_secrets(&self) -> Result<()> {
        save_secrets(&self.dir, &self.secrets)
    }

    /// Issues a new server certificate from the CA and stores it.
    pub fn reissue_server_cert(&mut self, config: &Config, now: OffsetDateTime) -> Result<()> {
        self.server = issue_and_store(config, &self.dir, &self.ca, now)?;
        self.server_info = self.server.info().clone();
        self.publicly_trusted = false;
        Ok(())
    }
}

/// Loads the signing CA, the next CA of a rotation, and the trust bundle, first finishing
/// whatever an interrupted `rotate-ca` left half-done.
fn load_cas(dir: &StateDir) -> Result<Option<(Ca, Option<Ca>, String)>> {
    // `--finish` writes the next key over the CA key first; if it died right after, the
    // swap is finished here, so the CA cert and key never disagree for long.
    if let (Some(key), Some(next_key)) = (
        read_optional(&dir.ca_key())?,
        read_optional(&dir.next_ca_key())?,
    ) && key == next_key
    {
        if let Some(next_cert) = read_optional(&dir.next_ca_cert())? {
            write_atomic(&dir.ca_cert(), next_cert.as_bytes(), 0o644)?;
        }
        remove_next_ca(dir)?;
    }
    let Some((ca_pem, ca_key)) = load_pair(&dir.ca_cert(), &dir.ca_key())? else {
        return Ok(None);
    };
    // rootCA.pem may hold the next CA too; the signing CA is the first certificate.
    let blocks = pki::pem_blocks(&ca_pem);
    let first = blocks
        .first()
        .cloned()
        .ok_or_else(|| Error::corrupt(dir.ca_cert(), "holds no certificate"))?;
    let next = load_pair(&dir.next_ca_cert(), &dir.next_ca_key())?;
    let trust = match &next {
        Some((next_pem, _)) => format!("{first}{next_pem}"),
        None => first.clone(),
    };
    // Repairs a `--begin` or `--finish` that died between its writes.
    if read_optional(&dir.ca_cert())?.as_deref() != Some(trust.as_str()) {
        write_atomic(&dir.ca_cert(), trust.as_bytes(), 0o644)?;
    }
    let ca =
        Ca::from_pem(&first, ca_key).map_err(|e| Error::corrupt(dir.ca_cert(), e.to_string()))?;
    let next = next
        .map(|(pem, key)| Ca::from_pem(&pem, key))
        .transpose()
        .map_err(|e| Error::corrupt(dir.next_ca_cert(), e.to_string()))?;
    Ok(Some((ca, next, trust)))
}

fn remove_next_ca(dir: &StateDir) -> Result<()> {
    for path in [dir.next_ca_cert(), dir.next_ca_key()] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &path, e)),
        }
    }
    Ok(())
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

    /// Issues the server certificate from the next CA (unless it already is).
    pub fn issue_from_next_ca(&mut self, config: &Config, now: OffsetDateTime) -> Result<bool> {
        let next = self.next_ca.clone().ok_or_else(|| {
            Error::usage(
                "no CA rotation is under way",
                Some("start one with `natsup rotate-ca --begin`".to_string()),
            )
        })?;
        if self.server_info.issuer == next.info().subject {
            return Ok(false);
        }
        self.server = issue_and_store(config, &self.dir, &next, now)?;
        self.server_info = self.server.info().clone();
        Ok(true)
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

fn issue_and_store(
    config: &Config,
    dir: &StateDir,
    ca: &Ca,
    now: OffsetDateTime,
) -> Result<ServerCert> {
    let issue = if config.this_node.is_some() {
        pki::issue_node_cert
    } else {
        pki::issue_server_cert
    };
    let pair = issue(ca, &config.sans(), config.cert.lifetime_days, now)?;
    if dir.server_subdir.contains('/') {
        create_private_dir(&dir.root.join("nodes"))?;
    }
    create_private_dir(&dir.root.join(&dir.server_subdir))?;
    // The whole pair first: from here on, a run that dies anywhere leaves a pair the next
    // run puts in place (`load_server`), never a key beside another key's certificate.
    let both = format!("{}{}", pair.cert_pem(), pair.key_pem().expose());
    write_atomic(&dir.server_pair_journal(), both.as_bytes(), 0o600)?;
    write_server_pair(dir, &pair)?;
    Ok(pair)
}

/// With `tls.issuer: acme`, the stored ACME certificate, if it names exactly the config's
/// public names (a changed name needs a new order).
fn acme_server(config: &Config, dir: &StateDir) -> Result<Option<ServerCert>> {
    if config.acme().is_none() {
        return Ok(None);
    }
    // The key and the certificate are two writes: a run that died between them leaves one
    // half, or a new key beside the old certificate. Either counts as no certificate, so the
    // next `up` orders one again rather than failing or deploying a pair nats-server refuses.
    let (cert, key) = (
        read_optional(&dir.acme_cert())?,
        read_optional(&dir.acme_key())?,
    );
    let (Some(cert_pem), Some(key_pem)) = (cert, key) else {
        return Ok(None);
    };
    let pair = ServerCert::from_pem(cert_pem, Secret::new(key_pem))
        .map_err(|e| Error::corrupt(dir.acme_cert(), e.to_string()))?;
    if !pair.key_matches().unwrap_or(false) {
        return Ok(None);
    }
    Ok(pair
        .info()
        .has_sans(&config.public_names().0)
        .then_some(pair))
}

/// Writes the key and the certificate from a pair already saved whole in the journal, then
/// drops the journal.
fn write_server_pair(dir: &StateDir, pair: &ServerCert) -> Result<()> {
    write_atomic(&dir.server_key(), pair.key_pem().expose().as_bytes(), 0o600)?;
    failpoint::hit("state:server-key-written");
    write_atomic(&dir.server_cert(), pair.cert_pem().as_bytes(), 0o644)?;
    let journal = dir.server_pair_journal();
    match std::fs::remove_file(&journal) {
        Ok(()) => sync_dir(&journal).map_err(|e| Error::io("sync", &journal, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", &journal, e)),
    }
}

/// The server pair. A pair still in the journal (its run died while writing it) is the one
/// that counts; with `repair` (under the state lock) it is also put in place.
fn load_server(dir: &StateDir, repair: bool) -> Result<Option<ServerCert>> {
    let journal = dir.server_pair_journal();
    if let Some(both) = read_optional(&journal)? {
        let cert_pem = pki::pem_blocks(&both)
            .into_iter()
            .next()
            .ok_or_else(|| Error::corrupt(&journal, "holds no certificate"))?;
        let end = both
            .find("-----END CERTIFICATE-----")
            .map(|i| i + "-----END CERTIFICATE-----".len())
            .unwrap_or_default();
        let key_pem = Secret::new(both[end..].trim_start().to_string());
        let pair = ServerCert::from_pem(cert_pem, key_pem)
            .map_err(|e| Error::corrupt(&journal, e.to_string()))?;
        if repair {
            crate::ui::note(
                "finished writing the server certificate and key that an interrupted run left half-written",
            );
            write_server_pair(dir, &pair)?;
        }
        return Ok(Some(pair));
    }
    let Some((cert_pem, key_pem)) = load_pair(&dir.server_cert(), &dir.server_key())? else {
        return Ok(None);
    };
    ServerCert::from_pem(cert_pem, key_pem)
        .map(Some)
        .map_err(|e| Error::corrupt(dir.server_cert(), e.to_string()))
}

/// The server pair, or why a new one is needed though files are there: one file of the pair
/// without the other, or a key that is not the certificate's. Both are what a run that died
/// between the two writes leaves (or an older natsup, which wrote no journal). The server
/// only ever gets a pair that is here, so a new pair from the same CA loses nothing.
fn load_server_repairing(dir: &StateDir) -> Result<(Option<ServerCert>, Option<String>)> {
    let (cert, key) = (dir.server_cert(), dir.server_key());
    match (cert.exists(), key.exists()) {
        (true, false) | (false, true) if !dir.server_pair_journal().exists() => {
            let (there, gone) = if cert.exists() {
                (&cert, &key)
            } else {
                (&key, &cert)
            };
            return Ok((
                None,
                Some(format!(
                    "{} was there without {} (a run stopped between writing the two)",
                    there.display(),
                    gone.display()
                )),
            ));
        }
        _ => {}
    }
    let Some(pair) = load_server(dir, true)? else {
        return Ok((None, None));
    };
    match pair.key_matches() {
        Ok(true) => Ok((Some(pair), None)),
        Ok(false) => Ok((
            None,
            Some(format!(
                "{} was not the key of {} (a run stopped between writing the two)",
                key.display(),
                cert.display()
            )),
        )),
        Err(e) => Err(Error::corrupt(&key, e.to_string())),
    }
}

/// A CA a run stopped creating: `write_ca` (and `begin_ca_rotation` for the next CA) writes
/// the key, then the certificate, so a run that died between them leaves one without the
/// other. While no server certificate exists, nothing was issued from that CA and no server
/// or client has it: it is removed and made again rather than reported as corrupt. The next
/// CA of a rotation reaches clients only through rootCA.pem, written after both of its files:
/// while rootCA.pem does not hold it, it is dropped and `rotate-ca --begin` makes it again.
fn repair_half_made_cas(dir: &StateDir) -> Result<()> {
    let half = |cert: &Path, key: &Path| cert.exists() != key.exists();
    let no_server = !dir.server_cert().exists()
        && !dir.server_key().exists()
        && !dir.server_pair_journal().exists();
    if half(&dir.ca_cert(), &dir.ca_key())
        && no_server
        && !dir.next_ca_cert().exists()
        && !dir.next_ca_key().exists()
    {
        crate::ui::note(
            "a run stopped while creating the CA (only its key or only its certificate was \
             written); no server certificate came from it, so it is made again",
        );
        remove_files(&[dir.ca_cert(), dir.ca_key()])?;
        return Ok(());
    }
    if half(&dir.next_ca_cert(), &dir.next_ca_key()) {
        let trusted = match read_optional(&dir.next_ca_cert())? {
            Some(next) => {
                read_optional(&dir.ca_cert())?.is_some_and(|trust| trust.contains(next.trim()))
            }
            None => false,
        };
        let retiring = read_optional(&dir.next_ca_key())?
            .is_some_and(|next_key| read_optional(&dir.ca_key()).ok().flatten() == Some(next_key));
        // `retiring`: `retire_old_ca` died after its first write; `load_cas` finishes that.
        if !trusted && !retiring {
            crate::ui::note(
                "a run stopped while `rotate-ca --begin` created the next CA; no client was \
                 given it yet, so it is dropped (run `natsup rotate-ca --begin` again)",
            );
            remove_files(&[dir.next_ca_cert(), dir.next_ca_key()])?;
        }
    }
    Ok(())
}

fn remove_files(paths: &[PathBuf]) -> Result<()> {
    for path in paths {
        match std::fs::remove_file(path) {
            Ok(()) => sync_dir(path).map_err(|e| Error::io("sync", path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", path, e)),
        }
    }
    Ok(())
}

/// The PEM texts of a certificate file and its key file: both, or neither. One without the
/// other is corrupt state, not "missing".
fn load_pair(cert: &Path, key: &Path) -> Result<Option<(String, Secret)>> {
    match (read_optional(cert)?, read_optional(key)?) {
        (Some(cert_pem), Some(key_pem)) => Ok(Some((cert_pem, Secret::new(key_pem)))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::corrupt(
            cert,
            format!("its key {} is missing", key.display()),
        )),
        (None, Some(_)) => Err(Error::corrupt(
            key,
            format!("its certificate {} is missing", cert.display()),
        )),
    }
}

fn load_secrets(path: &Path) -> Result<Option<Secrets>> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    serde_yaml::from_str(&text)
        .map(Some)
        .map_err(|e| Error::corrupt(path, format!("cannot be read: {e}")))
}

fn save_secrets(dir: &StateDir, secrets: &Secrets) -> Result<()> {
    let text = serde_yaml::to_string(secrets).expect("secrets always serialize");
    write_atomic(&dir.secrets(), text.as_bytes(), 0o600)
}
