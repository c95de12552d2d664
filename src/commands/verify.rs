//! `natsup verify`: every user of the deployment (from config and state), or, given a URL,
//! one user with no config or state at all (the CI smoke check).

use std::path::Path;

use crate::cli::{VerifyArgs, VerifyFormat};
use crate::config::Config;
use crate::error::Result;
use crate::nats_client::{self, Endpoint, Login};
use crate::secret::Secret;
use crate::state::State;
use crate::verify::{self, Report, Status, Thresholds};

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

type Plan = std::result::Result<(Endpoint, Vec<Login>), String>;

fn smoke_target(url: &str, args: &VerifyArgs) -> Plan {
    let ca_pem = match (&args.ca, &args.ca_contents) {
        (Some(path), _) => read_ca(path)?,
        (None, Some(pem)) => pem.clone(),
        (None, None) => {
            return Err("no CA: pass --ca FILE, or set NATS_CA or NATS_CA_CONTENTS".into());
        }
    };
    let user = args
        .user
        .clone()
        .ok_or("no user: pass --user NAME or set NATS_USER")?;
    let password = args
        .password
        .clone()
        .ok_or("no password: set NATS_PASSWORD (or pass --password)")?;
    let target = Endpoint::from_url(url, ca_pem)?;
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
    let users = match &args.user {
        Some(user) => config.select_users(std::slice::from_ref(user))?,
        None => config.users.iter().map(|u| u.name.clone()).collect(),
    };
    let state = State::load_for(&ctx.state_dir(&config), &users)?;
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

pub fn print_report(report: &Report, json: bool) {
    let format = if json {
        VerifyFormat::Json
    } else {
        VerifyFormat::Text
    };
    print!("{}", format_report(report, format, &Thresholds::default()));
}

pub fn format_report(report: &Report, format: VerifyFormat, limits: &Thresholds) -> String {
    match format {
        VerifyFormat::Text => format_table(report),
        VerifyFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(report).expect("reports serialize")
        ),
        VerifyFormat::Nagios => format_nagios(report, limits),
        VerifyFormat::Prometheus => format_prometheus(report),
    }
}

/// The slowest figure of one kind across users: what a threshold is judged on.
fn worst(report: &Report, check: &str) -> Option<f64> {
    report
        .checks
        .iter()
        .filter(|c| c.check == check)
        .filter_map(|c| c.seconds)
        .fold(None, |m, s| Some(m.map_or(s, |m: f64| m.max(s))))
}

/// One line as a Nagios plugin prints it, with the nats CLI's perfdata names
/// (`connect_time`, `rtt`, `request_time` in seconds; `;warn;crit` after each).
pub fn format_nagios(report: &Report, limits: &Thresholds) -> String {
    let problems: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.status != Status::Ok)
        .map(|c| format!("{}:{} {}", c.scope, c.check, c.detail))
        .collect();
    let summary = if problems.is_empty() {
        format!("{} checks OK", report.checks.len())
    } else {
        problems.join("; ")
    };
    let mut perf = Vec::new();
    let secs = |d: std::time::Duration| d.as_secs_f64();
    if let Some(t) = worst(report, "connect") {
        perf.push(format!(
            "connect_time={t:.4}s;{:.4};{:.4}",
            secs(limits.connect_warn),
            secs(limits.connect_critical)
        ));
    }
    if let Some(t) = worst(report, "rtt") {
        perf.push(format!(
            "rtt={t:.4}s;{:.4};{:.4}",
            secs(limits.rtt_warn),
            secs(limits.rtt_critical)
        ));
        // natsup's round trip is already a message to an inbox and back, which is what the
        // nats CLI's request_time measures.
        perf.push(format!(
            "request_time={t:.4}s;{:.4};{:.4}",
            secs(limits.rtt_warn),
            secs(limits.rtt_critical)
        ));
    }
    if let Some(d) = report.cert_days_left {
        perf.push(format!(
            "cert_days={d};{};{}",
            limits.cert_warn_days, limits.cert_critical_days
        ));
    }
    format!(
        "{} natsup {}: {summary} | {}\n",
        report.status.label(),
        report.url,
        perf.join(" ")
    )
}

/// Prometheus text format: one gauge per figure, labelled by user.
pub fn format_prometheus(report: &Report) -> String {
    let url = report.url.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::new();
    out.push_str("# HELP natsup_check_status 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN\n# TYPE natsup_check_status gauge\n");
    out.push_str(&format!(
        "natsup_check_status{{url=\"{url}\"}} {}\n",
        report.status.exit_code()
    ));
    if let Some(d) = report.cert_days_left {
        out.push_str("# HELP natsup_cert_days_left Days until the served certificate expires\n# TYPE natsup_cert_days_left gauge\n");
        out.push_str(&format!("natsup_cert_days_left{{url=\"{url}\"}} {d}\n"));
    }
    for (check, metric, help) in [
        (
            "connect",
            "natsup_connect_time_seconds",
            "Time to connect and authenticate over TLS",
        ),
        (
            "rtt",
            "natsup_rtt_seconds",
            "A message to the client's own inbox and back",
        ),
        (
            "rtt",
            "natsup_request_time_seconds",
            "Request to an inbox and its reply",
        ),
    ] {
        let rows: Vec<_> = report
            .checks
            .iter()
            .filter(|c| c.check == check && c.seconds.is_some())
            .collect();
        if rows.is_empty() {
            continue;
        }
        out.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} gauge\n"));
        for c in rows {
            out.push_str(&format!(
                "{metric}{{url=\"{url}\",user=\"{}\"}} {:.6}\n",
                c.scope,
                c.seconds.unwrap_or_default()
            ));
        }
    }
    out
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
