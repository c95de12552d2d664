//! Checks a running NATS server the way its clients will meet it: TLS trusting only the CA,
//! each user's password, a round trip, JetStream KV, and that the wrong ways in are refused.
//!
//! The report follows the nats CLI's check convention (`nats server check connection`):
//! every check is OK, WARNING, CRITICAL or UNKNOWN, and the worst one is the exit code.
//! The connections themselves are made by [`crate::nats_client`].

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

pub mod cluster;

use crate::config::{Config, Permissions};
use crate::nats_client::{
    Endpoint, Login, STEP_TIMEOUT, connect, echo_subject, is_auth_error, round_trip,
};
use crate::pki;
use crate::state::State;
use crate::tls_probe;

/// Checks the deployment as its clients meet it: every node's own checks (`only` one user, or
/// all) and, for a cluster, each scoped `<node>/<check>` and followed by the checks across the
/// nodes ([`cluster::verify`]). A deployment of one node gets that node's report as it is.
pub async fn deployment(
    config: &Config,
    state: &State,
    only: Option<&str>,
    limits: &Thresholds,
    depth: Depth,
) -> Result<Report, String> {
    let targets = targets(config, state, only)?;
    Ok(deployment_with(config, state, &targets, limits, depth).await)
}

/// Each node's endpoint and the logins to check on it, as [`deployment`] checks them.
pub fn targets(
    config: &Config,
    state: &State,
    only: Option<&str>,
) -> Result<Vec<(Endpoint, Vec<Login>)>, String> {
    (0..config.nodes().len())
        .map(|i| crate::nats_client::deployment_logins(config, i, state, only))
        .collect()
}

/// [`deployment`] with the endpoints and logins given (`verify --ca`, `--password`).
pub async fn deployment_with(
    config: &Config,
    state: &State,
    targets: &[(Endpoint, Vec<Login>)],
    limits: &Thresholds,
    depth: Depth,
) -> Report {
    let mut per_node = join_all(
        targets
            .iter()
            .map(|(target, logins)| verify(target, logins, limits, depth)),
    )
    .await;
    if per_node.len() == 1 {
        return per_node.pop().expect("one report");
    }
    cluster::verify(config, state, per_node).await
}

/// A check's outcome. Ordered so that the worst is the greatest, as Nagios combines states
/// (`max_state_alt`): a check that could not tell is worse than OK but says less than a
/// warning, and a server that refuses connections is CRITICAL even if a later check is unsure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Unknown,
    Warning,
    Critical,
}

impl Status {
    /// The nats CLI's check exit codes.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

/// When a figure turns a check WARNING or CRITICAL.
#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    pub connect_warn: Duration,
    pub connect_critical: Duration,
    pub rtt_warn: Duration,
    pub rtt_critical: Duration,
    pub cert_warn_days: i64,
    pub cert_critical_days: i64,
}

impl Default for Thresholds {
    /// The nats CLI's defaults (warn 500 ms, critical 1 s); a certificate warns under 30 days.
    fn default() -> Self {
        Thresholds {
            connect_warn: Duration::from_millis(500),
            connect_critical: Duration::from_secs(1),
            rtt_warn: Duration::from_millis(500),
            rtt_critical: Duration::from_secs(1),
            cert_warn_days: 30,
            cert_critical_days: 7,
        }
    }
}

