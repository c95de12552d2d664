//! natsup: bootstrap and maintain a TLS-secured NATS server over SSH.
//!
//! Where things are:
//! - the config is loaded and validated once, in [`config`];
//! - certificates are made in [`pki`], passwords and their hashes in [`passwords`]; a
//!   publicly trusted one is ordered from an ACME CA in [`acme`] (`tls.issuer: acme`);
//! - files are rendered in [`render`] from `templates/`;
//! - local secrets live in [`state`];
//! - what a command starts from (the global options, the server, the locked state) is
//!   [`session`];
//! - a deployment is its shared state and 1..=9 nodes ([`config::Node`]); one server is a
//!   deployment of one node, not a second code path;
//! - what a node needs is decided in [`plan`] and run by [`deploy`], the one executor, one
//!   [`deploy::Server`] at a time;
//! - every change (`up`, passwords, certificates, the CA, `up`'s renewal, decided once in
//!   [`renewal`]) goes through [`operation`], the one orchestrator: stage locally, inspect
//!   every node, then per node gate (every other node healthy), apply, prove, settle;
//! - the network is touched only in [`remote`] (SSH with its kept connection, local shell,
//!   and the scripts they run), in [`nats_client`] and [`tls_probe`] (NATS clients), and in
//!   [`acme`] (the ACME CA, over HTTPS); [`verify`] grades what they find (with the checks
//!   across a cluster's nodes, which are also the health gate, in [`verify::cluster`]),
//!   [`verify_output`] prints it;
//! - what clients are handed (`NATS_HOST`, `NATS_USER`, ...) is [`client_env`];
//! - each subcommand is a leaf in [`commands`].

pub mod acme;
pub mod cli;
pub mod client_env;
pub mod commands;
pub mod config;
pub mod deploy;
pub mod error;
pub mod failpoint;
pub mod fsutil;
pub mod grace;
pub mod jetstream;
pub mod nats_client;
pub mod node_removal;
pub mod observed;
pub mod operation;
pub mod passwords;
pub mod pki;
pub mod plan;
pub mod remote;
pub mod render;
pub mod renewal;
pub mod route_probe;
pub mod route_rotation;
pub mod secret;
pub mod session;
pub mod settle;
pub mod state;
pub mod system_account;
pub mod tls_probe;
pub mod ui;
pub mod upgrade;
pub mod verify;
pub mod verify_output;

use cli::{Cli, Command};
use error::Result;

/// Runs one parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    install_crypto_provider();
    ui::set_quiet(cli.quiet);
    ui::init_logging(cli.verbose);
    let ctx = commands::Context::new(cli.config.clone(), cli.state_dir.clone())?;
    match cli.command {
        Command::Init(args) => commands::init::run(&ctx, args),
        Command::Render(args) => commands::render::run(&ctx, args),
        Command::Verify(args) => commands::verify::run(&ctx, args),
        Command::Ca { command } => commands::ca::run(&ctx, command),
        Command::Env(args) => commands::env::run(&ctx, args),
        Command::Up(args) => commands::up::run_up(&ctx, args),
        Command::Plan(args) => commands::up::run_plan(&ctx, args),
        Command::Status(args) => commands::status::run(&ctx, args),
        Command::RotatePasswords(args) => commands::rotate::run(&ctx, args),
        Command::RenewCert(args) => commands::renew::run(&ctx, args),
        Command::RotateCa(args) => commands::rotate_ca::run(&ctx, args),
        Command::Context(args) => commands::context::run(&ctx, args),
        Command::Bundle(args) => commands::bundle::run(&ctx, args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "natsup", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(|e| error::Error::io("write", "stdout", e))?;
            Ok(0)
        }
    }
}

/// Makes ring rustls' process-wide crypto provider. async-nats builds its TLS config from the
/// process default; when a second provider is compiled in (a plain `rustls` dependency turns
/// on aws-lc-rs) rustls cannot pick one by itself and async-nats panics with "Could not
/// automatically determine the process-level CryptoProvider". Tests and benches call it too.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A runtime for the commands that talk to the network.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot start the async runtime")
}
