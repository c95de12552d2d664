//! How a verify report is printed: the text table, JSON, Nagios plugin output and Prometheus
//! text exposition. Pure: a report in, a string out.

use crate::verify::{Report, Status, Thresholds};

pub fn print_report(report: &Report, json: bool) {
    let format = if json { Format::Json } else { Format::Text };
    print!("{}", format_report(report, format, &Thresholds::default()));
}

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    /// One line in the Nagios plugin format, like `nats server check connection`.
    Nagios,
    /// Prometheus text exposition format.
    Prometheus,
}

pub fn format_report(report: &Report, format: Format, limits: &Thresholds) -> String {
    match format {
        Format::Text => format_table(report),
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(report).expect("reports serialize")
        ),
        Format::Nagios => format_nagios(report, limits),
        Format::Prometheus => format_prometheus(report),
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
