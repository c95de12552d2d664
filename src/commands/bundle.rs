//! `natsup bundle USER --out DIR`: what one component needs, in one folder: `nats.env`, the
//! CA, and a README. Made for baking into a gameserver or service image.

use crate::cli::{BundleArgs, EnvFormat};
use crate::client_env::{format_vars, vars};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil::{create_private_dir, write_atomic};
use crate::session::Context;
use crate::state::State;

pub fn run(ctx: &Context, args: BundleArgs) -> Result<i32> {
    let config = ctx.load_config()?;
    config.select_users(std::slice::from_ref(&args.user))?;
    let state = State::load_for(
        &config,
        &ctx.state_dir(&config),
        std::slice::from_ref(&args.user),
    )?;
    // The folder holds a password: one natsup makes is private, like its own state. A folder
    // that exists keeps its mode: `--out .` is often the project itself, which others may need
    // to read (issue 11, 4.6 f); nats.env, the secret, is 0600 in any case.
    if !args.out.is_dir() {
        create_private_dir(&args.out)?;
    }
    if state.client_ca().is_empty() {
        return public_bundle(&config, &state, &args);
    }
    let ca_file = args.out.join("rootCA.pem");
    write_atomic(&ca_file, state.trust_pem.as_bytes(), 0o644)?;
    let ca_path = match &args.ca_path {
        Some(p) => p.clone(),
        None => std::path::absolute(&ca_file)
            .map_err(|e| Error::io("resolve", &ca_file, e))?
            .display()
            .to_string(),
    };
    let mut env = vars(&config, &state, &args.user)?;
    if let Some(v) = env.iter_mut().find(|(k, _)| *k == "NATS_CA") {
        v.1 = ca_path.clone();
    }
    write_atomic(
        &args.out.join("nats.env"),
        format_vars(&env, EnvFormat::Dotenv).as_bytes(),
        0o600,
    )?;
    let readme = format!(
        "natsup bundle for user {user} of deployment {name}.\n\
         nats.env holds NATS_HOST, NATS_USER, NATS_PASSWORD and NATS_CA (= {ca_path}); \
         copy this folder so that rootCA.pem is at that path, and load nats.env \
         (docker --env-file nats.env, or compose env_file). nats.env is a secret: keep it out of git.\n",
        user = args.user,
        name = config.name,
    );
    write_atomic(&args.out.join("README.txt"), readme.as_bytes(), 0o644)?;
    println!(
        "wrote {}/{{nats.env,rootCA.pem,README.txt}}",
        args.out.display()
    );
    Ok(0)
}

/// `tls.issuer: acme`: the server's certificate is publicly trusted, so the folder holds no CA
/// and nats.env no NATS_CA; clients use their system's roots.
fn public_bundle(config: &Config, state: &State, args: &BundleArgs) -> Result<i32> {
    let env = vars(config, state, &args.user)?;
    write_atomic(
        &args.out.join("nats.env"),
        format_vars(&env, EnvFormat::Dotenv).as_bytes(),
        0o600,
    )?;
    let readme = format!(
        "natsup bundle for user {user} of deployment {name}.\n\
         nats.env holds NATS_HOST, NATS_USER and NATS_PASSWORD. No CA is needed: the server's \
         certificate is publicly trusted (tls.issuer: acme), so clients use their system's \
         roots (an image needs its ca-certificates). Load nats.env (docker --env-file nats.env, \
         or compose env_file). nats.env is a secret: keep it out of git.\n",
        user = args.user,
        name = config.name,
    );
    write_atomic(&args.out.join("README.txt"), readme.as_bytes(), 0o644)?;
    println!("wrote {}/{{nats.env,README.txt}}", args.out.display());
    Ok(0)
}
