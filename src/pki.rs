//! Where certificates are made (rcgen) and read back (x509-parser). Pure: PEM in, PEM out;
//! writing files is `state`'s job.
//!
//! A CA and a server certificate are different types, as in rcgen's `rustls-cert-gen`: a
//! [`ServerCert`] is issued from a [`Ca`] by [`issue_server_cert`], so a leaf can never be
//! passed as the issuer. Both are made only here, by [`new_ca`] and [`issue_server_cert`], or
//! read back with `from_pem`, which checks the certificate is of its kind.

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
use x509_parser::certificate::X509Certificate;

use crate::secret::Secret;

/// CAs outlive many server certificates; mkcert uses 10 years too.
pub const CA_LIFETIME_DAYS: i64 = 3650;
/// notBefore is backdated so a client whose clock runs a little behind still accepts a
/// certificate issued seconds ago.
pub const CLOCK_SKEW: Duration = Duration::hours(1);

/// A certificate authority: its certificate and the key that signs with it.
#[derive(Debug, Clone)]
pub struct Ca {
    cert_pem: String,
    key_pem: Secret,
    info: CertInfo,
}

impl Ca {
    /// The CA that is the first certificate of `cert_pem` (a trust bundle may follow it; only
    /// the first is kept), with its key. Refuses a certificate that is not a CA, or a CA whose
    /// key usage forbids signing certificates. The key is not parsed here: see
    /// [`key_matches`](Self::key_matches).
    pub fn from_pem(cert_pem: &str, key_pem: Secret) -> Result<Ca, PkiError> {
        let ders = pem_certs(cert_pem)?;
        let parsed = parse_der(&ders[0])?;
        if !parsed.info.is_ca {
            return Err(PkiError(
                "is not a CA certificate (its basicConstraints do not say CA:TRUE)".into(),
            ));
        }
        if !parsed.may_sign_certificates {
            return Err(PkiError(
                "is a CA certificate that may not sign certificates (no keyCertSign usage)".into(),
            ));
        }
        let first = pem_blocks(cert_pem)
            .into_iter()
            .next()
            .unwrap_or_else(|| cert_pem.to_string());
        Ok(Ca {
            cert_pem: first,
            key_pem,
            info: parsed.info,
        })
    }

    /// The CA certificate alone, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &Secret {
        &self.key_pem
    }

    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// Whether the key is the one the certificate names. An error says the key cannot be read
    /// at all (not PEM, or an algorithm rcgen cannot sign with).
    pub fn key_matches(&self) -> Result<bool, PkiError> {
        key_matches(&self.cert_pem, &self.key_pem)
    }
}

/// A server certificate and its key. Its certificate is never a CA.
#[derive(Debug, Clone)]
pub struct ServerCert {
    cert_pem: String,
    key_pem: Secret,
    info: CertInfo,
}

