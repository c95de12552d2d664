//! The executor: the one place that runs steps against a [`Remote`]. It inspects the server,
//! lets `plan` decide, and applies the plan in a single upload. Everything it sends is built
//! by the pure modules (`render`, `remote::script`).
//!
//! Round trips: one `observe`, plus one `apply` when something changed. A fresh bootstrap is
//! two remote commands, a run with nothing to do is one. When the server's log cannot confirm
//! the change, natsup proves it over TLS and NATS ([`HealthProbe`]) and one more command
//! records it or rolls it back.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::nats_client::{self, Endpoint, Login};
use crate::observed::{DOCKER_STUCK_HINT, Observed, UnsafePath, base64_decode};
use crate::pki;
use crate::plan::{self, Plan};
use crate::remote::script::{ApplyOutcome, Bounds, Verdict};
use crate::remote::{INSPECT_BOUND, Remote, Via, script};
use crate::render::{self, Bundle, TlsNames, sha256_hex};
use crate::state::State;
use crate::tls_probe;

/// How long the server gets to become ready or confirm a reload.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One node of a deployment, as the executor sees it: where its files live, the port it
/// publishes, the image that validates and runs them, and the bundle it must end up serving.
/// The executor and the planner work on one server at a time and never read the deployment's
/// config.
#[derive(Debug)]
pub struct Server {
    /// The deployment's name: the first part of the node's Compose project name.
    pub deployment: String,
    pub remote_dir: String,
    pub port: u16,
    /// A cluster node's route port (`cluster.port`), which pre-flight checks like `port`.
    pub route_port: Option<u16>,
    /// A cluster node shares the machine's ports with whatever else listens there (other
    /// nodes on other addresses among them): only a listener on this address, or on every
    /// address, takes its ports. `None`: any listener on the port does, as for one server.
    pub bind: Option<std::net::IpAddr>,
    pub image: String,
    pub bundle: Bundle,
    /// How natsup itself tells that the node serves its bundle, when the server's log cannot.
    pub probe: Option<HealthProbe>,
    /// How long the server, put in lame duck before it is recreated, may take to leave by
    /// itself ([`lame_duck_wait`]).
    pub lame_duck_wait: Duration,
}

impl Server {
    /// Node `i` of the deployment.
    pub fn of(config: &Config, i: usize, state: &State) -> Server {
        let node = &config.nodes()[i];
        Server {
            deployment: config.name.clone(),
            remote_dir: node.remote_dir.clone(),
            port: node.port,
            route_port: config.is_cluster().then_some(config.cluster.port),
            bind: config.is_cluster().then_some(node.bind),
            image: node.image.clone(),
            bundle: server_bundle(config, i, state),
            probe: nats_client::deployment_logins(config, i, state, None)
                .ok()
                .map(|(target, logins)| HealthProbe {
                    target,
                    logins,
                    serial: state.certs[i].info.serial.clone(),
                }),
            lame_duck_wait: lame_duck_wait(config),
        }
    }
}

/// How long a server in lame duck is left to leave by itself before natsup ends it. In a
/// cluster, the whole window: it hands its JetStream leaders away (about a second), and its
/// clients, told to go, move to the other nodes or are closed one by one, at most one a second
/// (nats-server's `lameDuckMode`), so a node with few clients is gone long before the window
/// ends; with none it exits at once. Alone, its clients have nowhere to go: the grace period
/// lets them hear the notice and finish what they are doing, and then waiting longer only
/// keeps the ones closed last away from the new server for longer.
pub fn lame_duck_wait(config: &Config) -> Duration {
    let ldm = &config.lame_duck;
    let secs = if config.is_cluster() {
        ldm.duration_secs + 5
    } else {
        ldm.grace_secs + 2
    };
    Duration::from_secs(secs.into())
}

/// Proof, from natsup's side, that a server serves a bundle: it presents the bundle's
/// certificate and takes every user's password. It backs up the server's log, which a log
/// driver that cannot be read back (`logging: {driver: none}`) or a rotation can hide. It
/// cannot see a change of permissions alone.
#[derive(Debug)]
pub struct HealthProbe {
    pub target: Endpoint,
    pub logins: Vec<Login>,
    /// The serial of the bundle's certificate.
    pub serial: String,
}

