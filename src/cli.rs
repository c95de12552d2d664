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

    /// More logging: -v shows every remote command and its duration, -vv also the scripts.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print only results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

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
    /// Show what `up` would change, without touching the server (missing local state is made, as by render)
    Plan(PlanArgs),
    /// Show the container, the served certificate, and whether the server is in sync.
    Status(StatusArgs),
    /// New passwords for some or all users, applied by reload; only their clients reconnect.
    RotatePasswords(RotatePasswordsArgs),
    /// A new server key and certificate from the same CA, applied by reload.
    RenewCert(RenewCertArgs),
    /// Replace the CA without an outage: --begin, hand out the bundle, then --finish.
    RotateCa(RotateCaArgs),
    /// Write nats CLI contexts (replaces `nats context save`).
    Context(ContextArgs),
    /// Write what one component needs (nats.env, the CA) into a folder, e.g. for an image.
    Bundle(BundleArgs),
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Man,
}

#[derive(Debug, Args)]
pub struct ContextArgs {
    /// Write a context for this user only; repeat for more [default: every user].
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<String>,
    /// Also make it the nats CLI's selected context (needs exactly one user).
    #[arg(long)]
    pub select: bool,
    /// Write the context of natsup's system-account user instead (`<name>-natsup_sys`), for the
    /// operator's `nats server report jetstream` or `nats server raft peer-remove`. Never hand
    /// it to a game server: it sees and can change every server of the deployment.
    #[arg(long, conflicts_with = "users")]
    pub system: bool,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// The user whose settings to bundle.
    pub user: String,
    /// Folder to write nats.env, rootCA.pem and README.txt into.
    #[arg(long)]
    pub out: PathBuf,
    /// Where rootCA.pem will be when the component runs (e.g. its path inside an image)
    /// [default: the bundle's own absolute path].
    #[arg(long)]
    pub ca_path: Option<String>,
}

#[derive(Debug, Args)]
pub struct RotatePasswordsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Rotate only this user; repeat for more [default: every user].
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<String>,
    /// Rotate the cluster's route credential instead (the password its nodes log in to each
    /// other with), rolling node by node by reload, with no route closed; proves every node
    /// refuses the old one. User passwords are not touched.
    #[arg(long, conflicts_with_all = ["users", "show"])]
    pub route: bool,
    /// Rotate the system user's password instead (`natsup_sys`, the operators' and natsup's
    /// own login to the system account), by reload, proven on every node; no grace period.
    /// Operators then save their context again with `natsup context --system`.
    #[arg(long, conflicts_with_all = ["users", "route", "show", "grace"])]
    pub system: bool,
    /// Show what would change, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also print each rotated user's new settings, password included, as `natsup env USER`
    /// does [default: only who rotated, and how to get them].
    #[arg(long, conflicts_with = "dry_run")]
    pub show: bool,
    /// Keep each rotated user's old credential valid, with the same permissions, this long
    /// (`90s`, `30m`, `24h`; `0s`: not at all): its connected clients stay connected, and the
    /// new password gets a login of its own, which `env`, `context` and `bundle` hand out
    /// [default: `auth.rotation_grace`, else none].
    #[arg(long, value_name = "DURATION", value_parser = parse_grace, conflicts_with = "route")]
    pub grace: Option<Grace>,
}

/// `--grace DURATION`: a grace period, or none (`0s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace(pub Option<std::time::Duration>);

