//! The command-line interface. Doc comments here are the `--help` text.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "natsup",
    version,
    about = "Bootstrap and maintain a TLS-secured NATS server over SSH, safely and repeatably",
    long_about = "natsup makes a CA and server certificate, renders nats-server.conf and \
docker-compose.yaml with generated passwords, deploys them over SSH with docker compose, \
and checks the TLS connection. Every command can be run again safely."
)]
pub struct Cli {
    /// The deployment file.
    #[arg(
        short,
        long,
        global = true,
        env = "NATSUP_CONFIG",
        default_value = "natsup.yaml"
    )]
    pub config: PathBuf,

    /// Where natsup keeps CAs, certificates and passwords [default: ~/.local/share/natsup].
    #[arg(long, global = true, env = "NATSUP_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a new natsup.yaml.
    Init(InitArgs),
    /// Create missing state and write the bundle that goes to the server.
    Render(RenderArgs),
    /// Check the TLS connection, authentication and JetStream for each user.
    Verify(VerifyArgs),
    /// The deployment's certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Print one user's connection settings as the env vars bevygap reads.
    Env(EnvArgs),
    /// Bring the server in line with config and state, then verify it.
    Up(UpArgs),
    /// Show what `up` would change, without changing anything.
    Plan(PlanArgs),
    /// Show the container, the served certificate, and whether the server is in sync.
    Status(StatusArgs),
    /// New passwords for some or all users, applied by reload; only their clients reconnect.
    RotatePasswords(RotatePasswordsArgs),
    /// A new server key and certificate from the same CA, applied by reload.
    RenewCert(RenewCertArgs),
    /// Replace the CA without an outage: --begin, hand out the bundle, then --finish.
    RotateCa(RotateCaArgs),
}

#[derive(Debug, Args)]
pub struct RotatePasswordsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Rotate only this user; repeat for more [default: every user].
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<String>,
    /// Show what would change, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RenewCertArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Renew even if the certificate is not near expiry.
    #[arg(long)]
    pub force: bool,
    /// Say whether it would renew, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("phase").required(true).args(["begin", "finish"])))]
pub struct RotateCaArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Make the new CA and hand clients a bundle of old + new.
    #[arg(long)]
    pub begin: bool,
    /// Move the server to the new CA and retire the old one.
    #[arg(long)]
    pub finish: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options shared by the commands that reach the server.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Use this machine's Docker instead of SSH (with no natsup.yaml: a built-in deployment
    /// named `local` on localhost).
    #[arg(long)]
    pub local: bool,
    /// Accept and record the server's host key on first contact (a changed key is still refused).
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Use this image instead of the config's.
    #[arg(long)]
    pub image: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Show the plan, with diffs, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds to wait for the server to become ready or confirm a reload.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Names the deployment (its state directory, CA and contexts).
    #[arg(long)]
    pub name: String,
    /// The public DNS name or IP address that clients dial.
    #[arg(long)]
    pub host: String,
    /// SSH destination: user@host, an ~/.ssh/config alias, or ssh://user@host:port.
    #[arg(long)]
    pub ssh: Option<String>,
    /// SSH private key file.
    #[arg(long, requires = "ssh")]
    pub identity: Option<PathBuf>,
    /// known_hosts file to check the server's host key against.
    #[arg(long, requires = "ssh")]
    pub known_hosts: Option<PathBuf>,
    /// Docker image [default: nats:2.10.21].
    #[arg(long)]
    pub image: Option<String>,
    /// Host port the server is published on [default: 4222].
    #[arg(long)]
    pub port: Option<u16>,
    /// Host address the port is published on [default: 0.0.0.0, all interfaces].
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// Directory on the server, relative to the SSH user's home or absolute [default: nats-bits].
    #[arg(long)]
    pub remote_dir: Option<String>,
    /// A NATS user; repeat for more [default: matchmaker, matchmaker_httpd, gameserver, webhook].
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<String>,
    /// Overwrite an existing deployment file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Directory to write the bundle into.
    #[arg(long, default_value = "natsup-out")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Server URL; with it, verify checks one user and needs no config or state.
    #[arg(long, env = "NATS_URL")]
    pub url: Option<String>,
    /// CA certificate (PEM) the server's certificate must chain to.
    #[arg(long, env = "NATS_CA")]
    pub ca: Option<PathBuf>,
    /// User to check (all of the deployment's users by default).
    #[arg(long, env = "NATS_USER")]
    pub user: Option<String>,
    /// Password, for checking a server without natsup's state. Prefer the NATS_PASSWORD env var:
    /// a flag is visible to other users in `ps`.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the path of the CA certificate clients should trust (like `mkcert -CAROOT`).
    Path,
    /// Print the CA's subject, fingerprint and expiry.
    Show,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The user whose settings to print.
    pub user: String,
    #[arg(long, value_enum, default_value_t = EnvFormat::Dotenv)]
    pub format: EnvFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnvFormat {
    Dotenv,
    Shell,
    Json,
}