impl ServerCert {
    /// The server certificate in `cert_pem` (its first certificate), with its key. Refuses a
    /// CA certificate.
    pub fn from_pem(cert_pem: String, key_pem: Secret) -> Result<ServerCert, PkiError> {
        let info = inspect(&cert_pem)?;
        if info.is_ca {
            return Err(PkiError(
                "is a CA certificate, not a server certificate (its basicConstraints say CA:TRUE)"
                    .into(),
            ));
        }
        Ok(ServerCert {
            cert_pem,
            key_pem,
            info,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &Secret {
        &self.key_pem
    }

    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// Whether the key is the one the certificate names (as [`Ca::key_matches`]).
    pub fn key_matches(&self) -> Result<bool, PkiError> {
        key_matches(&self.cert_pem, &self.key_pem)
    }
}

/// Whether `key_pem` is the key of the first certificate in `cert_pem`.
fn key_matches(cert_pem: &str, key_pem: &Secret) -> Result<bool, PkiError> {
    let pair = KeyPair::from_pem(key_pem.expose()).map_err(|e| PkiError(e.to_string()))?;
    let parsed = parse_der(&pem_certs(cert_pem)?[0])?;
    Ok(pair.public_key_raw() == parsed.public_key.as_slice())
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

/// Why a certificate could not be made or read. The message reads well after a file name
/// (`rootCA.pem: is not a CA certificate ...`), which the caller adds.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PkiError(String);

/// Making a certificate failed: the work failed (exit 1), not the user's input. Reading a file
/// names the file instead, with [`crate::error::Error::corrupt`] or a usage error.
impl From<PkiError> for crate::error::Error {
    fn from(e: PkiError) -> Self {
        crate::error::Error::failed(e.to_string(), None)
    }
}

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
/// share a subject, a verifier matches the issuer by that name, so a client holding the wrong
/// one fails with a misleading `BadSignature` instead of `UnknownIssuer`.
pub fn new_ca(deployment: &str, now: OffsetDateTime) -> Result<Ca, PkiError> {
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
    let cert_pem = cert.pem();
    Ok(Ca {
        info: inspect(&cert_pem)?,
        cert_pem,
        key_pem: Secret::new(key.serialize_pem()),
    })
}

/// A server certificate for `sans` (IP strings become IP SANs, the rest DNS SANs), signed by `ca`.
pub fn issue_server_cert(
    ca: &Ca,
    sans: &[String],
    lifetime_days: u32,
    now: OffsetDateTime,
) -> Result<ServerCert, PkiError> {
    issue_leaf(ca, sans, lifetime_days, now, false)
}

/// A cluster node's certificate: a server certificate that is also valid as a TLS client
/// certificate, because nats-server presents it when it dials a route and requires and
/// verifies the other side's on every route (its `cluster { tls {} }` always does).
pub fn issue_node_cert(
    ca: &Ca,
    sans: &[String],
    lifetime_days: u32,
    now: OffsetDateTime,
) -> Result<ServerCert, PkiError> {
    issue_leaf(ca, sans, lifetime_days, now, true)
}

fn issue_leaf(
    ca: &Ca,
    sans: &[String],
    lifetime_days: u32,
    now: OffsetDateTime,
    route: bool,
) -> Result<ServerCert, PkiError> {
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
    if route {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + Duration::days(i64::from(lifetime_days));
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(err("server certificate"))?;
    let cert_pem = cert.pem();
    Ok(ServerCert {
        info: inspect(&cert_pem)?,
        cert_pem,
        key_pem: Secret::new(key.serialize_pem()),
    })
}

/// A new server key and the certificate signing request an ACME CA finalizes an order with:
/// the names as DNS SANs, an empty subject (the CA takes the names from the SANs). Returns the
/// CSR's DER and the key's PEM; the key is written by `state` only.
pub fn acme_csr(names: &[String]) -> Result<(Vec<u8>, Secret), PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err("server key"))?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(err("SAN"))?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(err("CSR"))?;
    Ok((csr.der().to_vec(), Secret::new(key.serialize_pem())))
}

/// The roots a publicly trusted certificate chains to: the system's (rustls-native-certs,
/// which also reads `SSL_CERT_FILE` / `SSL_CERT_DIR`), as bevygap's clients use them.
pub fn system_roots() -> Result<rustls::RootCertStore, PkiError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(PkiError(format!(
            "no trusted root certificates found on this system{}",
            found
                .errors
                .first()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )));
    }
    Ok(roots)
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
    parse_der(der).map(|p| p.info)
}

/// A certificate as read: what [`inspect_der`] reports, and what only a CA's loader needs.
struct Parsed {
    info: CertInfo,
    /// False when a keyUsage extension is present without keyCertSign.
    may_sign_certificates: bool,
    /// The subjectPublicKey bits, to compare with a key pair's public key.
    public_key: Vec<u8>,
}

fn parse_der(der: &[u8]) -> Result<Parsed, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError(format!("not an X.509 certificate: {e}")))?;
    Ok(Parsed {
        info: cert_info(&cert, der),
        may_sign_certificates: !matches!(cert.key_usage(), Ok(Some(ku)) if !ku.value.key_cert_sign()),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

fn cert_info(cert: &X509Certificate, der: &[u8]) -> CertInfo {
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
    CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string().replace(':', ""),
        fingerprint: fingerprint(der),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        sans,
        is_ca,
    }
}

pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A root store holding every certificate of `pem`: what a client trusts.
/// An empty `pem` means the system's roots ([`system_roots`]): a publicly trusted certificate.
pub fn root_store(pem: &str) -> Result<rustls::RootCertStore, PkiError> {
    if pem.trim().is_empty() {
        return system_roots();
    }
    let mut roots = rustls::RootCertStore::empty();
    for ca in pem_certs(pem)? {
        roots
            .add(ca)
            .map_err(|e| PkiError(format!("CA certificate rejected: {e}")))?;
    }
    Ok(roots)
}

/// Checks, as a TLS client would, that `chain[0]` chains to one of the CAs in `ca_pem` and is
/// valid for `host` now. Uses rustls' own WebPKI verifier, the same one async-nats uses.
pub fn verify_server_chain(
    ca_pem: &str,
    chain: &[CertificateDer<'static>],
    host: &str,
) -> Result<(), PkiError> {
    let roots = root_store(ca_pem)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loading_checks_the_kind() {
        let now = OffsetDateTime::now_utc();
        let ca = new_ca("t", now).unwrap();
        let server = issue_server_cert(&ca, &["nats.example.com".into()], 90, now).unwrap();

        let again = Ca::from_pem(ca.cert_pem(), ca.key_pem().clone()).unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem(), "the text is kept as made");
        assert!(again.key_matches().unwrap());
        let e = Ca::from_pem(server.cert_pem(), server.key_pem().clone()).unwrap_err();
        assert!(e.to_string().starts_with("is not a CA certificate"), "{e}");

        let bundle = format!("{}{}", ca.cert_pem(), new_ca("t", now).unwrap().cert_pem());
        let first = Ca::from_pem(&bundle, ca.key_pem().clone()).unwrap();
        assert_eq!(
            first.cert_pem(),
            ca.cert_pem(),
            "only the first of a bundle"
        );

        let other = Ca::from_pem(ca.cert_pem(), server.key_pem().clone()).unwrap();
        assert!(!other.key_matches().unwrap());

        ServerCert::from_pem(server.cert_pem().into(), server.key_pem().clone()).unwrap();
        let e = ServerCert::from_pem(ca.cert_pem().into(), ca.key_pem().clone()).unwrap_err();
        assert!(e.to_string().starts_with("is a CA certificate"), "{e}");
    }

    #[test]
    fn a_root_store_holds_every_certificate() {
        let now = OffsetDateTime::now_utc();
        let bundle = format!(
            "{}{}",
            new_ca("a", now).unwrap().cert_pem(),
            new_ca("b", now).unwrap().cert_pem()
        );
        assert_eq!(root_store(&bundle).unwrap().len(), 2);
        assert!(root_store("not a pem").is_err());
    }
}
