//! How natsup reaches a NATS server as a client: where the server is ([`Endpoint`]), who logs
//! in ([`Login`], [`deployment_logins`]), the TLS that trusts only the deployment's CA
//! ([`client_tls`]), and [`connect`]. Every NATS connection natsup makes is made here; its
//! sibling [`crate::tls_probe`] reads the certificate a server presents without judging it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::timeout;

use crate::config::{self, Permissions};
use crate::pki;
use crate::secret::Secret;

/// How long one step with a server (a connect, a handshake, a round trip) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the server is and what it must prove.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port` to dial.
    pub addr: String,
    /// The name the certificate must carry (DNS name or IP).
    pub host: String,
    /// PEM of the CA (or CAs) to trust, and nothing else.
    pub ca_pem: String,
}

impl Endpoint {
    /// From a `nats://host:port` (or `tls://`) URL; the port defaults to 4222.
    pub fn from_url(url: &str, ca_pem: String) -> Result<Endpoint, String> {
        let rest = url
            .split_once("://")
            .map(|(scheme, rest)| match scheme {
                "nats" | "tls" => Ok(rest),
                _ => Err(format!("{url:?}: the scheme must be nats:// or tls://")),
            })
            .unwrap_or(Ok(url))?;
        let hostport = rest
            .rsplit_once('@')
            .map_or(rest, |(_, h)| h)
            .trim_end_matches('/');
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, tail) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed [ in the host"))?;
            (
                h.to_string(),
                tail.strip_prefix(':').unwrap_or("4222").to_string(),
            )
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.to_string()),
                None => (hostport.to_string(), "4222".to_string()),
            }
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{url:?}: {port:?} is not a port"))?;
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let addr = config::host_port(&host, port);
        Ok(Endpoint { addr, host, ca_pem })
    }

    pub fn url(&self) -> String {
        format!("tls://{}", self.addr)
    }
}

/// One user and the password to log in with.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub password: Secret,
    /// The user's permissions, when known: the JetStream check is skipped if they forbid it.
    pub permissions: Option<Permissions>,
}

/// The deployment's server and its users (all, or `only`), with the passwords the server
/// should hold now.
pub fn deployment_logins(
    config: &crate::config::Config,
    state: &crate::state::State,
    only: Option<&str>,
) -> Result<(Endpoint, Vec<Login>), String> {
    let endpoint = Endpoint::from_url(&config.url(), state.trust_pem.clone())?;
    let users: Vec<_> =
        match only {
            Some(name) => vec![config.user(name).ok_or_else(|| {
                format!("`{name}` is not a user of deployment `{}`", config.name)
            })?],
            None => config.users.iter().collect(),
        };
    let logins = users
        .into_iter()
        .map(|u| Login {
            user: u.name.clone(),
            password: state.secrets.served_password(&u.name).clone(),
            permissions: u.permissions.clone(),
        })
        .collect();
    Ok((endpoint, logins))
}

/// The rustls builder every TLS connection to a server starts from, before it is told what to
/// trust: ring, passed in rather than read from the process default, so tests and benches that
/// call this without [`crate::run`] get the same TLS.
pub fn tls_builder()
-> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, String> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
}

/// A rustls client config that trusts exactly the CAs in `ca_pem`.
pub fn client_tls(ca_pem: &str) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in pki::pem_certs(ca_pem).map_err(|e| e.0)? {
        roots
            .add(ca)
            .map_err(|e| format!("CA certificate rejected: {e}"))?;
    }
    Ok(tls_builder()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Connects with TLS required, trusting only the endpoint's CA.
pub async fn connect(endpoint: &Endpoint, login: &Login) -> Result<async_nats::Client, String> {
    let tls = client_tls(&endpoint.ca_pem)?;
    let options = async_nats::ConnectOptions::with_user_and_password(
        login.user.clone(),
        login.password.expose().to_string(),
    )
    .require_tls(true)
    .tls_client_config(tls)
    .connection_timeout(STEP_TIMEOUT)
    .name("natsup verify");
    timeout(STEP_TIMEOUT * 2, options.connect(endpoint.url()))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| crate::error::chain(&e))
}

/// Whether a failed [`connect`] was the server refusing the credentials (nats-server answers
/// `-ERR 'Authorization Violation'`), not a network or TLS failure.
pub fn is_auth_error(e: &str) -> bool {
    let e = e.to_ascii_lowercase();
    e.contains("authorization") || e.contains("authentication")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Endpoint::from_url("nats://nats.example.com", String::new()).unwrap();
        assert_eq!(
            (t.addr.as_str(), t.host.as_str()),
            ("nats.example.com:4222", "nats.example.com")
        );
        let t = Endpoint::from_url("tls://u:p@[::1]:4333", String::new()).unwrap();
        assert_eq!((t.addr.as_str(), t.host.as_str()), ("[::1]:4333", "::1"));
        assert!(Endpoint::from_url("http://x", String::new()).is_err());
        assert!(Endpoint::from_url("nats://x:port", String::new()).is_err());
    }
}
