//! A client's connection settings, as the env vars bevygap reads (`NATS_HOST`, `NATS_USER`,
//! `NATS_PASSWORD`, `NATS_CA`), in the formats services load them: dotenv, POSIX shell, JSON.
//! Used by `env`, `bundle`, and `rotate-passwords` (which prints the new settings).

use crate::config::Config;
use crate::error::{Error, Result};
use crate::state::State;

/// The variables bevygap reads, for one user, with the password the server has confirmed.
/// With a publicly trusted certificate (`tls.issuer: acme`) there is no `NATS_CA`: bevygap's
/// connect then uses the system's roots.
pub fn vars(config: &Config, state: &State, user: &str) -> Result<Vec<(&'static str, String)>> {
    let ca_path = state.dir.ca_cert();
    let ca = std::path::absolute(&ca_path).map_err(|e| Error::io("resolve", &ca_path, e))?;
    let password = state
        .secrets
        .password(user)
        .ok_or_else(|| Error::MissingState {
            name: config.name.clone(),
            what: format!("password for user `{user}`"),
            dir: state.dir.root.clone(),
        })?;
    let mut vars = vec![("NATS_HOST", nats_host(config))];
    if config.is_cluster() {
        vars.push(("NATS_SERVERS", config.client_urls().join(",")));
    }
    vars.extend([
        // After a rotation with a grace period the new password has a login of its own
        // (the old one keeps the user's name until the grace ends, so its clients stay
        // connected): clients must take NATS_USER from here too, not only NATS_PASSWORD.
        ("NATS_USER", state.secrets.login(user).to_string()),
        ("NATS_PASSWORD", password.expose().to_string()),
    ]);
    if !state.client_ca().is_empty() {
        vars.push(("NATS_CA", ca.display().to_string()));
    }
    Ok(vars)
}

/// bevygap's `NATS_HOST` is `host` or `host:port` (its README: `nats.example.com:4222` or
/// `1.2.3.4`); the port is left out when it is NATS's default.
///
/// For a cluster it is the first node. bevygap passes `NATS_HOST` straight to async-nats'
/// `connect`, which parses a `&str` as ONE address (async-nats 0.51, `impl ToServerAddrs for
/// str`): a comma-separated list fails with "invalid port number". Once connected, a client
/// learns every other node from the server's INFO (`connect_urls`, gossiped over the routes)
/// and fails over to them by itself; tests/e2e_cluster.rs checks that. The whole list is in
/// `NATS_SERVERS` for clients that split it (the nats CLI context's `url` takes it as is).
pub fn nats_host(config: &Config) -> String {
    let first = &config.nodes()[0];
    if first.port == 4222 {
        first.host.clone()
    } else {
        first.addr()
    }
}

/// The nats CLI context's `url`: the server's `nats://host:port`, or a cluster's list.
pub fn nats_url(config: &Config) -> String {
    if config.is_cluster() {
        config.client_urls().join(",")
    } else {
        config.nodes()[0].url()
    }
}

/// How the variables are written: a dotenv file, POSIX shell `export`s, or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Dotenv,
    Shell,
    Json,
}

pub fn format_vars(vars: &[(&str, String)], format: Format) -> String {
    match format {
        Format::Dotenv => vars
            .iter()
            .map(|(k, v)| format!("{k}={}\n", dotenv_quote(v)))
            .collect(),
        Format::Shell => vars
            .iter()
            .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
            .collect(),
        Format::Json => {
            let map: serde_json::Map<String, serde_json::Value> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
                .collect();
            format!(
                "{}\n",
                serde_json::to_string_pretty(&map).expect("strings serialize")
            )
        }
    }
}

fn is_plain(v: &str) -> bool {
    !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@+,=[]".contains(c))
}

/// Plain when safe; otherwise double-quoted, which docker compose's env_file and the dotenv
/// crates both read with `\\`, `\"` and `\$` escapes (a backtick needs none, and dotenvy
/// refuses `\``; tests/interop.rs reads the output back with dotenvy).
pub fn dotenv_quote(v: &str) -> String {
    if is_plain(v) {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' | '\\' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The gameserver argument `--ca_contents '<PEM>'`, shell-quoted. The PEM keeps its newlines:
/// rustls (and so async-nats and bevygap) refuses a PEM whose lines were joined.
pub fn ca_arg(pem: &str) -> String {
    format!(
        "--ca_contents {}",
        crate::remote::script::sh_quote(pem.trim_end())
    )
}

/// What `--ca-arg` and `--ca-contents` say when clients need no CA.
pub const NO_CA_NEEDED: &str = "no CA is needed: the server's certificate is publicly trusted \
     (tls.issuer: acme), so clients use their system's roots";

/// Plain when safe; otherwise in POSIX single quotes.
pub fn shell_quote(v: &str) -> String {
    if is_plain(v) {
        v.to_string()
    } else {
        crate::remote::script::sh_quote(v)
    }
}
