//! `natsup renew-cert`: a new server key and certificate from the same CA, applied by reload
//! (existing TLS sessions stay up; new ones get the new certificate), then proven by reading
//! the certificate the server presents.

use std::time::Duration;

use crate::cli::RenewCertArgs;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::pki;
use crate::tls_probe;

use super::Context;
use super::up::{Opened, open};
use crate::deploy::deploy;

pub fn run(ctx: &Context, args: RenewCertArgs) -> Result<i32> {
    let Opened {
        config,
        via,
        mut state,
        created,
        now,
        lock: _lock,
    } = open(ctx, &args.target)?;

    let reason = if args.force {
        Some("--force".to_string())
    } else {
        state.server_info.renewal_reason(now)
    };
    let fresh_issue = created
        .iter()
        .any(|c| matches!(c, crate::state::Created::ServerCert { .. }));
    match (&reason, fresh_issue) {
        (None, false) => {
            println!(
                "the server certificate is valid until {} ({} days left): no renewal needed (use --force to renew anyway)",
                state.server_info.not_after.date(),
                state.server_info.days_left(now)
            );
        }
        (Some(reason), _) if args.dry_run => {
            println!("would renew the server certificate: {reason}");
            return Ok(0);
        }
        (Some(reason), _) => {
            crate::ui::note(format!("renewing the server certificate: {reason}"));
            state.reissue_server_cert(&config, now)?;
        }
        (None, true) => {}
    }
    failpoint::hit("renew-cert:issued");
    if args.dry_run {
        return Ok(0);
    }

    crate::runtime().block_on(async {
        let deployed = deploy(&via, &config, &state, false, Duration::from_secs(30)).await?;
        crate::ui::note(deployed.summary());
        let served = served_serial(&config).await?;
        if served != state.server_info.serial {
            return Err(Error::failed(
                format!(
                    "the server presents certificate {served}, not the new {}",
                    state.server_info.serial
                ),
                Some("run `natsup status`, then `natsup up`".to_string()),
            ));
        }
        println!(
            "the server presents certificate {} (valid until {})",
            served,
            state.server_info.not_after.date()
        );
        Ok(0)
    })
}

/// The serial of the certificate the server presents now (a rustls probe, like a client).
pub async fn served_serial(config: &crate::config::Config) -> Result<String> {
    let addr = crate::nats_client::Endpoint::from_url(&config.url(), String::new())
        .map_err(|e| Error::failed(e, None))?
        .addr;
    let probe = tls_probe::probe(&addr, &config.host, Duration::from_secs(5))
        .await
        .map_err(|e| Error::failed(e, None))?;
    let leaf = probe
        .chain
        .first()
        .ok_or_else(|| Error::failed("the server presented no certificate", None))?;
    Ok(pki::inspect_der(leaf)
        .map_err(|e| Error::failed(e.0, None))?
        .serial)
}
