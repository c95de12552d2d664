//! How natsup reaches a NATS server as a client: where the server is ([`Endpoint`]), who logs
//! in ([`Login`], [`deployment_logins`]), the TLS that trusts only the deployment's CA
//! ([`client_tls`]), and [`connect`]. Every NATS connection natsup makes is made here; its
//! sibling [`crate::tls_probe`] reads the certificate a server presents without judging it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

/// Node `i` of the deployment and its users (all, or `only`), with the passwords the server
/// should hold now.
pub fn deployment_logins(
    config: &crate::config::Config,
    i: usize,
    state: &crate::state::State,
    only: Option<&str>,
) -> Result<(Endpoint, Vec<Login>), String> {
    let endpoint = Endpoint::from_url(&config.nodes()[i].url(), state.node_ca(i).to_string())?;
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
            user: state.secrets.served_login(&u.name).to_string(),
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
    let roots = pki::root_store(ca_pem).map_err(|e| e.to_string())?;
    Ok(tls_builder()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Connects with TLS required, trusting only the endpoint's CA.
///
/// A login counts as accepted only once the server has answered a round trip on it.
/// async-nats' `connect` returns as soon as any line follows its `CONNECT` + `PING`
/// (async-nats 0.51, `Connector::try_connect_to`: anything but `-ERR` is success), and a
/// server still busy checking a bcrypt password sends its own first `PING` before its verdict:
/// seen on a loaded 2-core machine at cost 11, where a wrong password was "accepted" and the
/// `-ERR 'Authorization Violation'` came after. Refusal checks and password rotation depend on
/// that verdict, so it is waited for.
pub async fn connect(endpoint: &Endpoint, login: &Login) -> Result<async_nats::Client, String> {
    let tls = client_tls(&endpoint.ca_pem)?;
    let refused = Arc::new(AtomicBool::new(false));
    let options = async_nats::ConnectOptions::with_user_and_password(
        login.user.clone(),
        login.password.expose().to_string(),
    )
    .require_tls(true)
    .tls_client_config(tls)
    .connection_timeout(STEP_TIMEOUT)
    .name("natsup verify")
    .event_callback({
        let refused = refused.clone();
        move |event| {
            let refused = refused.clone();
            async move {
                if let async_nats::Event::ServerError(
                    async_nats::ServerError::AuthorizationViolation,
                ) = event
                {
                    refused.store(true, Ordering::SeqCst);
                }
            }
        }
    });
    let client = timeout(STEP_TIMEOUT * 2, options.connect(endpoint.url()))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| crate::error::chain(&e))?;
    // A user whose permissions allow no subject to both publish and subscribe cannot make a
    // round trip: for that rare login, async-nats' own answer is all there is.
    let Some(echo) = echo_subject(login.permissions.as_ref(), &client.new_inbox()) else {
        return Ok(client);
    };
    match timeout(STEP_TIMEOUT, round_trip(&client, echo)).await {
        Ok(Ok(_)) => Ok(client),
        _ if refused.load(Ordering::SeqCst) => Err("authorization violation".to_string()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timed out waiting for the first round trip".to_string()),
    }
}

/// Publish to an inbox this client subscribed to, and time until it comes back: async-nats has
/// no RTT call, and its `flush()` is not a round trip (it returns once the write buffer reaches
/// the socket; no PING goes to the server).
pub async fn round_trip(client: &async_nats::Client, subject: String) -> Result<Duration, String> {
    use futures_util::StreamExt;
    let mut sub = client
        .subscribe(subject.clone())
        .await
        .map_err(|e| format!("subscribe failed: {e}"))?;
    client
        .flush()
        .await
        .map_err(|e| format!("flush failed: {e}"))?;
    let started = Instant::now();
    client
        .publish(subject, vec![b'x'; 100].into())
        .await
        .map_err(|e| format!("publish failed: {e}"))?;
    sub.next()
        .await
        .ok_or_else(|| "the subscription closed".to_string())?;
    Ok(started.elapsed())
}

/// A subject the user may both publish and subscribe to, for the round trip: its own inbox
/// (`unique_inbox`) when allowed, else one made from its publish allow-list, wildcards filled
/// with a token of our own.
pub fn echo_subject(perms: Option<&Permissions>, unique_inbox: &str) -> Option<String> {
    let Some(p) = perms else {
        return Some(unique_inbox.to_string());
    };
    let token = unique_inbox.rsplit('.').next().unwrap_or("natsup");
    let from_allow_list = p.publish.iter().flat_map(|r| &r.allow).map(|pattern| {
        pattern
            .split('.')
            .map(|t| match t {
                "*" => "natsup_verify".to_string(),
                ">" => format!("natsup_verify.{token}"),
                t => t.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".")
    });
    std::iter::once(unique_inbox.to_string())
        .chain(from_allow_list)
        .find(|subject| {
            p.publish.as_ref().is_none_or(|r| r.permits(subject))
                && p.subscribe.as_ref().is_none_or(|r| r.permits(subject))
        })
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
