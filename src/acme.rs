//! Where natsup talks to an ACME CA (Let's Encrypt, or pebble in tests), with djc's
//! `instant-acme`: the account, the order for the config's public names, the http-01
//! challenge, and finalizing with a key natsup made ([`pki::acme_csr`]).
//!
//! The challenge's side on the server (a token served on `acme.http01.port`) is a script
//! ([`script::acme`]) run over the deployment's [`Remote`]: a preflight before the CA is asked
//! anything, publish for the order's duration, then remove, whatever happened. Nothing here
//! changes the NATS server: the caller stores what [`obtain`] returns in `state` and deploys
//! it like any other certificate, so an ACME failure leaves the server as it was.

use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, Problem, RetryPolicy,
};

use crate::config::{Acme, Config, Http01Mode, Node};
use crate::error::{Error, Result};
use crate::pki;
use crate::remote::Remote;
use crate::remote::script::{self, AcmeStep, Bounds, Responder};
use crate::secret::Secret;
use crate::state::StateDir;
use crate::ui;

/// How long the CA gets to validate the challenges, and then to issue. Let's Encrypt takes
/// seconds; the bound only stops a run from hanging on a CA that never answers.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);
const ISSUE_TIMEOUT: Duration = Duration::from_secs(60);
/// One request to the ACME directory (connect included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the ACME CA issued: the chain (leaf first) and the key natsup made for it.
#[derive(Debug)]
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: Secret,
}

/// How the token is served on `node` for this deployment, each Docker call bounded from
/// `ready` (`up --timeout`) as the deployment's own are.
pub fn responder(config: &Config, node: &Node, acme: &Acme, ready: Duration) -> Responder {
    let bounds = Bounds::from_ready(ready);
    let names = config.public_names(node).0.len() as u32;
    Responder {
        // Once it serves, the order needs the responder for at most: a readiness answer per
        // name, the CA's validation, and a look at each authorization; twice that, so that
        // only a responder nobody removed ever meets it.
        lifetime: (bounds.ready + VALIDATION_TIMEOUT + REQUEST_TIMEOUT * (2 * names + 2)) * 2,
        bounds,
        mode: acme.http01.mode,
        remote_dir: node.remote_dir.clone(),
        port: acme.http01.port,
        image: acme.http01.image.clone(),
        webroot: acme.http01.webroot.clone().unwrap_or_default(),
        // One server's responder keeps the name it always had; a cluster's nodes may share a
        // Docker engine, so each node's is its own.
        name: if config.is_cluster() {
            format!("natsup-acme-{}-{}", config.name, node.name)
        } else {
            format!("natsup-acme-{}", config.name)
        },
    }
}

/// Orders a certificate for `node`'s public names and returns it. The node's side of the
/// challenge is checked first (before the CA is asked anything) and removed at the end.
pub async fn obtain<R: Remote>(
    remote: &mut R,
    config: &Config,
    node: &Node,
    dir: &StateDir,
    ready: Duration,
) -> Result<Issued> {
    let acme = config
        .acme()
        .expect("obtain is only called with tls.issuer: acme");
    let (names, left_out) = config.public_names(node);
    if !left_out.is_empty() {
        ui::note(format!(
            "the ACME order leaves out {}: a public CA issues only for public DNS names",
            left_out.join(", ")
        ));
    }
    let responder = responder(config, node, &acme, ready);
    run_step(remote, AcmeStep::Preflight, &responder, &[], b"").await?;

    let step = ui::Step::start(format!(
        "ordering a certificate for {} from {}",
        names.join(", "),
        acme.directory_url()
    ));
    let account = account(dir, &acme).await?;
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = request(account.new_order(&NewOrder::new(&identifiers)), &acme).await?;

    // The tokens of every authorization still pending (one per name).
    let mut tokens: Vec<(String, String)> = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| acme_error(e, &acme))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => {
                return Err(Error::failed(
                    format!(
                        "the ACME CA's authorization for {} is {status:?}",
                        authz.identifier()
                    ),
                    Some("run again: natsup starts a new order".to_string()),
                ));
            }
        }
        let name = authz.identifier().to_string();
        let challenge = authz.challenge(ChallengeType::Http01).ok_or_else(|| {
            Error::failed(
                "the ACME CA offers no http-01 challenge for this order",
                Some("natsup supports only http-01".to_string()),
            )
        })?;
        // The token becomes a file name on the server: checked here, before anything of this
        // order reaches the server.
        let token = check_token(&challenge.token, &name, &acme)?;
        tokens.push((token, challenge.key_authorization().as_str().to_string()));
    }

    if tokens.is_empty() {
        // Every authorization is still valid from an earlier order (Let's Encrypt keeps one up
        // to 30 days, pebble with PEBBLE_AUTHZREUSE): there is no token to serve, so no
        // responder is started, and the order is ready to finalize.
        ui::note("the ACME CA still holds a valid authorization for every name: no token to serve");
        validate(&mut order, &acme, &responder).await?;
    } else {
        let token_names: Vec<String> = tokens.iter().map(|(t, _)| t.clone()).collect();
        let stdin: String = tokens.iter().map(|(t, k)| format!("{t} {k}\n")).collect();
        // Whatever happens once publishing started, what it made is removed.
        let validated = async {
            run_step(remote, AcmeStep::Publish, &responder, &[], stdin.as_bytes()).await?;
            validate(&mut order, &acme, &responder).await
        }
        .await;
        let removed = run_step(remote, AcmeStep::Remove, &responder, &token_names, b"").await;
        validated?;
        removed?;
    }
    // A run stopped here has a validated order it never finalized: the next one starts a new
    // order, whose authorizations the CA may reuse (the test of that stops here).
    crate::failpoint::hit("acme:validated");

    let (csr, key_pem) = pki::acme_csr(&names)?;
    request(order.finalize_csr(&csr), &acme).await?;
    let chain_pem = request(
        order.poll_certificate(&RetryPolicy::new().timeout(ISSUE_TIMEOUT)),
        &acme,
    )
    .await?;
    step.done("issued");
    Ok(Issued { chain_pem, key_pem })
}

