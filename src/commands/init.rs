//! `natsup init`: writes a new natsup.yaml.

use crate::cli::InitArgs;
use crate::config::{Config, InitOptions, NodeConfig, SshConfig};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::passwords;

use super::Context;

pub fn run(ctx: &Context, args: InitArgs) -> Result<i32> {
    let path = &ctx.config_path;
    if path.exists() && !args.force {
        return Err(Error::usage(
            format!("{} already exists", path.display()),
            Some("pass --force to overwrite it".to_string()),
        ));
    }
    let ssh = args.ssh.as_deref().map(|dest| SshConfig {
        identity: args.identity.clone(),
        known_hosts: args.known_hosts.clone(),
        ..SshConfig::new(dest)
    });
    let nodes = args
        .nodes
        .iter()
        .map(|n| NodeConfig::parse_arg(n).map_err(|e| Error::usage(e, None)))
        .collect::<Result<Vec<_>>>()?;
    let mut config = Config::from_init(InitOptions {
        name: args.name,
        host: args.host.unwrap_or_default(),
        ssh,
        image: args.image,
        port: args.port,
        bind: args.bind,
        remote_dir: args.remote_dir,
        users: args.users,
        nodes,
        network: args.network,
    });
    // The state directory is named after `name` alone and records this id: a deployment of
    // the same name with another id (a copy of this file for staging, given a new id) is
    // refused that state rather than handed its CA and passwords. 16 characters of
    // [A-Za-z0-9] are ~95 random bits: no two inits meet.
    config.id = Some(passwords::random_alphanumeric(16));
    let yaml = format!(
        "# natsup deployment file. It holds no secret: commit it.\n\
         # Passwords, the CA and the server key live in natsup's state directory.\n\
         # `id` tells this deployment's state apart from another of the same name: a copy of\n\
         # this file for another deployment needs a new `id` (and best a new `name`).\n{}",
        config.to_yaml()
    );
    // Validate exactly what will be read back, so init never writes a file that won't load.
    Config::parse(&yaml, path)?;
    write_atomic(path, yaml.as_bytes(), 0o644)?;
    println!("wrote {}", path.display());
    Ok(0)
}