impl HealthProbe {
    /// Asks until the server passes or `limit` is over (a reload takes effect a little
    /// after the signal, a start after the container runs); the last reason otherwise.
    pub async fn proven(&self, limit: Duration) -> std::result::Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            match self.check().await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    async fn check(&self) -> std::result::Result<(), String> {
        let probe = tls_probe::probe(
            &self.target.addr,
            &self.target.host,
            nats_client::STEP_TIMEOUT,
        )
        .await?;
        let leaf = probe
            .chain
            .first()
            .ok_or("the server presented no certificate")?;
        let served = pki::inspect_der(leaf).map_err(|e| e.to_string())?.serial;
        if served != self.serial {
            return Err(format!(
                "the server presents certificate {served}, not {}",
                self.serial
            ));
        }
        let logins = self
            .logins
            .iter()
            .map(|login| nats_client::connect(&self.target, login));
        for (login, result) in self
            .logins
            .iter()
            .zip(futures_util::future::join_all(logins).await)
        {
            result.map_err(|e| format!("{} cannot log in: {e}", login.user))?;
        }
        Ok(())
    }
}

pub async fn observe<R: Remote>(remote: &mut R, node: &Server) -> Result<Observed> {
    let script = script::observe(
        &node.deployment,
        &node.remote_dir,
        node.port,
        node.route_port,
        node.bind,
    );
    let out = remote
        .run_within("inspecting the server", &script, &[], INSPECT_BOUND)
        .await?;
    Observed::parse(&out.stdout, &remote.describe()).map_err(|e| match e {
        Error::Remote {
            target,
            step,
            message,
            hint,
        } => Error::Remote {
            target,
            step,
            message: format!("{message}: {}", out.stderr.trim()),
            hint,
        },
        other => other,
    })
}

/// Stops with the first pre-flight problem, if any.
pub fn check_preflight(observed: &Observed, target: &str) -> Result<()> {
    match plan::preflight(observed).into_iter().next() {
        None => Ok(()),
        Some((message, hint)) => Err(Error::Remote {
            target: target.into(),
            step: "pre-flight check".into(),
            message,
            hint: Some(hint),
        }),
    }
}

/// The bundle as one tar stream, and its `sha256sum` manifest for the remote side to check.
pub fn tar_bundle(bundle: &Bundle) -> (Vec<u8>, String) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut manifest = String::new();
    for file in &bundle.files {
        let mut header = tar::Header::new_gnu();
        header.set_size(file.contents.len() as u64);
        header.set_mode(file.mode);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, &file.path, file.contents.as_slice())
            .expect("writing a tar to memory cannot fail");
        manifest.push_str(&format!("{}  {}\n", sha256_hex(&file.contents), file.path));
    }
    (builder.into_inner().expect("in-memory tar"), manifest)
}

