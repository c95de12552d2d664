//! Where the SSH master connection lives between runs. A run leaves its master open for a
//! short while (`NATSUP_SSH_PERSIST` seconds of idleness, 30 by default, as Ansible does with
//! ControlPersist), and the next run on the same destination picks it up instead of paying
//! for a new TCP + SSH handshake (several round trips): `natsup up` followed by `status` or
//! another `up` goes straight to its remote command.
//!
//! Each destination (user@host, port, identity, known_hosts, host-key policy) gets a folder
//! of its own under a per-user 0700 folder, named by the key `ssh.rs` computes from all of
//! these, so a master is only ever reused for exactly the connection it was opened as.
//! Nothing here is a secret: the sockets are guarded by the folder's mode, as ssh's own
//! ControlPath is.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use openssh::Session;

use crate::error::{Error, Result};

/// The name openssh gives the folders it launches masters in.
const MASTER_PREFIX: &str = ".ssh-connection";

/// How long an idle master outlives the run that opened it; zero closes it at the end of
/// the run. From `NATSUP_SSH_PERSIST`: seconds (`30`) or a duration (`30s`, `2m`); 30 s when
/// unset.
pub fn persist() -> Result<Duration> {
    match std::env::var("NATSUP_SSH_PERSIST") {
        Err(_) => Ok(Duration::from_secs(30)),
        Ok(value) => parse_persist(&value).ok_or_else(|| {
            Error::usage(
                format!("NATSUP_SSH_PERSIST={value:?} is not a duration"),
                "write seconds (30) or a duration (30s, 2m); 0 closes the SSH connection at the end of each run"
                    .to_string(),
            )
        }),
    }
}

fn parse_persist(value: &str) -> Option<Duration> {
    let value = value.trim();
    value
        .parse::<u64>()
        .map(Duration::from_secs)
        .ok()
        .or_else(|| humantime::parse_duration(value).ok())
}

/// The control socket path must fit in 108 bytes with openssh's folder and ssh's own
/// suffixes, which on Linux leaves at most 61 bytes for the directory. Ours is this dir,
/// `/natsup-UID` and a 12-digit key: a runtime dir of up to 24 bytes (`/run/user/1000` is 14)
/// fits; a longer one is passed over for /tmp.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(d) if d.as_os_str().len() <= 24 && d.is_dir() => d,
        _ => PathBuf::from("/tmp"),
    }
}

/// The folder the masters of the connection named `key` live in, created if needed; `None`
/// when it cannot be trusted (another user's, or open to others), and the run then keeps its
/// master to itself.
pub fn folder_for(key: &str) -> Option<PathBuf> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let mine = private_dir(&runtime_dir().join(format!("natsup-{uid}")), uid)?;
    private_dir(&mine.join(key), uid)
}

/// Creates `dir` with mode 0700, or accepts it as it is only if it is a real folder of ours
/// that nobody else can enter (in /tmp, anyone could have made it first).
fn private_dir(dir: &Path, uid: u32) -> Option<PathBuf> {
    let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
    let meta = std::fs::symlink_metadata(dir).ok()?;
    let private = meta.is_dir() && meta.uid() == uid && meta.permissions().mode() & 0o077 == 0;
    private.then(|| dir.to_path_buf())
}

/// A live master a previous run left in `folder`, if any. Dead ones are cleared away.
pub async fn resume(folder: &Path) -> Option<Session> {
    let entries = std::fs::read_dir(folder).ok()?;
    for entry in entries.flatten() {
        let dir = entry.path();
        if !is_master_folder(&dir) {
            continue;
        }
        let socket = dir.join("master");
        if socket.exists() {
            let session = Session::resume(socket.into(), Some(dir.join("log").into()));
            if session.check().await.is_ok() {
                return Some(session);
            }
        } else if launching(&dir) {
            // Another opening of the same connection is still launching its master here (two
            // nodes on one SSH destination open theirs at once): removing the folder under it
            // failed that opening with "No such file or directory".
            continue;
        }
        // The master exited (idle, killed, or its connection dropped): nothing to keep.
        let _ = std::fs::remove_dir_all(&dir);
    }
    None
}

/// Whether the master folder `dir`, which has no socket yet, may still get one: it was made
/// less than a connection timeout ago (ssh.rs gives ssh 15 s to connect; a minute covers it).
fn launching(dir: &Path) -> bool {
    std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < Duration::from_secs(60))
}

/// Ends a master for good and removes its folder (a resumed session owns no folder, so
/// openssh leaves it behind).
pub async fn close(session: Session) {
    let folder = session.control_socket().parent().map(Path::to_path_buf);
    let _ = session.close().await;
    if let Some(folder) = folder
        && is_master_folder(&folder)
    {
        let _ = std::fs::remove_dir_all(folder);
    }
}

/// Whether `dir` is one of the folders openssh launches a master in (and nothing else of ours).
fn is_master_folder(dir: &Path) -> bool {
    dir.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(MASTER_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persist_takes_seconds_or_a_duration() {
        assert_eq!(parse_persist("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_persist(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_persist("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_persist("thirty"), None);
        assert_eq!(parse_persist("-5"), None);
    }

    #[test]
    fn only_a_private_folder_of_ours_is_used() {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let tmp = tempfile::tempdir().unwrap();

        let made = private_dir(&tmp.path().join("new"), uid).expect("a new folder is ours");
        assert_eq!(
            std::fs::metadata(&made).unwrap().permissions().mode() & 0o777,
            0o700
        );

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(private_dir(&open, uid), None, "a folder others can enter");

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&made, &link).unwrap();
        assert_eq!(private_dir(&link, uid), None, "a symlink someone planted");

        assert_eq!(private_dir(&made, uid + 1), None, "another user's folder");
    }
}