impl Thresholds {
    /// For `up`: whether the server works, not how fast. Its checks run all at once and time
    /// each other's bcrypt contention, so only a step that times out is graded; certificate
    /// expiry is graded as usual.
    pub fn works() -> Self {
        Thresholds {
            connect_warn: STEP_TIMEOUT,
            connect_critical: STEP_TIMEOUT,
            rtt_warn: STEP_TIMEOUT,
            rtt_critical: STEP_TIMEOUT,
            ..Thresholds::default()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `server`, or the user name the check ran as.
    pub scope: String,
    /// Stable identifier: `tls_certificate`, `plaintext_refused`, `wrong_password_refused`,
    /// `connect`, `rtt`, `jetstream_kv`.
    pub check: &'static str,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub status: Status,
    /// Days until the served certificate expires, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_days_left: Option<i64>,
    /// Serial of the served certificate (lowercase hex), when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_serial: Option<String>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn exit_code(&self) -> i32 {
        self.status.exit_code()
    }

    pub fn check(&self, scope: &str, check: &str) -> Option<&Check> {
        self.checks
            .iter()
            .find(|c| c.scope == scope && c.check == check)
    }
}

/// How much `verify` asks of the server, and how fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Every check, one login at a time: the server's bcrypt check (~1 ms per connect at
    /// natsup's default cost 4, ~0.1 s at 11) is CPU bound, and concurrent connects would
    /// time each other's contention, not the server. This is `natsup verify`, whose timings are the point.
    Thorough,
    /// Every check, all at once: after `up` changed the server, the answer matters and the
    /// timings don't. Over a real link each check is a few round trips, and this pays them once.
    AllAtOnce,
    /// The served certificate and one login (connect and round trip), at once: after an `up`
    /// that found the server's files byte-identical to ours, this confirms it still answers.
    Quick,
}

/// Runs the checks `depth` asks for against `endpoint`, for each login.
pub async fn verify(
    endpoint: &Endpoint,
    logins: &[Login],
    limits: &Thresholds,
    depth: Depth,
) -> Report {
    let report = verify_as(endpoint, logins, limits, depth).await;
    if matches!(depth, Depth::AllAtOnce) && report.status == Status::Critical {
        // All at once is a burst of TLS handshakes and bcrypt checks (three per user, and more
        // per node on a cluster). A small server that is busy can take longer than the 2 s
        // nats-server gives a TLS handshake (`tls { timeout: 2 }`) and drop one, which reads
        // as "tls handshake eof" or a broken pipe. Asked again one check at a time, a real
        // fault is still critical, and a burst's casualty is not reported as one.
        return verify_as(endpoint, logins, limits, Depth::Thorough).await;
    }
    report
}

async fn verify_as(
    endpoint: &Endpoint,
    logins: &[Login],
    limits: &Thresholds,
    depth: Depth,
) -> Report {
    let certificate = check_certificate(endpoint, limits);
    let (cert, days, serial, rest) = match depth {
        Depth::Thorough => {
            let (cert, days, serial) = certificate.await;
            let mut rest = vec![check_plaintext_refused(endpoint).await];
            if let Some(first) = logins.first() {
                rest.push(check_wrong_password_refused(endpoint, &first.user).await);
            }
            for login in logins {
                rest.extend(check_login(endpoint, login, limits, Kv::Check).await);
            }
            (cert, days, serial, rest)
        }
        Depth::AllAtOnce => {
            let refusals = async {
                let wrong = match logins.first() {
                    Some(first) => Some(check_wrong_password_refused(endpoint, &first.user).await),
                    None => None,
                };
                (check_plaintext_refused(endpoint).await, wrong)
            };
            let logins = join_all(
                logins
                    .iter()
                    .map(|l| check_login(endpoint, l, limits, Kv::Check)),
            );
            let ((cert, days, serial), (plaintext, wrong), per_user) =
                tokio::join!(certificate, refusals, logins);
            let mut rest = vec![plaintext];
            rest.extend(wrong);
            rest.extend(per_user.into_iter().flatten());
            (cert, days, serial, rest)
        }
        Depth::Quick => {
            // The round trip proves the login; JetStream is the thorough runs' job.
            let login = async {
                match logins.first() {
                    Some(first) => check_login(endpoint, first, limits, Kv::Skip).await,
                    None => Vec::new(),
                }
            };
            let ((cert, days, serial), per_user) = tokio::join!(certificate, login);
            (cert, days, serial, per_user)
        }
    };
    let checks: Vec<Check> = std::iter::once(cert).chain(rest).collect();
    let status = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Unknown);
    Report {
        url: endpoint.url(),
        status,
        cert_days_left: days,
        cert_serial: serial,
        checks,
    }
}

