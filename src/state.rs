//! natsup's local state: the CA, the server certificate and the passwords of one deployment,
//! kept in `<state-dir>/<name>/` (mode 0700), outside the project folder so that committing the
//! project never commits a secret.
//!
//! ```text
//! <state-dir>/<name>/
//!   ca/rootCA.pem            0644  what clients trust (`natsup ca path`)
//!   ca/rootCA-key.pem        0400  never leaves this directory
//!   server/nats-server-cert.pem  0644
//!   server/nats-server-key.pem   0600
//!   secrets.yaml             0600  per user: password, its bcrypt hash, when it was rotated
//! ```
//!
//! Everything natsup creates is written here before any server sees it, so a run that dies
//! half-way never leaves the server holding a credential that exists nowhere else.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil::{create_private_dir, read_optional, write_atomic};
use crate::passwords;
use crate::pki::{self, CertInfo, CertifiedKey};
use crate::secret::{self, Secret};

/// The paths of one deployment's state.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
    pub name: String,
}

impl StateDir {
    pub fn new(state_dir: &Path, name: &str) -> StateDir {
        StateDir {
            root: state_dir.join(name),
            name: name.into(),
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
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server/nats-server-cert.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server/nats-server-key.pem")
    }
    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets.yaml")
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
            eprintln!(
                "natsup: waiting for another natsup run on `{}` to finish",
                self.name
            );
            file.lock().map_err(|e| Error::io("lock", &path, e))?;
        }
        Ok(file)
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
}

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
}

/// What [`State::ensure`] had to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Ca,
    ServerCert { reason: String },
    Passwords { users: Vec<String> },
}

/// Everything secret about one deployment, loaded.
#[derive(Debug, Clone)]
pub struct State {
    pub dir: StateDir,
    pub ca: CertifiedKey,
    pub server: CertifiedKey,
    pub server_info: CertInfo,
    pub secrets: Secrets,
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

        let ca = match load_pair(&dir.ca_cert(), &dir.ca_key())? {
            Some(ca) => ca,
            None => {
                let ca = pki::new_ca(&config.name, now).map_err(|e| Error::failed(e.0, None))?;
                create_private_dir(&dir.root.join("ca"))?;
                // Key first: a CA certificate on disk always has its key beside it.
                write_atomic(&dir.ca_key(), ca.key_pem.expose().as_bytes(), 0o400)?;
                write_atomic(&dir.ca_cert(), ca.cert_pem.as_bytes(), 0o644)?;
                created.push(Created::Ca);
                ca
            }
        };
        let ca_info = pki::inspect(&ca.cert_pem).map_err(|e| Error::corrupt(dir.ca_cert(), e.0))?;

        let existing = load_pair(&dir.server_cert(), &dir.server_key())?;
        let reissue_reason = match &existing {
            None => Some("none existed".to_string()),
            Some(pair) => {
                let info = pki::inspect(&pair.cert_pem)
                    .map_err(|e| Error::corrupt(dir.server_cert(), e.0))?;
                if !info.has_sans(&config.sans()) {
                    Some(format!(
                        "its names ({}) differ from the config's ({})",
                        info.sans.join(", "),
                        config.sans().join(", ")
                    ))
                } else if info.issuer != ca_info.subject {
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
        let server_info =
            pki::inspect(&server.cert_pem).map_err(|e| Error::corrupt(dir.server_cert(), e.0))?;

        let mut secrets = load_secrets(&dir.secrets())?.unwrap_or_default();
        let missing: Vec<&str> = config
            .users
            .iter()
            .map(|u| u.name.as_str())
            .filter(|n| !secrets.users.contains_key(*n))
            .collect();
        if !missing.is_empty() {
            let new: Vec<Secret> = missing.iter().map(|_| passwords::generate()).collect();
            let hashes = passwords::hash_all(&new.iter().collect::<Vec<_>>());
            for ((name, password), bcrypt) in missing.iter().zip(new).zip(hashes) {
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

        Ok((
            State {
                dir: dir.clone(),
                ca,
                server,
                server_info,
                secrets,
            },
            created,
        ))
    }

    /// Loads existing state; anything missing is an error that says how to create it.
    pub fn load(config: &Config, dir: &StateDir) -> Result<State> {
        let ca = load_pair(&dir.ca_cert(), &dir.ca_key())?.ok_or_else(|| dir.missing("CA"))?;
        let server = load_pair(&dir.server_cert(), &dir.server_key())?
            .ok_or_else(|| dir.missing("server certificate"))?;
        let server_info =
            pki::inspect(&server.cert_pem).map_err(|e| Error::corrupt(dir.server_cert(), e.0))?;
        let secrets = load_secrets(&dir.secrets())?.ok_or_else(|| dir.missing("passwords"))?;
        if let Some(user) = config
            .users
            .iter()
            .find(|u| !secrets.users.contains_key(&u.name))
        {
            return Err(dir.missing(&format!("password for user `{}`", user.name)));
        }
        Ok(State {
            dir: dir.clone(),
            ca,
            server,
            server_info,
            secrets,
        })
    }

    pub fn save_secrets(&self) -> Result<()> {
        save_secrets(&self.dir, &self.secrets)
    }

    /// Issues a new server certificate from the CA and stores it.
    pub fn reissue_server_cert(&mut self, config: &Config, now: OffsetDateTime) -> Result<()> {
        self.server = issue_and_store(config, &self.dir, &self.ca, now)?;
        self.server_info =
            pki::inspect(&self.server.cert_pem).map_err(|e| Error::failed(e.0, None))?;
        Ok(())
    }
}

fn issue_and_store(
    config: &Config,
    dir: &StateDir,
    ca: &CertifiedKey,
    now: OffsetDateTime,
) -> Result<CertifiedKey> {
    let pair = pki::issue_server_cert(ca, &config.sans(), config.cert.lifetime_days, now)
        .map_err(|e| Error::failed(e.0, None))?;
    create_private_dir(&dir.root.join("server"))?;
    write_atomic(&dir.server_key(), pair.key_pem.expose().as_bytes(), 0o600)?;
    write_atomic(&dir.server_cert(), pair.cert_pem.as_bytes(), 0o644)?;
    Ok(pair)
}

/// Both files, or neither. One without the other is corrupt state, not "missing".
fn load_pair(cert: &Path, key: &Path) -> Result<Option<CertifiedKey>> {
    match (read_optional(cert)?, read_optional(key)?) {
        (Some(cert_pem), Some(key_pem)) => Ok(Some(CertifiedKey {
            cert_pem,
            key_pem: Secret::new(key_pem),
        })),
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
