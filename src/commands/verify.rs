//! `natsup verify`: every user of the deployment (from config and state), or, given a URL,
//! one user with no config or state at all (the CI smoke check).

use std::path::Path;

use crate::cli::VerifyArgs;
use crate::config::Config;
use crate::error::Result;
use crate::secret::Secret;
use crate::state::State;
use crate::verify::{self, Login, Report, Status, Target, Thresholds};

use super::Context;

pub fn run(ctx: &Context, args: VerifyArgs) -> Result<i32> {
    let plan = match &args.url {
        Some(url) => smoke_target(url, &args),
        None => deployment_target(ctx, &args)?,
    };
    let (target, logins) = match plan {
        Ok(p) => p,
        Err(message) => {
            // Nothing was checked: the nats CLI's convention for that is UNKNOWN (3).
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "status": "UNKNOWN", "error": message })
                );
            } else {
                eprintln!("UNKNOWN: {message}");
            }
            return Ok(Status::Unknown.exit_code());
        }
    };
    let report =
        crate::runtime().block_on(verify::verify(&target, &logins, &Thresholds::default()));
    print_report(&report, args.json);
    Ok(report.exit_code())
}

type Plan = std::result::Result<(Target, Vec<Login>), String>;

fn smoke_target(url: &str, args: &VerifyArgs) -> Plan {
    let ca = args
        .ca
        .as_deref()
        .ok_or("no CA: pass --ca FILE or set NATS_CA")?;
    let ca_pem = read_ca(ca)?;
    let user = args
        .user
        .clone()
        .ok_or("no user: pass --user NAME or set NATS_USER")?;
    let password = args
        .password
        .clone()
        .ok_or("no password: set NATS_PASSWORD (or pass --password)")?;
    let target = Target::from_url(url, ca_pem)?;
    Ok((
        target,
        vec![Login {
            user,
            password: Secret::new(password),
            permissions: None,
        }],
    ))
}

fn read_ca(path: &Path) -> std::result::Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))
}

/// Config and state errors are bad input (exit 2), as for every other command.
fn deployment_target(ctx: &Context, args: &VerifyArgs) -> Result<Plan> {
    let config = ctx.load_config()?;
    let state = State::load(&config, &ctx.state_dir(&config))?;
    Ok(deployment_logins(&config, &state, args))
}

fn deployment_logins(config: &Config, state: &State, args: &VerifyArgs) -> Plan {
    let ca_pem = match &args.ca {
        Some(path) => read_ca(path)?,
        None => std::fs::read_to_string(state.dir.ca_cert()).map_err(|e| e.to_string())?,
    };
    let target = Target::from_url(&config.url(), ca_pem)?;
    let users: Vec<_> =
        match &args.user {
            Some(name) => vec![config.user(name).ok_or_else(|| {
                format!("`{name}` is not a user of deployment `{}`", config.name)
            })?],
            None => config.users.iter().collect(),
        };
    let logins = users
        .into_iter()
        .map(|u| Login {
            user: u.name.clone(),
            password: match (&args.password, &args.user) {
                (Some(pw), Some(_)) => Secret::new(pw.clone()),
                _ => state.secrets.served_password(&u.name).clone(),
            },
            permissions: u.permissions.clone(),
        })
        .collect();
    Ok((target, logins))
}

pub fn print_report(report: &Report, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("reports serialize")
        );
        return;
    }
    print!("{}", format_table(report));
}

/// A table in the spirit of `nats server check connection`, one row per check.
pub fn format_table(report: &Report) -> String {
    let mut out = format!("natsup verify {}\n\n", report.url);
    let scope_w = report
        .checks
        .iter()
        .map(|c| c.scope.len())
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!(
        "{:<scope_w$}  {:<22}  {:<8}  {:>9}  {}\n",
        "SCOPE", "CHECK", "STATUS", "TIME", "DETAIL"
    ));
    for c in &report.checks {
        let time = c
            .seconds
            .map(|s| format!("{:.1}ms", s * 1000.0))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<scope_w$}  {:<22}  {:<8}  {:>9}  {}\n",
            c.scope,
            c.check,
            c.status.label(),
            time,
            c.detail
        ));
    }
    let failed = report
        .checks
        .iter()
        .filter(|c| c.status != Status::Ok)
        .count();
    out.push_str(&format!(
        "\n{}: {} of {} checks OK\n",
        report.status.label(),
        report.checks.len() - failed,
        report.checks.len()
    ));
    out
}
