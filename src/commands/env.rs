//! `natsup env USER`: one user's connection settings as the env vars bevygap reads
//! (`NATS_HOST`, `NATS_USER`, `NATS_PASSWORD`, `NATS_CA`).

use crate::cli::EnvArgs;
use crate::client_env::{NO_CA_NEEDED, ca_arg, format_vars, vars};
use crate::error::Result;
use crate::session::Context;
use crate::state::State;

pub fn run(ctx: &Context, args: EnvArgs) -> Result<i32> {
    let config = ctx.load_config()?;
    config.select_users(std::slice::from_ref(&args.user))?;
    let state = State::load_for(
        &config,
        &ctx.state_dir(&config),
        std::slice::from_ref(&args.user),
    )?;
    // Nothing goes to stdout then: it is often pasted into a gameserver's arguments.
    if args.ca_arg && state.client_ca().is_empty() {
        eprintln!("{NO_CA_NEEDED}: the gameserver needs no --ca_contents argument");
        return Ok(0);
    }
    if args.ca_arg {
        println!("{}", ca_arg(&state.trust_pem));
        return Ok(0);
    }
    let mut vars = vars(&config, &state, &args.user)?;
    if args.ca_contents && state.client_ca().is_empty() {
        eprintln!("{NO_CA_NEEDED}: NATS_CA_CONTENTS is left out");
    } else if args.ca_contents {
        vars.retain(|(k, _)| *k != "NATS_CA");
        vars.push(("NATS_CA_CONTENTS", state.trust_pem.clone()));
    }
    print!("{}", format_vars(&vars, args.format));
    Ok(0)
}
