//! The CA and server certificate natsup makes, parsed back with x509-parser and checked
//! against issue 2's list, then verified by two independent verifiers: rustls/webpki (what
//! async-nats uses) and the `openssl verify` binary.

use std::net::IpAddr;
use std::process::Command;

use ::time::{Duration, OffsetDateTime};
use natsup::pki::{self, Ca, ServerCert};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::*;

fn der(pem: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    pem.contents
}

fn sans() -> Vec<String> {
    [
        "nats.example.com",
        "203.0.113.7",
        "localhost",
        "::1",
        "nats",
    ]
    .map(String::from)
    .to_vec()
}

struct Made {
    ca: Ca,
    server: ServerCert,
    now: OffsetDateTime,
}

fn make(lifetime_days: u32) -> Made {
    let now = OffsetDateTime::now_utc();
    let ca = pki::new_ca("bevygap", now).unwrap();
    let server = pki::issue_server_cert(&ca, &sans(), lifetime_days, now).unwrap();
    Made { ca, server, now }
}

fn assert_p256(cert: &X509Certificate) {
    let spki = cert.public_key();
    assert_eq!(spki.algorithm.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY);
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .expect("EC curve parameter");
    assert_eq!(curve, OID_EC_P256, "not P-256");
}

fn assert_random_positive_128_bit_serial(cert: &X509Certificate) {
    let serial = cert.raw_serial();
    assert!(serial[0] & 0x80 == 0, "negative serial");
    assert!(
        serial.len() <= 17 && serial.len() >= 15,
        "serial of {} bytes",
        serial.len()
    );
}

fn ski(cert: &X509Certificate) -> Vec<u8> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .expect("subject key identifier")
}

#[test]
fn the_ca() {
    let made = make(365);
    let ca_der = der(made.ca.cert_pem());
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    assert_p256(&ca);
    assert_random_positive_128_bit_serial(&ca);

    let cn = ca
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    assert!(cn.starts_with("natsup CA bevygap "), "{cn}");
    let org = ca
        .subject()
        .iter_organization()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    assert_eq!(org, "natsup");
    assert_eq!(ca.subject(), ca.issuer(), "self-signed");

    let bc = ca.basic_constraints().unwrap().expect("basicConstraints");
    assert!(bc.critical);
    assert!(bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = ca.key_usage().unwrap().expect("keyUsage");
    assert!(ku.critical);
    assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
    assert!(!ku.value.digital_signature());
    assert!(!ski(&ca).is_empty());

    let years = (ca.validity().not_after.timestamp() - made.now.unix_timestamp()) as f64
        / (365.25 * 86400.0);
    assert!((9.9..=10.1).contains(&years), "{years} years");

    // Unique per CA: subject and serial both differ between two CAs of the same deployment.
    let other = pki::new_ca("bevygap", made.now).unwrap();
    let other_der = der(other.cert_pem());
    let (_, other) = X509Certificate::from_der(&other_der).unwrap();
    assert_ne!(other.subject().to_string(), ca.subject().to_string());
    assert_ne!(other.raw_serial(), ca.raw_serial());
}

#[test]
fn the_server_certificate() {
    let made = make(90);
    let ca_der = der(made.ca.cert_pem());
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let server_der = der(made.server.cert_pem());
    let (_, cert) = X509Certificate::from_der(&server_der).unwrap();
    assert_p256(&cert);
    assert_random_positive_128_bit_serial(&cert);
    assert_eq!(cert.issuer(), ca.subject());

    // Backdated one hour for clock skew; the lifetime comes from the config.
    let not_before = cert.validity().not_before.timestamp();
    let backdate = made.now.unix_timestamp() - not_before;
    assert!((3590..=3610).contains(&backdate), "backdated {backdate} s");
    let lifetime = cert.validity().not_after.timestamp() - made.now.unix_timestamp();
    assert!((lifetime - 90 * 86400).abs() <= 5, "lifetime {lifetime} s");

    // The host is a SAN (the tutorial's list lacks it); IPs are IP SANs, names DNS SANs.
    let san = cert
        .subject_alternative_name()
        .unwrap()
        .expect("subjectAltName");
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(bytes) => ips.push(match bytes.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap()),
                _ => IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap()),
            }),
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    assert_eq!(dns, ["nats.example.com", "localhost", "nats"]);
    assert_eq!(
        ips,
        [
            "203.0.113.7".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );

    let ku = cert.key_usage().unwrap().expect("keyUsage");
    assert!(ku.critical);
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign());
    let eku = cert
        .extended_key_usage()
        .unwrap()
        .expect("extendedKeyUsage");
    assert!(eku.value.server_auth);
    assert!(!eku.value.client_auth);
    let bc = cert.basic_constraints().unwrap().expect("basicConstraints");
    assert!(!bc.value.ca);

    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.clone(),
            _ => None,
        })
        .expect("authority key identifier");
    assert_eq!(aki.0, ski(&ca).as_slice(), "AKI names the CA's key");
    assert!(!ski(&cert).is_empty());
}

