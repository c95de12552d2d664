//! `natsup verify`: every user of the deployment (from config and state), or, in smoke mode,
//! one user with no config or state at all (the CI smoke check).
//!
//! Smoke mode is chosen explicitly: by `--url`, or by `NATS_URL` where there is no deployment.
//! Only smoke mode reads the `NATS_*` variables: a shell that ran
//! `eval "$(natsup env gameserver --format shell)"` still verifies the whole deployment, not
//! that one user with the exported password (issue 11, 4.2).

use std::path::Path;

use crate::cli::{VerifyArgs, VerifyFormat};
use crate::cluster;
use crate::config::Config;
use crate::error::Result;
use crate::nats_client::{self, Endpoint, Login};
use crate::secret::Secret;
use crate::state::State;
use crate::verify::{self, Status, Thresholds};

use crate::session::Context;
use crate::verify_output::format_report;

pub fn run(ctx: &Context, args: VerifyArgs) -> Result<i32> {
    if smoke_url(ctx, &args).is_none() && ctx.config_path.exists() {
        let config = ctx.load_config()?;
        if config.is_cluster() {
            return run_cluster(ctx, &args, config);
        }
    }
    let plan = match smoke_url(ctx, &args) {
        Some(url) => smoke_target(&url, &args),
        None => deployment_target(ctx, &args)?,
    };
    let (target, logins) = match plan {
        Ok(p) => p,
        Err(message) => {
            // Nothing was checked: the nats CLI's convention for that is UNKNOWN (3).
            match (args.json, args.format) {
                (true, _) | (_, VerifyFormat::Json) => {
                    println!(
                        "{}",
                        serde_json::json!({ "status": "UNKNOWN", "error": message })
                    )
                }
                (_, VerifyFormat::Nagios) => println!("UNKNOWN {message}"),
                (_, VerifyFormat::Prometheus) => {
                    println!("# HELP natsup_check_status 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN");
                    println!("# TYPE natsup_check_status gauge");
                    println!("natsup_check_status 3");
                    eprintln!("UNKNOWN: {message}");
                }
                _ => eprintln!("UNKNOWN: {message}"),
            }
            return Ok(Status::Unknown.exit_code());
        }
    };
    let limits = Thresholds {
        connect_warn: args.connect_warn,
        connect_critical: args.connect_critical,
        rtt_warn: args.rtt_warn,
        rtt_critical: args.rtt_critical,
        cert_warn_days: args.cert_warn_days,
        cert_critical_days: args.cert_critical_days,
    };
    let report = crate::runtime().block_on(verify::verify(
        &target,
        &logins,
        &limits,
        verify::Depth::Thorough,
    ));
    let format = if args.json {
        VerifyFormat::Json
    } else {
        args.format
    };
    print!("{}", format_report(&report, format, &limits));
    Ok(report.exit_code())
}

fn limits(args: &VerifyArgs) -> Thresholds {
    Thresholds {
        connect_warn: args.connect_warn,
        connect_critical: args.connect_critical,
        rtt_warn: args.rtt_warn,
        rtt_critical: args.rtt_critical,
        cert_warn_days: args.cert_warn_days,
        cert_critical_days: args.cert_critical_days,
    }
}

/// A cluster: every node's checks, then the checks across nodes ([`cluster::verify`]).
fn run_cluster(ctx: &Context, args: &VerifyArgs, config: Config) -> Result<i32> {
    if args.user.is_some() || args.ca.is_some() {
        return Err(crate::error::Error::usage(
            "--user and --ca check one server; this deployment is a cluster",
            Some("run `natsup verify` for every node, or `natsup verify --url tls://NODE:PORT --user NAME` for one".to_string()),
        ));
    }
    let mut nodes = Vec::new();
    for view in config.node_views() {
        let state = State::load(&view, &ctx.state_dir(&view))?;
        nodes.push((view, state));
    }
    let members = cluster::members(&nodes, false);
    let limits = limits(args);
    let report =
        crate::runtime().block_on(cluster::verify(&members, &limits, verify::Depth::Thorough));
    let format = if args.json {
        VerifyFormat::Json
    } else {
        args.format
    };
    print!("{}", format_report(&report, format, &limits));
    Ok(report.exit_code())
}

