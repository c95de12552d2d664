//! `natsup render`: creates missing state and writes the bundle that goes to the server.

use std::path::Path;

use crate::cli::RenderArgs;
use crate::error::Result;
use crate::fsutil::{create_dir, write_atomic};
use crate::render::{self, Bundle, TlsNames};
use crate::session::{Context, Session};

pub fn run(ctx: &Context, args: RenderArgs) -> Result<i32> {
    let session = Session::open(ctx, ctx.load_config()?)?;
    let bundle = render::bundle(&session.config, &session.state, &TlsNames::plain());
    let changed = write_bundle(&bundle, &args.out)?;
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