fn server_check(check: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        scope: "server".into(),
        check,
        status,
        seconds: None,
        detail: detail.into(),
    }
}

async fn check_certificate(
    endpoint: &Endpoint,
    limits: &Thresholds,
) -> (Check, Option<i64>, Option<String>) {
    let name = "tls_certificate";
    let probe = match tls_probe::probe(&endpoint.addr, &endpoint.host, STEP_TIMEOUT).await {
        Ok(p) => p,
        Err(e) => return (server_check(name, Status::Critical, e), None, None),
    };
    let Some(leaf) = probe.chain.first() else {
        return (
            server_check(
                name,
                Status::Critical,
                "the server presented no certificate",
            ),
            None,
            None,
        );
    };
    let info = match pki::inspect_der(leaf) {
        Ok(i) => i,
        Err(e) => {
            return (
                server_check(name, Status::Critical, e.to_string()),
                None,
                None,
            );
        }
    };
    let days = info.days_left(time::OffsetDateTime::now_utc());
    let serial = Some(info.serial.clone());
    if let Err(e) = pki::verify_server_chain(&endpoint.ca_pem, &probe.chain, &endpoint.host) {
        let detail = format!(
            "serial {}: not trusted for {}: {}",
            info.serial, endpoint.host, e
        );
        return (
            server_check(name, Status::Critical, detail),
            Some(days),
            serial,
        );
    }
    let status = if days < limits.cert_critical_days {
        Status::Critical
    } else if days < limits.cert_warn_days {
        Status::Warning
    } else {
        Status::Ok
    };
    // With no CA of natsup's, the chain was checked against the system's roots: say whose.
    let detail = if endpoint.ca_pem.trim().is_empty() {
        format!(
            "publicly trusted, issued by {}, names {}, expires {} ({days} days left)",
            info.issuer,
            endpoint.host,
            info.not_after.date()
        )
    } else {
        format!(
            "chains to the CA, names {}, expires {} ({days} days left)",
            endpoint.host,
            info.not_after.date()
        )
    };
    (server_check(name, status, detail), Some(days), serial)
}

/// A client that skips TLS must be turned away. Sends a CONNECT with throwaway credentials,
/// never a real password, over the plaintext socket.
async fn check_plaintext_refused(endpoint: &Endpoint) -> Check {
    let name = "plaintext_refused";
    let attempt = async {
        let mut tcp = TcpStream::connect(&endpoint.addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let info = tls_probe::read_info(&mut tcp).await?;
        let required = info
            .get("tls_required")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let junk = crate::passwords::generate();
        let connect = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"tls_required\":false,\"user\":\"natsup-probe\",\"pass\":\"{}\"}}\r\nPING\r\n",
            junk.expose()
        );
        let _ = tcp.write_all(connect.as_bytes()).await;
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        // Read until the server closes or answers; PONG means it accepted plaintext.
        let _ = timeout(Duration::from_secs(3), async {
            while let Ok(n) = tcp.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"PONG") {
                    break;
                }
            }
        })
        .await;
        Ok::<_, String>((required, got.windows(4).any(|w| w == b"PONG")))
    };
    match timeout(STEP_TIMEOUT, attempt).await {
        Err(_) => server_check(name, Status::Unknown, "no answer in time"),
        Ok(Err(e)) => server_check(name, Status::Critical, e),
        Ok(Ok((_, true))) => server_check(
            name,
            Status::Critical,
            "the server accepted a plaintext client",
        ),
        Ok(Ok((true, false))) => server_check(name, Status::Ok, "the server requires TLS"),
        Ok(Ok((false, false))) => server_check(
            name,
            Status::Warning,
            "the server refused the client but does not advertise tls_required",
        ),
    }
}

