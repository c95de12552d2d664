//! `natsup ca path|show|import`: the CA clients must trust. The files are `state`'s; this
//! prints them, and hands an imported CA to `state` once `pki` has checked it.

use std::path::Path;

use time::OffsetDateTime;

use crate::cli::CaCommand;
use crate::error::{Error, Result};
use crate::fsutil::read_to_string;
use crate::pki::{self, Ca};
use crate::secret::Secret;

use super::Context;

pub fn run(ctx: &Context, command: CaCommand) -> Result<i32> {
    let config = ctx.load_config()?;
    if let CaCommand::Import { cert, key, force } = &command {
        return import(ctx, &config, cert, key, *force);
    }
    let dir = ctx.state_dir(&config);
    dir.check_owner(&config)?;
    let path = dir.ca_cert();
    if !path.exists() {
        return Err(Error::MissingState {
            name: config.name.clone(),
            what: "CA".into(),
            dir: dir.root.clone(),
        });
    }
    match command {
        CaCommand::Import { .. } => unreachable!("handled above"),
        CaCommand::Path => println!("{}", path.display()),
        CaCommand::Show => {
            let pem = read_to_string(&path)?;
            let now = OffsetDateTime::now_utc();
            let corrupt = |e: pki::PkiError| Error::corrupt(&path, e.to_string());
            for der in pki::pem_certs(&pem).map_err(corrupt)? {
                let info = pki::inspect_der(&der).map_err(corrupt)?;
                println!("subject:     {}", info.subject);
                println!("fingerprint: SHA256 {}", info.fingerprint);
                println!("serial:      {}", info.serial);
                println!(
                    "expires:     {} ({} days left)",
                    info.not_after.date(),
                    info.days_left(now)
                );
                println!("file:        {}", path.display());
            }
        }
    }
    Ok(0)
}

/// Adopts an existing CA, after checking it is one and that the key belongs to it.
fn import(
    ctx: &Context,
    config: &crate::config::Config,
    cert: &Path,
    key: &Path,
    force: bool,
) -> Result<i32> {
    let bad = |file: &Path, message: String| {
        Error::usage(
            format!("{}: {message}", file.display()),
            Some(
                "pass a CA certificate and its own key; for mkcert's CA: \
                 natsup ca import --cert \"$(mkcert -CAROOT)/rootCA.pem\" --key \"$(mkcert -CAROOT)/rootCA-key.pem\""
                    .to_string(),
            ),
        )
    };
    let cert_pem = read_to_string(cert)?;
    let key_pem = Secret::new(read_to_string(key)?);
    let ca = Ca::from_pem(&cert_pem, key_pem).map_err(|e| bad(cert, e.to_string()))?;
    match ca.key_matches() {
        Err(e) => {
            return Err(bad(
                key,
                format!("is not a private key natsup can use: {e}"),
            ));
        }
        Ok(false) => {
            return Err(bad(
                key,
                format!("is not the key of the CA in {}", cert.display()),
            ));
        }
        Ok(true) => {}
    }
    ctx.state_dir(config).import_ca(config, &ca, force)?;
    println!("imported the CA {}", ca.info().subject);
    println!("the next `natsup render` or `natsup up` issues the server certificate from it");
    Ok(0)
}
