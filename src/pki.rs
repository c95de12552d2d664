//! Where certificates are made (rcgen) and read back (x509-parser). Pure: PEM in, PEM out;
//! writing files is `state`'s job.
//!
//! A server certificate can only be issued from a [`CertifiedKey`] CA, which
//! [`new_ca`] makes or `state` loads.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::secret::Secret;

/// CAs outlive many server certificates; mkcert uses 10 years too.
pub const CA_LIFETIME_DAYS: i64 = 3650;
/// notBefore is backdated so a client whose clock runs a little behind still accepts a
/// certificate issued seconds ago.
pub const CLOCK_SKEW: Duration = Duration::hours(1);

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: Secret,
}

/// What natsup needs to know about a certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// Lowercase hex, no separators.
    pub serial: String,
    /// SHA-256 of the DER, uppercase hex pairs joined by `:` (as `openssl x509 -fingerprint`).
    pub fingerprint: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// DNS names and IP addresses, as strings.
    pub sans: Vec<String>,
    pub is_ca: bool,
}

impl CertInfo {
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }

    pub fn lifetime(&self) -> Duration {
        self.not_after - self.not_before
    }

    /// Why this certificate should be renewed now, if it should: less than a third of its
    /// lifetime left, or under 30 days. Certificates that live under 90 days use only the
    /// third, or every run would renew them.
    pub fn renewal_reason(&self, now: OffsetDateTime) -> Option<String> {
        let left = self.not_after - now;
        let third: Duration = self.lifetime() / 3;
        let threshold = if self.lifetime() >= Duration::days(90) {
            third.max(Duration::days(30))
        } else {
            third
        };
        (left < threshold).then(|| {
            format!(
                "it expires {} ({} days left, renewal starts at {} days)",
                self.not_after.date(),
                left.whole_days(),
                threshold.whole_days()
            )
        })
    }

    /// True when the certificate names exactly these SANs (order and case aside).
    pub fn has_sans(&self, wanted: &[String]) -> bool {
        let norm = |v: &[String]| {
            let mut v: Vec<String> = v.iter().map(|s| normalize_san(s)).collect();
            v.sort();
            v.dedup();
            v
        };
        norm(&self.sans) == norm(wanted)
    }
}

fn normalize_san(s: &str) -> String {
    match s.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => s.trim_end_matches('.').to_ascii_lowercase(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PkiError(pub String);

fn err(context: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError(format!("{context}: {e}"))
}

/// A 128-bit random positive serial. rcgen's default is a hash of the public key, which would
/// repeat if a key were ever reused.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x40; // and no leading zero byte, so it stays 16 bytes long
    SerialNumber::from_slice(&bytes)
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    hex::encode(bytes)
}

/// A new ECDSA P-256 CA for one deployment. Its subject carries a random suffix: when two CAs
/// share a subject, a client holding the wrong one fails with a misleading `BadSignature`
/// instead of `UnknownIssuer` (FACTS.md).
pub fn new_ca(deployment: &str, now: OffsetDateTime) -> Result<CertifiedKey, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err("CA key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "natsup");
    dn.push(
        DnType::CommonName,
        format!("natsup CA {deployment} {}", random_suffix()),
    );
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + Duration::days(CA_LIFETIME_DAYS);
    let cert = params.self_signed(&key).map_err(err("CA certificate"))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: Secret::new(key.serialize_pem()),
    })
}

/// A server certificate for `sans` (IP strings become IP SANs, the rest DNS SANs), signed by `ca`.
pub fn issue_server_cert(
    ca: &CertifiedKey,
    sans: &[String],
    lifetime_days: u32,
    now: OffsetDateTime,
) -> Result<CertifiedKey, PkiError> {
    let ca_key = KeyPair::from_pem(ca.key_pem.expose()).map_err(err("CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(err("CA certificate"))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err("server key"))?;

    let mut params = CertificateParams::default();
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => s
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(err("SAN")),
        })
        .collect::<Result<_, _>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "natsup");
    dn.push(
        DnType::CommonName,
        sans.first().cloned().unwrap_or_default(),
    );
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + Duration::days(i64::from(lifetime_days));
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(err("server certificate"))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: Secret::new(key.serialize_pem()),
    })
}

/// The PEM text of each certificate in a file, in order, each ending with a newline.
pub fn pem_blocks(pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let (Some(start), Some(end)) = (rest.find("-----BEGIN CERTIFICATE-----"), rest.find(END))
    {
        if end < start {
            rest = &rest[end + END.len()..];
            continue;
        }
        blocks.push(format!("{}\n", &rest[start..end + END.len()]));
        rest = &rest[end + END.len()..];
    }
    blocks
}

/// Every certificate in a PEM file, in order.
pub fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError(format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(PkiError("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// Reads the first certificate of a PEM file.
pub fn inspect(pem: &str) -> Result<CertInfo, PkiError> {
    inspect_der(&pem_certs(pem)?[0])
}

pub fn inspect_der(der: &[u8]) -> Result<CertInfo, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError(format!("not an X.509 certificate: {e}")))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => sans.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()),
                        16 => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()),
                        _ => continue,
                    };
                    sans.push(ip.to_string());
                }
                _ => {}
            }
        }
    }
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string().replace(':', ""),
        fingerprint: fingerprint(der),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        sans,
        is_ca,
    })
}

pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Checks, as a TLS client would, that `chain[0]` chains to one of the CAs in `ca_pem` and is
/// valid for `host` now. Uses rustls' own WebPKI verifier, the same one async-nats uses.
pub fn verify_server_chain(
    ca_pem: &str,
    chain: &[CertificateDer<'static>],
    host: &str,
) -> Result<(), PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in pem_certs(ca_pem)? {
        roots
            .add(ca)
            .map_err(|e| PkiError(format!("CA certificate rejected: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| PkiError(format!("cannot build verifier: {e}")))?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| PkiError(format!("{host:?} is not a server name: {e}")))?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| PkiError("the server sent no certificate".into()))?;
    use rustls::client::danger::ServerCertVerifier;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| PkiError(e.to_string()))
}