type Plan = std::result::Result<(Endpoint, Vec<Login>), String>;

/// A `NATS_*` variable, unset when empty (as CI leaves a secret that was never added).
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The URL to smoke-check, or none to check the deployment: `--url`, else `NATS_URL` when
/// there is no deployment here (no config file, and no built-in `local` one that `up --local`
/// made: the same test as [`Context::load_config`]).
fn smoke_url(ctx: &Context, args: &VerifyArgs) -> Option<String> {
    if let Some(url) = &args.url {
        return Some(url.clone());
    }
    let deployment =
        ctx.config_path.exists() || ctx.state_dir(&Config::local_default()).root.is_dir();
    if deployment { None } else { env("NATS_URL") }
}

/// Smoke mode's login: each flag, else its `NATS_*` variable.
fn smoke_target(url: &str, args: &VerifyArgs) -> Plan {
    let ca_pem = match (&args.ca, &args.ca_contents) {
        // An empty CA means the system's roots (`pki::root_store`).
        _ if args.system_roots => String::new(),
        (Some(path), _) => read_ca(path)?,
        (None, Some(pem)) => pem.clone(),
        (None, None) => match (env("NATS_CA"), env("NATS_CA_CONTENTS")) {
            (Some(_), Some(_)) => {
                return Err("both NATS_CA and NATS_CA_CONTENTS are set: unset one".into());
            }
            (Some(path), None) => read_ca(Path::new(&path))?,
            (None, Some(pem)) => pem,
            (None, None) => {
                return Err("no CA: pass --ca FILE, or set NATS_CA or NATS_CA_CONTENTS".into());
            }
        },
    };
    let user = args
        .user
        .clone()
        .or_else(|| env("NATS_USER"))
        .ok_or("no user: pass --user NAME or set NATS_USER")?;
    let password = args
        .password
        .clone()
        .or_else(|| env("NATS_PASSWORD"))
        .ok_or("no password: set NATS_PASSWORD (or pass --password)")?;
    let target = Endpoint::from_url(&without_userinfo(url), ca_pem)?;
    Ok((
        target,
        vec![Login {
            user,
            password: Secret::new(password),
            permissions: None,
        }],
    ))
}

/// The URL without a `user:pass@` part. Smoke mode logs in with `--user`/`NATS_USER` and the
/// password, never with a URL's userinfo (which [`Endpoint::from_url`] skips), and the URL is
/// quoted in error messages that CI logs keep (issue 11, 4.6 e).
fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}{host}"),
        None => url.to_string(),
    }
}

fn read_ca(path: &Path) -> std::result::Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))
}

/// Config and state errors are bad input (exit 2), as for every other command.
fn deployment_target(ctx: &Context, args: &VerifyArgs) -> Result<Plan> {
    let config = ctx.load_config()?;
    let users = match &args.user {
        Some(user) => config.select_users(std::slice::from_ref(user))?,
        None => config.users.iter().map(|u| u.name.clone()).collect(),
    };
    let state = State::load_for(&config, &ctx.state_dir(&config), &users)?;
    Ok(deployment_logins(&config, &state, args))
}

fn deployment_logins(config: &Config, state: &State, args: &VerifyArgs) -> Plan {
    let (mut target, mut logins) =
        nats_client::deployment_logins(config, state, args.user.as_deref())?;
    if let Some(path) = &args.ca {
        target.ca_pem = read_ca(path)?;
    }
    // An explicit password checks what a client has, not what natsup stored.
    if let (Some(pw), Some(_)) = (&args.password, &args.user) {
        logins[0].password = Secret::new(pw.clone());
    }
    Ok((target, logins))
}

#[cfg(test)]
mod tests {
    use super::without_userinfo;

    #[test]
    fn userinfo_is_dropped() {
        for (url, bare) in [
            ("tls://u:p@h:4222", "tls://h:4222"),
            ("tls://u:p@ss@w0rd@[::1]:1", "tls://[::1]:1"),
            ("u:p@h", "h"),
            ("nats://h:4222", "nats://h:4222"),
            ("h", "h"),
        ] {
            assert_eq!(without_userinfo(url), bare, "{url}");
        }
    }
}