/// Tells the CA the tokens are served and waits for its verdict. A failed validation is
/// reported with the CA's own `detail` (what it saw when it connected).
async fn validate(
    order: &mut instant_acme::Order,
    acme: &Acme,
    responder: &Responder,
) -> Result<()> {
    // Which name failed, and what the CA saw: a CA that validates at once answers here.
    let mut failures = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| acme_error(e, acme))?;
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
        let name = authz.identifier().to_string();
        if let Some(mut challenge) = authz.challenge(ChallengeType::Http01) {
            match tokio::time::timeout(REQUEST_TIMEOUT, challenge.set_ready()).await {
                Ok(Ok(())) => {}
                Ok(Err(instant_acme::Error::Api(problem))) => {
                    failures.push(format!("{name}: {}", problem_detail(&problem)))
                }
                Ok(Err(e)) => return Err(acme_error(e, acme)),
                Err(_) => return Err(unreachable_directory("no answer", acme)),
            }
        }
    }
    if failures.is_empty() {
        match order
            .poll_ready(&RetryPolicy::new().timeout(VALIDATION_TIMEOUT))
            .await
        {
            Ok(OrderStatus::Ready) => return Ok(()),
            Ok(_) => {}
            // The order's own error: the CA's detail names the name and what it saw.
            Err(instant_acme::Error::Api(problem)) => failures.push(problem_detail(&problem)),
            Err(e) => return Err(acme_error(e, acme)),
        }
    }
    if failures.is_empty() {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| acme_error(e, acme))?;
            let state = request(authz.refresh(), acme).await?;
            if state.status == AuthorizationStatus::Valid {
                continue;
            }
            let name = state.identifier().to_string();
            let detail = state
                .challenges
                .iter()
                .find_map(|c| c.error.as_ref())
                .map(problem_detail)
                .unwrap_or_else(|| format!("the authorization is {:?}", state.status));
            failures.push(format!("{name}: {detail}"));
        }
    }
    let where_ = match responder.mode {
        Http01Mode::Standalone => format!(
            "natsup served it on port {} of the server for the order's duration",
            responder.port
        ),
        Http01Mode::Webroot => format!(
            "natsup wrote it into {}/.well-known/acme-challenge/",
            responder.webroot
        ),
    };
    Err(Error::failed(
        format!(
            "the ACME CA could not validate the http-01 challenge ({where_}): {}",
            failures.join("; ")
        ),
        Some(format!(
            "check that each name resolves to this server and that port {} reaches it from the internet; the server was not changed",
            responder.port
        )),
    ))
}

/// The account for `acme.directory`: made once, its credentials (with its key) kept 0600 in
/// the state directory, and reused for every later order.
async fn account(dir: &StateDir, acme: &Acme) -> Result<Account> {
    let url = acme.directory_url();
    let builder = match &acme.directory_ca {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    }
    .map_err(|e| unreachable_directory(&e.to_string(), acme))?;
    if let Some(json) = dir.read_acme_account(url)? {
        let credentials: AccountCredentials = serde_json::from_str(json.expose())
            .map_err(|e| Error::corrupt(dir.acme_account(url), e.to_string()))?;
        return request(builder.from_credentials(credentials), acme).await;
    }
    let contact = acme.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = request(
        builder.create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            url.to_string(),
            None,
        ),
        acme,
    )
    .await?;
    let json = serde_json::to_string(&credentials).expect("credentials serialize");
    dir.write_acme_account(url, &Secret::new(json))?;
    ui::note(format!("created an ACME account at {url}"));
    Ok(account)
}

