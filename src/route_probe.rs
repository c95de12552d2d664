//! Logs in to a node's route port as another node would, to prove which route password it
//! accepts. A route connection is TLS from its first byte (nats-server sends a route's `INFO`
//! only after the handshake), and the node requires and verifies a client certificate from
//! the deployment's CA: the probe presents the node's own. It then sends a route `CONNECT`
//! with the user and password, and a `PING`: nats-server answers `-ERR 'Authorization
//! Violation'` to a password it does not accept, and `PONG` to one it does. The probe never
//! sends an `INFO`, so the node never counts it as a peer; it hangs up after the answer.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::pki::ServerCert;
use crate::secret::Secret;

/// What a node said to a route login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteLogin {
    Accepted,
    Refused,
    /// No answer either way: the reason.
    Unknown(String),
}

/// A node's route listener, and how a peer meets it.
#[derive(Debug, Clone, Copy)]
pub struct RouteListener<'a> {
    /// `host:port` of the route port.
    pub addr: &'a str,
    /// The name its certificate must carry.
    pub host: &'a str,
    /// The CA its certificate must chain to.
    pub ca_pem: &'a str,
    /// The certificate the probe presents, as a peer would (one from the same CA).
    pub client: &'a ServerCert,
    /// The cluster's name.
    pub cluster: &'a str,
}

/// Logs in to `listener` as `user` with `password`, as a peer would.
pub async fn route_login(
    listener: RouteListener<'_>,
    user: &str,
    password: &Secret,
    limit: Duration,
) -> RouteLogin {
    let RouteListener {
        addr,
        host,
        ca_pem,
        client,
        cluster,
    } = listener;
    match timeout(
        limit,
        login(addr, host, ca_pem, client, cluster, user, password),
    )
    .await
    {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => RouteLogin::Unknown(e),
        Err(_) => RouteLogin::Unknown(format!("no answer from {addr} within {limit:?}")),
    }
}

#[allow(clippy::too_many_arguments)] // the fields of a RouteListener, unpacked once
async fn login(
    addr: &str,
    host: &str,
    ca_pem: &str,
    client: &ServerCert,
    cluster: &str,
    user: &str,
    password: &Secret,
) -> Result<RouteLogin, String> {
    let roots = crate::pki::root_store(ca_pem).map_err(|e| e.to_string())?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(client.cert_pem().as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the node's certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(client.key_pem().expose().as_bytes())
        .map_err(|e| format!("the node's key: {e}"))?;
    let config = crate::nats_client::tls_builder()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?}: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?;
    let mut tls = BufReader::new(tls);
    let mut line = String::new();
    tls.read_line(&mut line)
        .await
        .map_err(|e| format!("reading INFO from {addr}: {e}"))?;
    if !line.starts_with("INFO ") {
        return Err(format!(
            "{addr} did not start with INFO: {:?}",
            line.trim_end()
        ));
    }
    let connect = serde_json::json!({
        "echo": true,
        "verbose": false,
        "pedantic": false,
        "user": user,
        "pass": password.expose(),
        "tls_required": true,
        "name": "natsup-route-probe",
        "cluster": cluster,
        "headers": true,
    });
    tls.get_mut()
        .write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes())
        .await
        .map_err(|e| format!("writing to {addr}: {e}"))?;
    loop {
        line.clear();
        let n = tls
            .read_line(&mut line)
            .await
            .map_err(|e| format!("reading from {addr}: {e}"))?;
        if n == 0 {
            return Err(format!("{addr} closed the connection without an answer"));
        }
        if line.starts_with("-ERR") {
            return Ok(if line.contains("Authorization Violation") {
                RouteLogin::Refused
            } else {
                RouteLogin::Unknown(line.trim_end().to_string())
            });
        }
        if line.starts_with("PONG") {
            return Ok(RouteLogin::Accepted);
        }
    }
}