#[test]
fn it_chains_under_rustls_webpki() {
    let made = make(365);
    let chain = pki::pem_certs(made.server.cert_pem()).unwrap();
    for name in sans() {
        pki::verify_server_chain(made.ca.cert_pem(), &chain, &name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let e = pki::verify_server_chain(made.ca.cert_pem(), &chain, "other.example.com").unwrap_err();
    assert!(e.to_string().contains("not valid for name"), "{e}");
    let other = pki::new_ca("bevygap", made.now).unwrap();
    let e = pki::verify_server_chain(other.cert_pem(), &chain, "nats.example.com").unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
}

fn openssl_verify(ca: &str, cert: &str, extra: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    let out = Command::new("openssl")
        .arg("verify")
        .args(extra)
        .arg("-CAfile")
        .arg(dir.path().join("ca.pem"))
        .arg(dir.path().join("cert.pem"))
        .output()
        .expect("openssl is installed by ./scripts/test.sh");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn it_chains_under_openssl_verify() {
    let made = make(365);
    let (ok, out) = openssl_verify(made.ca.cert_pem(), made.server.cert_pem(), &[]);
    assert!(ok, "{out}");
    let (ok, out) = openssl_verify(
        made.ca.cert_pem(),
        made.server.cert_pem(),
        &[
            "-purpose",
            "sslserver",
            "-x509_strict",
            "-verify_hostname",
            "nats.example.com",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = openssl_verify(
        made.ca.cert_pem(),
        made.server.cert_pem(),
        &["-verify_ip", "203.0.113.7"],
    );
    assert!(ok, "{out}");
    let other = pki::new_ca("bevygap", made.now).unwrap();
    let (ok, out) = openssl_verify(other.cert_pem(), made.server.cert_pem(), &[]);
    assert!(!ok, "chained to a CA that did not sign it:\n{out}");
    // The server certificate cannot sign others: pathlen 0 and no keyCertSign.
    let (ok, _) = openssl_verify(
        made.server.cert_pem(),
        made.server.cert_pem(),
        &["-x509_strict"],
    );
    assert!(!ok);
}

#[test]
fn renewal_starts_at_a_third_of_the_lifetime_or_30_days() {
    let now = OffsetDateTime::now_utc();
    let ca = pki::new_ca("r", now).unwrap();
    let info = |lifetime: u32, issued_days_ago: i64| {
        let issued = now - Duration::days(issued_days_ago);
        let c = pki::issue_server_cert(&ca, &sans(), lifetime, issued).unwrap();
        pki::inspect(c.cert_pem()).unwrap()
    };
    // 365 days: renew when under 121 days are left (a third), not before.
    assert!(info(365, 240).renewal_reason(now).is_none());
    assert!(info(365, 250).renewal_reason(now).is_some());
    // 825 days: a third is 275 days.
    assert!(info(825, 500).renewal_reason(now).is_none());
    assert!(info(825, 560).renewal_reason(now).is_some());
    // 60 days: only the third (20 days), or every run would renew it.
    assert!(info(60, 0).renewal_reason(now).is_none());
    assert!(info(60, 35).renewal_reason(now).is_none());
    assert!(info(60, 45).renewal_reason(now).is_some());
    // Expired: certainly.
    let reason = info(30, 40).renewal_reason(now).unwrap();
    assert!(reason.contains("days left"), "{reason}");
}

#[test]
fn inspect_reports_what_status_and_ca_show_print() {
    let made = make(365);
    let info = pki::inspect(made.server.cert_pem()).unwrap();
    assert!(!info.is_ca);
    assert_eq!(info.serial.len(), 32, "{}", info.serial);
    assert_eq!(info.days_left(made.now), 364);
    assert!(info.has_sans(&sans()));
    let openssl = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(made.server.cert_pem().as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let line = String::from_utf8_lossy(&openssl.stdout);
    assert!(
        line.trim().ends_with(&info.fingerprint),
        "openssl says {line}, natsup says {}",
        info.fingerprint
    );
}