async fn check_wrong_password_refused(endpoint: &Endpoint, user: &str) -> Check {
    let name = "wrong_password_refused";
    let login = Login {
        user: user.to_string(),
        password: crate::passwords::generate(),
        permissions: None,
    };
    match connect(endpoint, &login).await {
        Ok(client) => {
            drop(client);
            server_check(
                name,
                Status::Critical,
                format!("a wrong password for {user} was accepted"),
            )
        }
        Err(e) if is_auth_error(&e) => {
            server_check(name, Status::Ok, format!("refused for {user}"))
        }
        Err(e) => server_check(name, Status::Unknown, format!("could not tell: {e}")),
    }
}

fn user_check(
    login: &Login,
    check: &'static str,
    status: Status,
    seconds: Option<f64>,
    detail: impl Into<String>,
) -> Check {
    Check {
        scope: login.user.clone(),
        check,
        status,
        seconds,
        detail: detail.into(),
    }
}

fn grade(elapsed: Duration, warn: Duration, critical: Duration) -> Status {
    if elapsed >= critical {
        Status::Critical
    } else if elapsed >= warn {
        Status::Warning
    } else {
        Status::Ok
    }
}

/// Whether a login's checks include the JetStream KV round trip.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kv {
    Check,
    Skip,
}

async fn check_login(
    endpoint: &Endpoint,
    login: &Login,
    limits: &Thresholds,
    kv: Kv,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let started = Instant::now();
    let client = match connect(endpoint, login).await {
        Ok(c) => c,
        Err(e) => {
            let hint = if is_auth_error(&e) {
                " (the password natsup has is not the one the server has: run `natsup up`)"
            } else {
                ""
            };
            checks.push(user_check(
                login,
                "connect",
                Status::Critical,
                None,
                format!("{e}{hint}"),
            ));
            return checks;
        }
    };
    let connect_time = started.elapsed();
    checks.push(user_check(
        login,
        "connect",
        grade(connect_time, limits.connect_warn, limits.connect_critical),
        Some(connect_time.as_secs_f64()),
        format!("connected and authenticated in {}", ms(connect_time)),
    ));

    let Some(echo) = echo_subject(login.permissions.as_ref(), &client.new_inbox()) else {
        checks.push(user_check(
            login,
            "rtt",
            Status::Ok,
            None,
            "skipped: the user's permissions allow no subject to both publish and subscribe to",
        ));
        return checks;
    };
    checks.push(
        match timeout(STEP_TIMEOUT, round_trip(&client, echo)).await {
            Ok(Ok(rtt)) => user_check(
                login,
                "rtt",
                grade(rtt, limits.rtt_warn, limits.rtt_critical),
                Some(rtt.as_secs_f64()),
                format!("100-byte message to its own inbox and back in {}", ms(rtt)),
            ),
            Ok(Err(e)) => user_check(login, "rtt", Status::Critical, None, e),
            Err(_) => user_check(
                login,
                "rtt",
                Status::Critical,
                None,
                "no message back within 5 s",
            ),
        },
    );

    if kv == Kv::Check {
        checks.push(check_kv(login, &client).await);
    }
    drop(client);
    checks
}

