//! Loading state from disk, and finishing or undoing what a run that died half-way left:
//! a key and its certificate are two files, written one after the other.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::StateDir;
use super::secrets::Secrets;
use crate::config::{Config, Node};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::fsutil::{create_private_dir, read_optional, sync_dir, write_atomic};
use crate::pki::{self, Ca, ServerCert};
use crate::secret::Secret;

pub(super) fn load_cas(dir: &StateDir) -> Result<Option<(Ca, Option<Ca>, String)>> {
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
    check_ca_key(&ca, &dir.ca_cert(), &dir.ca_key())?;
    let next = next
        .map(|(pem, key)| Ca::from_pem(&pem, key))
        .transpose()
        .map_err(|e| Error::corrupt(dir.next_ca_cert(), e.to_string()))?;
    if let Some(next) = &next {
        check_ca_key(next, &dir.next_ca_cert(), &dir.next_ca_key())?;
    }
    Ok(Some((ca, next, trust)))
}

/// A CA key that is not its certificate's would sign certificates no client can verify
/// (they name the certificate's subject, but carry another key's signature). `ca import
/// --force` writes the new key, then the new certificate: a run that died in between leaves
/// the new key beside the old certificate. Nothing here can tell which CA was meant, so this
/// is reported, never repaired.
fn check_ca_key(ca: &Ca, cert: &Path, key: &Path) -> Result<()> {
    let mismatch = match ca.key_matches() {
        Ok(true) => return Ok(()),
        Ok(false) => format!("is not the key of the CA certificate {}", cert.display()),
        Err(e) => format!("cannot be read as a private key: {e}"),
    };
    Err(Error::corrupt(
        key,
        format!(
            "{mismatch} (an interrupted `natsup ca import --force` leaves the new key beside the \
             old certificate): run that `natsup ca import --force --cert CERT --key KEY` again \
             with the CA you meant, or restore {} and {} together from a backup",
            cert.display(),
            key.display()
        ),
    ))
}

pub(super) fn remove_next_ca(dir: &StateDir) -> Result<()> {
    for path in [dir.next_ca_cert(), dir.next_ca_key()] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &path, e)),
        }
    }
    Ok(())
}

/// Issues `node`'s certificate from `ca` and stores it. A cluster's nodes get one valid for
/// routes too (client and server auth): each dials the others with it.
pub(super) fn issue_and_store(
    config: &Config,
    node: &Node,
    dir: &StateDir,
    ca: &Ca,
    now: OffsetDateTime,
) -> Result<ServerCert> {
    let issue = if config.is_cluster() {
        pki::issue_node_cert
    } else {
        pki::issue_server_cert
    };
    let pair = issue(ca, &config.sans(node), config.cert.lifetime_days, now)?;
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
pub(super) fn acme_server(
    config: &Config,
    node: &Node,
    dir: &StateDir,
) -> Result<Option<ServerCert>> {
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
        .has_sans(&config.public_names(node).0)
        .then_some(pair))
}

/// Writes the key and the certificate from a pair already saved whole in the journal, then
/// drops the journal.
pub(super) fn write_server_pair(dir: &StateDir, pair: &ServerCert) -> Result<()> {
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
pub(super) fn load_server(dir: &StateDir, repair: bool) -> Result<Option<ServerCert>> {
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
pub(super) fn load_server_repairing(
    dir: &StateDir,
) -> Result<(Option<ServerCert>, Option<String>)> {
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
pub(super) fn repair_half_made_cas(dir: &StateDir) -> Result<()> {
    let half = |cert: &Path, key: &Path| cert.exists() != key.exists();
    // Any file where node certificates live counts, also under a node since renamed or
    // dropped from the config, and `server/` of a file that since lists `nodes`: each may
    // have come from this CA.
    let no_server =
        !holds_a_file(&dir.root.join("server"))? && !holds_a_file(&dir.root.join("nodes"))?;
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

/// A state with no CA at all, but with node certificates (or any file where they live):
/// `ca/` was lost or moved away, not never made, since a node's certificate is only ever
/// issued from a CA already on disk. A new CA would silently cut off every client that trusts
/// the old one, and `up` would deploy it: refused.
pub(super) fn refuse_lost_ca(dir: &StateDir) -> Result<()> {
    let leftovers: Vec<String> = [dir.root.join("server"), dir.root.join("nodes")]
        .into_iter()
        .filter_map(|d| match holds_a_file(&d) {
            Ok(true) => Some(Ok(d.display().to_string())),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_>>()?;
    if leftovers.is_empty() {
        return Ok(());
    }
    Err(Error::corrupt(
        dir.root.join("ca"),
        format!(
            "holds no CA ({} and {}), but {} holds certificates issued from one; a new CA \
             would cut off every client that trusts the old one. Restore both files from a \
             backup; or, to start over with a new CA that every client must then be given, \
             move {} away too, or bring one with `natsup ca import`",
            dir.ca_cert().display(),
            dir.ca_key().display(),
            leftovers.join(" and "),
            leftovers.join(" and ")
        ),
    ))
}

/// Whether `dir` or any folder under it holds a file (of any name: also one a run was
/// writing). A folder that cannot be read is an error, never "empty": the answer decides
/// whether a CA key is deleted.
fn holds_a_file(dir: &Path) -> Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("read", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read", dir, e))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| Error::io("inspect", &path, e))?;
        if !kind.is_dir() || holds_a_file(&path)? {
            return Ok(true);
        }
    }
    Ok(false)
}

pub(super) fn remove_files(paths: &[PathBuf]) -> Result<()> {
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
pub(super) fn load_pair(cert: &Path, key: &Path) -> Result<Option<(String, Secret)>> {
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

pub(super) fn load_secrets(path: &Path) -> Result<Option<Secrets>> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    serde_yaml::from_str(&text)
        .map(Some)
        .map_err(|e| Error::corrupt(path, format!("cannot be read: {e}")))
}

pub(super) fn save_secrets(dir: &StateDir, secrets: &Secrets) -> Result<()> {
    let text = serde_yaml::to_string(secrets).expect("secrets always serialize");
    write_atomic(&dir.secrets(), text.as_bytes(), 0o600)
}
