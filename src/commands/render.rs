//! `natsup render`: creates missing state and writes the bundle that goes to the server.
//!
//! Inside a git work tree, the server's private key gets a `.gitignore` beside it, so that
//! `git add -A` in the project cannot commit it (issue 11, 4.6 b).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::cli::RenderArgs;
use crate::error::{Error, Result};
use crate::fsutil::{create_dir, write_atomic};
use crate::render::{self, Bundle, TlsNames};
use crate::session::{Context, Session};

pub fn run(ctx: &Context, args: RenderArgs) -> Result<i32> {
    let session = Session::open(ctx, ctx.load_config()?)?;
    // A cluster's bundles go to one folder per node (`<out>/<node>/`); a node's
    // nats-server.conf holds the route password, so it is kept out of git like the key.
    let (config, state) = (&session.config, &session.state);
    // The bundle goes to a server by hand: never with natsup's CA's certificate where the
    // config says clients get the ACME CA's (`up` orders it).
    for i in 0..config.nodes().len() {
        state.refuse_private_ca_for_acme(config, i, "render")?;
    }
    let bundles: Vec<(std::path::PathBuf, Bundle)> = config
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let out = if config.is_cluster() {
                args.out.join(&node.name)
            } else {
                args.out.clone()
            };
            (out, render::bundle(config, i, state, &TlsNames::plain()))
        })
        .collect();
    let mut changed = 0;
    for (out, bundle) in &bundles {
        changed += write_bundle(bundle, out)?;
        if in_git_work_tree(out)? {
            changed += ignore_secrets(bundle, out)?;
        }
    }
    if changed == 0 {
        println!("{} is up to date", args.out.display());
    } else {
        println!("wrote {changed} file(s) to {}", args.out.display());
    }
    Ok(0)
}

/// Writes each file atomically, skipping those already identical; returns how many changed.
pub fn write_bundle(bundle: &Bundle, out: &Path) -> Result<usize> {
    let mut changed = 0;
    for file in &bundle.files {
        let path = out.join(&file.path);
        if std::fs::read(&path).is_ok_and(|old| old == file.contents) {
            // Same bytes, but maybe an older natsup's mode (the config was 0644 before it was
            // known to hold secrets): the mode is made right without counting a change.
            let mode = std::fs::metadata(&path)
                .map_err(|e| Error::io("read", &path, e))?
                .permissions()
                .mode()
                & 0o7777;
            if mode != file.mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))
                    .map_err(|e| Error::io("chmod", &path, e))?;
            }
            continue;
        }
        if let Some(parent) = path.parent() {
            create_dir(parent)?;
        }
        write_atomic(&path, &file.contents, file.mode)?;
        changed += 1;
    }
    Ok(changed)
}

/// Whether `dir` is in a git work tree: it or a folder above it holds `.git` (a directory, or
/// the file a linked worktree or submodule has).
fn in_git_work_tree(dir: &Path) -> Result<bool> {
    let dir = std::path::absolute(dir).map_err(|e| Error::io("resolve", dir, e))?;
    Ok(dir.ancestors().any(|d| d.join(".git").exists()))
}

/// Makes the `.gitignore` beside each private key list it, keeping what the file already says;
/// returns how many files changed.
fn ignore_secrets(bundle: &Bundle, out: &Path) -> Result<usize> {
    let mut changed = 0;
    for file in bundle.files.iter().filter(|f| f.is_secret()) {
        let path = out.join(&file.path);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let name = name.to_string_lossy();
        let ignore = dir.join(".gitignore");
        let (old, mode) = match std::fs::read_to_string(&ignore) {
            Ok(text) => {
                let mode = std::fs::metadata(&ignore)
                    .map_err(|e| Error::io("read", &ignore, e))?
                    .permissions()
                    .mode();
                (text, mode & 0o7777)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), 0o644),
            Err(e) => return Err(Error::io("read", &ignore, e)),
        };
        let listed = old
            .lines()
            .any(|l| l.trim() == name || l.trim().strip_prefix('/') == Some(&name));
        if listed {
            continue;
        }
        let mut new = old.clone();
        if !new.is_empty() && !new.ends_with('\n') {
            new.push('\n');
        }
        new.push_str(&format!(
            "# natsup render: the server's private key stays out of git.\n{name}\n"
        ));
        write_atomic(&ignore, new.as_bytes(), mode)?;
        changed += 1;
    }
    Ok(changed)
}