/// `token` if it is what RFC 8555 (section 8.3) allows for an http-01 token: base64url
/// characters only, `[A-Za-z0-9_-]`, and not empty. natsup writes it as a file name under the
/// web root (`.well-known/acme-challenge/<token>`), so anything else (a `/`, `..`, a glob
/// character) from a hostile or broken CA would name a file elsewhere; it is refused before
/// the server is touched.
pub fn check_token(token: &str, name: &str, acme: &Acme) -> Result<String> {
    let base64url = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !token.is_empty() && token.chars().all(base64url) {
        return Ok(token.to_string());
    }
    Err(Error::failed(
        format!(
            "the ACME CA {} sent an http-01 token for {name} that is not base64url ({:?}): RFC 8555 allows only A-Z, a-z, 0-9, `_` and `-`, and natsup writes the token as a file name",
            acme.directory_url(),
            token.chars().take(64).collect::<String>()
        ),
        Some(
            "check acme.directory: it does not behave as an ACME CA must; nothing was written on the server".to_string(),
        ),
    ))
}

/// One exchange with the CA, bounded in time, its error put into words.
async fn request<T>(
    call: impl Future<Output = std::result::Result<T, instant_acme::Error>>,
    acme: &Acme,
) -> Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| acme_error(e, acme)),
        Err(_) => Err(unreachable_directory(
            &format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()),
            acme,
        )),
    }
}

fn problem_detail(problem: &Problem) -> String {
    let mut s = problem
        .detail
        .clone()
        .unwrap_or_else(|| "no detail given".to_string());
    if let Some(kind) = &problem.r#type {
        s.push_str(&format!(
            " ({})",
            kind.trim_start_matches("urn:ietf:params:acme:error:")
        ));
    }
    s
}

fn acme_error(e: instant_acme::Error, acme: &Acme) -> Error {
    match e {
        instant_acme::Error::Api(problem) => {
            let rate_limited = problem
                .r#type
                .as_deref()
                .is_some_and(|t| t.ends_with(":rateLimited"));
            Error::failed(
                format!("the ACME CA refused: {}", problem_detail(&problem)),
                Some(if rate_limited {
                    "the CA limits how many certificates a name gets (Let's Encrypt: 5 identical ones a week); wait as it says, and test with `acme.directory: letsencrypt-staging`; the server was not changed".to_string()
                } else {
                    "the server was not changed".to_string()
                }),
            )
        }
        instant_acme::Error::Timeout(_) => Error::failed(
            "the ACME CA did not finish the order in time",
            Some("run again later; the server was not changed".to_string()),
        ),
        other => unreachable_directory(&crate::error::chain(&other), acme),
    }
}

fn unreachable_directory(why: &str, acme: &Acme) -> Error {
    Error::failed(
        format!(
            "cannot reach the ACME directory {}: {why}",
            acme.directory_url()
        ),
        Some(
            "check acme.directory (and acme.directory_ca for a test CA) and this machine's network; the server was not changed"
                .to_string(),
        ),
    )
}

/// Runs one responder step on the server; a refusal is a pre-flight error naming the host.
async fn run_step<R: Remote>(
    remote: &mut R,
    step: AcmeStep,
    responder: &Responder,
    tokens: &[String],
    stdin: &[u8],
) -> Result<()> {
    let what = match step {
        AcmeStep::Preflight => "checking the ACME http-01 responder",
        AcmeStep::Publish => "serving the ACME http-01 token",
        AcmeStep::Remove => "removing the ACME http-01 token",
    };
    // Publishing may pull the responder's image, and removing waits for a publish that could
    // still start it; each ends within the bounds of its own Docker calls. A pre-flight is a
    // few quick calls.
    let bound = match step {
        AcmeStep::Publish => responder.publish_total(),
        AcmeStep::Remove => responder.remove_total(),
        AcmeStep::Preflight => crate::remote::INSPECT_BOUND,
    };
    let out = remote
        .run_within(what, &script::acme(step, responder, tokens), stdin, bound)
        .await?;
    let get = |key: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("natsup.{key}=")))
            .map(str::to_string)
    };
    if out.status == 0 {
        return Ok(());
    }
    let (step_name, message, hint) = if let Some(owner) = get("port_taken") {
        (
            "pre-flight check",
            format!(
                "port {} is taken by {owner}, so natsup cannot serve the ACME http-01 token there",
                responder.port
            ),
            "stop it for the order, or let it serve the token: `acme.http01.mode: webroot` with its web root (acme.http01.webroot)".to_string(),
        )
    } else {
        (
            if step == AcmeStep::Preflight {
                "pre-flight check"
            } else {
                what
            },
            get("error").unwrap_or_else(|| {
                format!(
                    "the remote script exited with {}: {}",
                    out.status,
                    out.stderr.trim()
                )
            }),
            "the server's NATS configuration was not changed".to_string(),
        )
    };
    Err(Error::Remote {
        target: remote.describe(),
        step: step_name.into(),
        message,
        hint: Some(hint),
    })
}