/// Put, get and delete a key in a short-lived KV bucket, when the user's permissions allow.
async fn check_kv(login: &Login, client: &async_nats::Client) -> Check {
    if !jetstream_permitted(login.permissions.as_ref()) {
        return user_check(
            login,
            "jetstream_kv",
            Status::Ok,
            None,
            "skipped: the user's permissions do not allow the JetStream API",
        );
    }
    let started = Instant::now();
    match timeout(STEP_TIMEOUT * 2, kv_round_trip(client)).await {
        Ok(Ok(bucket)) => user_check(
            login,
            "jetstream_kv",
            Status::Ok,
            Some(started.elapsed().as_secs_f64()),
            format!("put, get and delete in a temporary bucket {bucket}"),
        ),
        Ok(Err(e)) => user_check(login, "jetstream_kv", Status::Critical, None, e),
        Err(_) => user_check(
            login,
            "jetstream_kv",
            Status::Critical,
            None,
            "JetStream did not answer within 10 s",
        ),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

/// Puts `value` at `key`. In a cluster a new stream's interest reaches the other servers a
/// moment after its creation is acknowledged; a put through one of them meanwhile finds "no
/// stream found", and is tried again (up to 2 s). One server answers the first time.
pub(crate) async fn put_when_visible(
    kv: &async_nats::jetstream::kv::Store,
    key: &str,
    value: Vec<u8>,
) -> Result<(), String> {
    let mut tries = 0;
    loop {
        match kv.put(key, value.clone().into()).await {
            Ok(_) => return Ok(()),
            Err(e) if tries < 20 && crate::jetstream::no_stream_yet(&e) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(format!("KV put failed: {e}")),
        }
    }
}

/// Creates a short-lived KV bucket, puts, gets and deletes a key, and removes the bucket.
async fn kv_round_trip(client: &async_nats::Client) -> Result<String, String> {
    let mut js = async_nats::jetstream::new(client.clone());
    // async-nats gives each JetStream request 5 s; a server that has just started on a busy
    // machine can take longer to create its first streams. The check's own bound (10 s)
    // decides instead.
    js.set_timeout(STEP_TIMEOUT * 2);
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).expect("the OS random number generator failed");
    let bucket = format!("natsup_verify_{}", hex::encode(suffix));
    let kv = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: bucket.clone(),
            history: 1,
            // If this run dies before cleaning up, the bucket's data expires on its own.
            max_age: Duration::from_secs(60),
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot create KV bucket: {e}"))?;
    let result = async {
        let value = bucket.as_bytes().to_vec();
        put_when_visible(&kv, "check", value.clone()).await?;
        let got = kv
            .get("check")
            .await
            .map_err(|e| format!("KV get failed: {e}"))?;
        if got.as_deref() != Some(&value[..]) {
            return Err("KV get returned something other than what was put".to_string());
        }
        kv.delete("check")
            .await
            .map_err(|e| format!("KV delete failed: {e}"))?;
        Ok(())
    }
    .await;
    // Just after a cluster formed, a server may not know a bucket made through another one
    // yet and answers "stream not found"; asked again, it does.
    let mut cleanup = js.delete_key_value(&bucket).await;
    for _ in 0..10 {
        match &cleanup {
            Err(e)
                if crate::jetstream::error_code(e) == Some(crate::jetstream::STREAM_NOT_FOUND) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
                cleanup = js.delete_key_value(&bucket).await;
            }
            _ => break,
        }
    }
    result?;
    cleanup.map_err(|e| format!("cannot delete KV bucket {bucket}: {e}"))?;
    Ok(bucket)
}

/// Whether the user's permissions let it use the JetStream API and receive replies.
pub fn jetstream_permitted(perms: Option<&Permissions>) -> bool {
    let Some(p) = perms else { return true };
    let publish_ok = p
        .publish
        .as_ref()
        .is_none_or(|r| r.permits("$JS.API.STREAM.CREATE.KV_natsup"));
    let subscribe_ok = p
        .subscribe
        .as_ref()
        .is_none_or(|r| r.permits("_INBOX.natsup"));
    publish_ok && subscribe_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_subjects_respect_permissions() {
        use crate::config::SubjectRule;
        let rule = |allow: &[&str], deny: &[&str]| SubjectRule {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        };
        let inbox = "_INBOX.abc";
        assert_eq!(echo_subject(None, inbox).as_deref(), Some(inbox));
        let only_analytics = Permissions {
            publish: Some(rule(&["analytics.>"], &[])),
            subscribe: None,
        };
        assert_eq!(
            echo_subject(Some(&only_analytics), inbox).as_deref(),
            Some("analytics.natsup_verify.abc")
        );
        let cannot_echo = Permissions {
            publish: Some(rule(&["a.*"], &[])),
            subscribe: Some(rule(&["b.>"], &[])),
        };
        assert_eq!(echo_subject(Some(&cannot_echo), inbox), None);
        let denied_inbox = Permissions {
            publish: None,
            subscribe: Some(rule(&[], &["_INBOX.>"])),
        };
        assert_eq!(echo_subject(Some(&denied_inbox), inbox), None);
    }
}
