//! Where one deployment's state lives, and its lock.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::fsutil::{create_private_dir, read_optional, write_atomic};
use crate::pki::Ca;
use crate::secret::Secret;

/// The paths of one deployment's state.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
    pub name: String,
    /// Where one node's certificate lives under `root`: `server`, or `nodes/<node>` for an
    /// entry of `nodes` ([`crate::config::Node::state_subdir`]).
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

    /// The same deployment's state, with the certificate kept in `subdir`.
    pub fn for_subdir(&self, subdir: &str) -> StateDir {
        StateDir {
            server_subdir: subdir.to_string(),
            ..self.clone()
        }
    }

    /// The nodes that have a state folder (`nodes/<name>`) but are no longer in `config`.
    pub fn removed_nodes(&self, config: &crate::config::Config) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.root.join("nodes")) else {
            return Vec::new();
        };
        let mut removed: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| config.nodes().iter().all(|n| &n.name != name))
            .collect();
        removed.sort();
        removed
    }

    /// Forgets a removed node's state folder (its certificate and key).
    pub fn forget_node(&self, name: &str) -> Result<()> {
        let path = self.root.join("nodes").join(name);
        std::fs::remove_dir_all(&path).map_err(|e| Error::io("remove", &path, e))
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
    /// Where the node's ACME certificate lives: `acme/` for a file without `nodes` (as it
    /// always has), else beside the node's own certificate. The account stays in `acme/`.
    pub fn acme_dir(&self) -> PathBuf {
        if self.server_subdir == "server" {
            self.root.join("acme")
        } else {
            self.root.join(&self.server_subdir).join("acme")
        }
    }
    pub fn acme_cert(&self) -> PathBuf {
        self.acme_dir().join("cert.pem")
    }
    pub fn acme_key(&self) -> PathBuf {
        self.acme_dir().join("key.pem")
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

    /// Refuses `config` this state if it belongs to another deployment (another `id`, or
    /// other servers); writes nothing.
    pub fn check_owner(&self, config: &Config) -> Result<()> {
        super::owner::check(config, self)
    }

    /// Adopts `ca` as the deployment's CA (`natsup ca import`). Replacing a CA cuts off every
    /// client that trusts the old one, so an existing CA stays unless `force`.
    pub fn import_ca(&self, config: &Config, ca: &Ca, force: bool) -> Result<()> {
        let _lock = self.lock()?;
        super::owner::claim(config, self)?;
        if self.ca_cert().exists() && !force {
            return Err(Error::usage(
                format!("deployment `{}` already has a CA", self.name),
                Some("replacing it cuts off every client that trusts the old one; use `natsup rotate-ca`, or pass --force".to_string()),
            ));
        }
        self.write_ca(ca)
    }

    /// Key first: a CA certificate on disk always has its key beside it.
    pub(super) fn write_ca(&self, ca: &Ca) -> Result<()> {
        create_private_dir(&self.root.join("ca"))?;
        write_atomic(&self.ca_key(), ca.key_pem().expose().as_bytes(), 0o400)?;
        failpoint::hit("state:ca-key-written");
        write_atomic(&self.ca_cert(), ca.cert_pem().as_bytes(), 0o644)
    }

    pub(super) fn missing(&self, what: &str) -> Error {
        Error::MissingState {
            name: self.name.clone(),
            what: what.into(),
            dir: self.root.clone(),
        }
    }
}
