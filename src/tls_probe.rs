//! Reads the certificate a NATS server presents, the way a client meets it. Its sibling
//! [`crate::nats_client`] makes the connections that trust the CA; this one trusts nothing and
//! only records.
//!
//! NATS speaks a plaintext `INFO` line before TLS starts (unless `handshake_first`), so a plain
//! TLS probe would read that line as garbage. This module reads it, then does the handshake
//! with a verifier that records the chain instead of judging it; the caller judges it with
//! [`crate::pki::verify_server_chain`], so a bad certificate is still reported in detail.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// What the first bytes from the server said, and the chain it presented.
#[derive(Debug, Clone)]
pub struct Probe {
    pub info: serde_json::Value,
    pub chain: Vec<CertificateDer<'static>>,
}

/// Connects to `addr` (`host:port`), reads `INFO`, and completes a TLS handshake for `host`.
pub async fn probe(addr: &str, host: &str, limit: Duration) -> Result<Probe, String> {
    timeout(limit, probe_inner(addr, host))
        .await
        .map_err(|_| format!("no TLS handshake with {addr} within {limit:?}"))?
}

async fn probe_inner(addr: &str, host: &str) -> Result<Probe, String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let info = read_info(&mut tcp).await?;

    let recorder = Arc::new(Recorder::default());
    let config = crate::nats_client::tls_builder()?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?}: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?;
    let chain = recorder.chain.lock().expect("not poisoned").clone();
    Ok(Probe { info, chain })
}

/// Reads the server's `INFO {json}\r\n` line, byte by byte so no TLS byte is consumed with it.
pub async fn read_info(tcp: &mut TcpStream) -> Result<serde_json::Value, String> {
    let mut line = Vec::with_capacity(1024);
    loop {
        let b = tcp
            .read_u8()
            .await
            .map_err(|e| format!("connection closed before the server said INFO: {e}"))?;
        if b == b'\n' {
            break;
        }
        line.push(b);
        if line.len() > 64 * 1024 {
            return Err("the server's INFO line is over 64 KiB: is this a NATS server?".into());
        }
    }
    let line = String::from_utf8_lossy(&line);
    let json = line.trim_end().strip_prefix("INFO ").ok_or_else(|| {
        format!(
            "expected INFO from a NATS server, got {:?}",
            truncate(&line, 60)
        )
    })?;
    serde_json::from_str(json).map_err(|e| format!("unreadable INFO: {e}"))
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[derive(Debug, Default)]
struct Recorder {
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl Recorder {
    fn algorithms() -> WebPkiSupportedAlgorithms {
        rustls::crypto::ring::default_provider().signature_verification_algorithms
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.chain.lock().expect("not poisoned") = chain;
        Ok(ServerCertVerified::assertion())
    }

    // The signatures are still checked: a server that cannot prove it holds the key fails here.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &Self::algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &Self::algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        Self::algorithms().supported_schemes()
    }
}
