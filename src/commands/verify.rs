//! `natsup verify`: every user of the deployment (from config and state), or, in smoke mode,
//! one user with no config or state at all (the CI smoke check).
//!
//! Smoke mode is chosen explicitly: by `--url`, or by `NATS_URL` where there is no deployment.
//! Only smoke mode reads the `NATS_*` variables: a shell that ran
//! `eval "$(natsup env gameserver --format shell)"` still verifies the whole deployment, not
//! that one user with the exported password (issue 11, 4.2).

use std::path::Path;

use crate::cli::{VerifyArgs, VerifyFormat};
use crate::config::Config;
use crate::error::Result;
use crate::nats_client::{Endpoint, Login};
use crate::secret::Secret;
use crate::state::State;
use crate::verify::{self, Status, Thresholds};

use crate::session::Context;
use crate::verify_output::format_report;

pub fn run(ctx: &Context, args: VerifyArgs) -> Result<i32> {
    let limits = limits(&args);
    let report = match smoke_url(ctx, &args) {
        Some(url) => smoke_target(&url, &args).map(|(target, logins)| {
            crate::runtime().block_on(verify::verify(
                &target,
                &logins,
                &limits,
                verify::Depth::Thorough,
            ))
        }),
        None => {
            let (config, state) = deployment_state(ctx, &args)?;
            deployment_targets(&config, &state, &args).map(|targets| {
                crate::runtime().block_on(verify::deployment_with(
                    &config,
                    &state,
                    &targets,
                    &limits,
                    verify::Depth::Thorough,
                ))
            })
        }
    };
    let report = match report {
        Ok(report) => report,
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

/// The deployment's config and state. Config and state errors are bad input (exit 2), as
/// for every other command.
fn deployment_state(ctx: &Context, args: &VerifyArgs) -> Result<(Config, State)> {
    let config = ctx.load_config()?;
    let users = match &args.user {
        Some(user) => config.select_users(std::slice::from_ref(user))?,
        None => config.users.iter().map(|u| u.name.clone()).collect(),
    };
    let state = State::load_for(&config, &ctx.state_dir(&config), &users)?;
    Ok((config, state))
}

/// Every node's endpoint and logins, with `--ca` and `--password` in place of what natsup
/// stored: they check what a client has.
fn deployment_targets(
    config: &Config,
    state: &State,
    args: &VerifyArgs,
) -> std::result::Result<Vec<(Endpoint, Vec<Login>)>, String> {
    let mut targets = verify::targets(config, state, args.user.as_deref())?;
    let ca = args.ca.as_deref().map(read_ca).transpose()?;
    for (target, logins) in &mut targets {
        if let Some(ca) = &ca {
            target.ca_pem = ca.clone();
        }
        if let (Some(pw), Some(_)) = (&args.password, &args.user) {
            logins[0].password = Secret::new(pw.clone());
        }
    }
    Ok(targets)
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