/// `--grace`: as `auth.rotation_grace` reads it.
fn parse_grace(s: &str) -> Result<Grace, String> {
    crate::config::parse_rotation_grace(s).map(Grace)
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

impl Command {
    /// Whether the command only prints from local files, touching no server.
    pub fn prints_only(&self) -> bool {
        matches!(
            self,
            Command::Env(_)
                | Command::Ca { .. }
                | Command::Context(_)
                | Command::Completions { .. }
                | Command::Man
                | Command::Init(_)
                | Command::Render(_)
                | Command::Bundle(_)
        )
    }
}

impl TargetArgs {
    /// The plain options the layers below the command line take.
    pub fn target(&self) -> crate::session::Target {
        crate::session::Target {
            local: self.local,
            accept_new_host_key: self.accept_new_host_key,
            image: self.image.clone(),
        }
    }
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
    #[arg(long, value_parser = image_arg)]
    pub image: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Show the plan, with diffs, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds to wait for the server to become ready or confirm a reload. The other steps
    /// on the server are bounded from it: validating the config gets as long, `compose up`
    /// 30 s more, an image pull ten times as long (at least 5 minutes).
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
    #[arg(long, required_unless_present = "nodes", conflicts_with = "nodes")]
    pub host: Option<String>,
    /// A server of a cluster, NAME=HOST[@SSH] (SSH defaults to HOST); repeat for each node.
    #[arg(long = "node", value_name = "NAME=HOST[@SSH]", conflicts_with_all = ["ssh", "identity", "known_hosts"])]
    pub nodes: Vec<String>,
    /// bridge (publish the ports) or host (the container uses the server's network).
    #[arg(long, value_enum)]
    pub network: Option<crate::config::Network>,
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
    #[arg(long, value_parser = image_arg)]
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
    /// Server URL: check this server in smoke mode, one user, with no config or state. Without
    /// it, smoke mode is used only where there is no deployment (no natsup.yaml) and NATS_URL
    /// is set; in a deployment the NATS_* variables are never read.
    #[arg(long)]
    pub url: Option<String>,
    /// CA certificate (PEM) the server's certificate must chain to [smoke mode: else NATS_CA].
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// User to check (all of the deployment's users by default) [smoke mode: else NATS_USER].
    #[arg(long)]
    pub user: Option<String>,
    /// Password, for checking what a client holds rather than natsup's state [smoke mode: else
    /// NATS_PASSWORD]. Prefer NATS_PASSWORD: a flag is visible to other users in `ps`.
    #[arg(long)]
    pub password: Option<String>,
    /// CA certificate PEM contents, instead of a file [smoke mode: else NATS_CA_CONTENTS, as
    /// bevygap reads it].
    #[arg(long, conflicts_with = "ca")]
    pub ca_contents: Option<String>,
    /// Smoke mode: the server's certificate is publicly trusted (`tls.issuer: acme`): check it
    /// against this system's roots, with no CA.
    #[arg(long, conflicts_with_all = ["ca", "ca_contents"])]
    pub system_roots: bool,
    /// Print one JSON object instead of a table (same as --format json).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = VerifyFormat::Text)]
    pub format: VerifyFormat,
    /// Connect time that makes the check WARNING.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    pub connect_warn: std::time::Duration,
    /// Connect time that makes the check CRITICAL.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub connect_critical: std::time::Duration,
    /// Round-trip time that makes the check WARNING.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    pub rtt_warn: std::time::Duration,
    /// Round-trip time that makes the check CRITICAL.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub rtt_critical: std::time::Duration,
    /// Certificate days left below which the check is WARNING.
    #[arg(long, default_value_t = 30)]
    pub cert_warn_days: i64,
    /// Certificate days left below which the check is CRITICAL.
    #[arg(long, default_value_t = 7)]
    pub cert_critical_days: i64,
}

pub use crate::client_env::Format as EnvFormat;
pub use crate::verify_output::Format as VerifyFormat;

// The layers below take plain types; the command line's names and help for them live here.
impl ValueEnum for VerifyFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            VerifyFormat::Text,
            VerifyFormat::Json,
            VerifyFormat::Nagios,
            VerifyFormat::Prometheus,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue;
        Some(match self {
            VerifyFormat::Text => PossibleValue::new("text"),
            VerifyFormat::Json => PossibleValue::new("json"),
            VerifyFormat::Nagios => PossibleValue::new("nagios")
                .help("One line in the Nagios plugin format, like `nats server check connection`"),
            VerifyFormat::Prometheus => {
                PossibleValue::new("prometheus").help("Prometheus text exposition format")
            }
        })
    }
}

impl ValueEnum for EnvFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[EnvFormat::Dotenv, EnvFormat::Shell, EnvFormat::Json]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(match self {
            EnvFormat::Dotenv => "dotenv",
            EnvFormat::Shell => "shell",
            EnvFormat::Json => "json",
        }))
    }
}

impl ValueEnum for crate::config::Network {
    fn value_variants<'a>() -> &'a [Self] {
        &[crate::config::Network::Bridge, crate::config::Network::Host]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue;
        Some(match self {
            crate::config::Network::Bridge => PossibleValue::new("bridge")
                .help("Docker's bridge: the client (and route) ports are published on `bind`"),
            crate::config::Network::Host => PossibleValue::new("host")
                .help("`network_mode: host`: nats-server listens on `bind` itself"),
        })
    }
}

/// Durations as the nats CLI writes them: `500ms`, `1s`, `0s`, `1m30s`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 500ms or 1s: {e}"))
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the path of the CA certificate clients should trust (like `mkcert -CAROOT`).
    Path,
    /// Print the CA's subject, fingerprint and expiry.
    Show,
    /// Use an existing CA (an mkcert rootCA.pem and rootCA-key.pem, say) for this deployment.
    Import {
        /// The CA certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// Replace an existing CA (clients must then be given the new one; prefer `rotate-ca`).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The user whose settings to print.
    pub user: String,
    #[arg(long, value_enum, default_value_t = EnvFormat::Dotenv)]
    pub format: EnvFormat,
    /// Put the CA PEM itself in NATS_CA_CONTENTS instead of a path in NATS_CA.
    #[arg(long, conflicts_with = "ca_arg")]
    pub ca_contents: bool,
    /// Print only the gameserver's `--ca_contents '<PEM>'` argument (bevygap reads it because
    /// Edgegap caps env values at 255 bytes). The PEM keeps its line breaks: a PEM without
    /// them is refused by rustls, so the flattened form would not connect.
    #[arg(long)]
    pub ca_arg: bool,
}

/// `--image` gets the same check as the config's `image:` (its value reaches `docker run` on
/// the server); clap names the flag and exits 2.
fn image_arg(value: &str) -> Result<String, String> {
    crate::config::check_image(value).map(|()| value.to_string())
}