/// Uploads the node's bundle and applies `plan` in one remote command.
pub async fn apply<R: Remote>(
    remote: &mut R,
    node: &Server,
    plan: &Plan,
    timeout: Duration,
) -> Result<()> {
    let (tar, manifest) = tar_bundle(&node.bundle);
    let bounds = Bounds::from_ready(timeout).with_lame_duck(node.lame_duck_wait);
    let script = script::apply(
        &node.deployment,
        &node.remote_dir,
        &node.image,
        plan.action,
        &manifest,
        &bounds,
    );
    // The script bounds each of its steps and names the one that ran out; this bound only
    // catches a connection or a server that stopped answering altogether.
    let bound = bounds.apply_total() + Duration::from_secs(60);
    let mut out = remote
        .run_within("applying the change", &script, &tar, bound)
        .await?;
    // Committed, but the log could not confirm it: natsup's own proof decides.
    let mut unproven = None;
    let result = |out: &crate::remote::Output| {
        let result = out
            .stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("natsup.result="));
        ApplyOutcome::parse(out.status, result)
    };
    let followed_up = result(&out) == ApplyOutcome::Unconfirmed;
    if followed_up {
        let proof = match &node.probe {
            Some(probe) => probe.proven(bounds.ready).await,
            None => Err("natsup cannot reach the server over NATS to check".to_string()),
        };
        let (verdict, step) = match &proof {
            Ok(()) => (Verdict::Confirm, "confirming the change"),
            Err(_) => (Verdict::Undo, "rolling back the change"),
        };
        tracing::info!("the server's log could not confirm the change; natsup's proof: {proof:?}");
        let script = script::follow_up(
            &node.deployment,
            &node.remote_dir,
            &node.image,
            plan.action,
            &manifest,
            &bounds,
            verdict,
        );
        out = remote.run_within(step, &script, &[], bound).await?;
        unproven = proof.err();
    }
    let get = |key: &str| {
        out.stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(&format!("natsup.{key}=")))
            .map(str::to_string)
    };
    let decoded = |key: &str| {
        get(key).map(|v| {
            String::from_utf8_lossy(&base64_decode(&v))
                .trim()
                .to_string()
        })
    };
    let target = remote.describe();
    let fail = |step: &str, message: String, hint: Option<String>| Error::Remote {
        target: target.clone(),
        step: step.into(),
        message,
        hint,
    };
    match result(&out) {
        ApplyOutcome::Applied => Ok(()),
        ApplyOutcome::Rejected => {
            let mut message = get("rejected").unwrap_or_else(|| "the change was rejected".into());
            if let Some(err) = decoded("nats_error") {
                message = format!("{message}:\n{err}");
            }
            // A refused follow-up finds the live files changed since this run committed them:
            // its change is live, only not recorded as applied.
            let mut hint = if followed_up {
                "the change is live but not recorded as applied; run `natsup up` to check it"
                    .to_string()
            } else {
                "nothing on the server was changed".to_string()
            };
            // The script's own words for why, where it has them: a Docker call that ran out
            // of its bound, or a deployment folder another user could change.
            if let Some(call) = get("timeout") {
                message = call;
                hint = DOCKER_STUCK_HINT.to_string();
            } else if let Some(path) = get("unsafe_dir").and_then(|v| UnsafePath::parse(&v)) {
                message = path.message();
                hint = format!("nothing on the server was changed; {}", path.hint());
            }
            Err(fail(
                &get("step").unwrap_or_else(|| "validating the new configuration".into()),
                message,
                Some(hint),
            ))
        }
        outcome @ (ApplyOutcome::RolledBack
        | ApplyOutcome::Stopped
        | ApplyOutcome::RollbackFailed) => {
            // natsup's own proof, when it decided, then what the rollback logged.
            let what = [unproven, decoded("failure")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("\n");
            let (message, hint) = match outcome {
                ApplyOutcome::RolledBack => (
                    format!(
                        "the server did not come back healthy, so natsup rolled back to the previous configuration, which is running again:\n{what}"
                    ),
                    "fix what the log above shows, then run `natsup up` again",
                ),
                ApplyOutcome::Stopped => (
                    format!("the server did not start:\n{what}"),
                    "fix what the log above shows, then run `natsup up` again",
                ),
                _ => (
                    format!(
                        "the server did not come back healthy, and neither did the previous configuration:\n{what}"
                    ),
                    "look at `docker logs` on the server; natsup's files are in the deployment directory",
                ),
            };
            Err(fail("starting the server", message, Some(hint.into())))
        }
        ApplyOutcome::Unconfirmed | ApplyOutcome::Failed(_) => Err(fail(
            "applying the change",
            get("error").unwrap_or_else(|| {
                format!(
                    "the remote script exited with {}: {}",
                    out.status,
                    out.stderr.trim()
                )
            }),
            Some("run the same command again: natsup picks up where it stopped".into()),
        )),
    }
}

/// The bundle as the server gets it: TLS files named after their certificate.
pub fn server_bundle(config: &Config, i: usize, state: &State) -> Bundle {
    render::bundle(
        config,
        i,
        state,
        &TlsNames::versioned(&state.certs[i].info.serial),
    )
}

/// Read-only: what the server has and what `up` would do about it (for `status`).
pub async fn inspect(via: &Via, node: &Server) -> Result<(Observed, Plan, String)> {
    let mut remote = via.connect().await?;
    let observed = observe(&mut remote, node).await;
    let target = remote.describe();
    remote.close().await;
    let observed = observed?;
    check_preflight(&observed, &target)?;
    let plan = plan::plan(&node.bundle, &observed);
    Ok((observed, plan, target))
}
