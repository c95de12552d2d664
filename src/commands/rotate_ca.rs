//! `natsup rotate-ca --begin | --finish`: replaces the CA without an outage.
//!
//! `--begin` makes the next CA and hands clients a bundle of old + new (`ca/rootCA.pem`, the
//! file `natsup env` and `ca path` point at), while the server keeps its certificate from the
//! old CA. Once every client has the bundle, `--finish` issues the server certificate from
//! the new CA, reloads, proves the server presents it, and drops the old CA.

use std::time::Duration;

use time::OffsetDateTime;

use crate::cli::RotateCaArgs;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::state::State;

use super::Context;
use super::up::target;
use crate::deploy::deploy;

pub fn run(ctx: &Context, args: RotateCaArgs) -> Result<i32> {
    // --begin only touches local state: it needs no server access.
    let (config, via) = match target(ctx, &args.target) {
        Ok((c, v)) => (c, Some(v)),
        Err(e) if args.begin => (ctx.load_config().map_err(|_| e)?, None),
        Err(e) => return Err(e),
    };
    let dir = ctx.state_dir(&config);
    let _lock = dir.lock()?;
    let now = OffsetDateTime::now_utc();
    let (mut state, _) = State::ensure(&config, &dir, now)?;

    if args.begin {
        if state.begin_ca_rotation(&config, now)? {
            println!("made a new CA; clients now get a bundle of the old and the new one:");
        } else {
            println!("a CA rotation is already under way; clients get the bundle:");
        }
        println!("  {}", dir.ca_cert().display());
        println!(
            "Give it to every client (`natsup env USER`, `natsup context`), then run `natsup rotate-ca --finish`."
        );
        return Ok(0);
    }

    if state.next_ca.is_none() {
        return Err(Error::usage(
            "no CA rotation is under way",
            Some("start one with `natsup rotate-ca --begin`".to_string()),
        ));
    }
    state.issue_from_next_ca(&config, now)?;
    failpoint::hit("rotate-ca:issued");
    crate::runtime().block_on(async {
        let via = via.expect("--finish resolved the server");
        let deployed = deploy(&via, &config, &state, false, Duration::from_secs(30)).await?;
        crate::ui::note(deployed.summary());
        let served = super::renew::served_serial(&config).await?;
        if served != state.server_info.serial {
            return Err(Error::failed(
                format!("the server presents certificate {served}, not the one from the new CA"),
                Some("run `natsup rotate-ca --finish` again".to_string()),
            ));
        }
        Ok(())
    })?;
    failpoint::hit("rotate-ca:applied");
    state.retire_old_ca()?;
    println!("the server presents a certificate from the new CA; the old CA is retired.");
    println!("clients trust: {}", dir.ca_cert().display());
    Ok(0)
}
