//! `natsup ca path|show`: the CA clients must trust.

use std::path::Path;

use time::OffsetDateTime;

use crate::cli::CaCommand;
use crate::error::{Error, Result};
use crate::fsutil::read_to_string;
use crate::pki;

use super::Context;

pub fn run(ctx: &Context, command: CaCommand) -> Result<i32> {
    let config = ctx.load_config()?;
    if let CaCommand::Import { cert, key, force } = &command {
        return import(ctx, &config, cert, key, *force);
    }
    let dir = ctx.state_dir(&config);
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
            for der in pki::pem_certs(&pem).map_err(|e| Error::corrupt(&path, e.0))? {
                let info = pki::inspect_der(&der).map_err(|e| Error::corrupt(&path, e.0))?;
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
    let key_pem = read_to_string(key)?;
    let ders = pki::pem_certs(&cert_pem).map_err(|e| bad(cert, e.0))?;
    let (_, x509) = x509_parser::parse_x509_certificate(&ders[0])
        .map_err(|e| bad(cert, format!("not an X.509 certificate: {e}")))?;
    let is_ca = matches!(x509.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if !is_ca {
        return Err(bad(
            cert,
            "is not a CA certificate (its basicConstraints do not say CA:TRUE)".into(),
        ));
    }
    if let Ok(Some(ku)) = x509.key_usage()
        && !ku.value.key_cert_sign()
    {
        return Err(bad(
            cert,
            "is a CA certificate that may not sign certificates (no keyCertSign usage)".into(),
        ));
    }
    let pair = rcgen::KeyPair::from_pem(&key_pem)
        .map_err(|e| bad(key, format!("is not a private key natsup can use: {e}")))?;
    if pair.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
        return Err(bad(
            key,
            format!("is not the key of the CA in {}", cert.display()),
        ));
    }
    let dir = ctx.state_dir(config);
    let _lock = dir.lock()?;
    if dir.ca_cert().exists() && !force {
        return Err(Error::usage(
            format!("deployment `{}` already has a CA", config.name),
            Some("replacing it cuts off every client that trusts the old one; use `natsup rotate-ca`, or pass --force".to_string()),
        ));
    }
    crate::fsutil::create_private_dir(&dir.root.join("ca"))?;
    crate::fsutil::write_atomic(&dir.ca_key(), key_pem.as_bytes(), 0o400)?;
    let first = pki::pem_blocks(&cert_pem)
        .into_iter()
        .next()
        .unwrap_or(cert_pem);
    crate::fsutil::write_atomic(&dir.ca_cert(), first.as_bytes(), 0o644)?;
    println!(
        "imported the CA {}",
        pki::inspect_der(&ders[0])
            .map(|i| i.subject)
            .unwrap_or_default()
    );
    println!("the next `natsup render` or `natsup up` issues the server certificate from it");
    Ok(0)
}
