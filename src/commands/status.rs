//! `natsup status`: the container, the served certificate, and whether the server's files
//! match the local render. Read-only.

use serde::Serialize;
use time::OffsetDateTime;

use crate::cli::StatusArgs;
use crate::config::Config;
use crate::deploy;
use crate::error::Result;
use crate::pki;
use crate::plan::Action;
use crate::remote::Via;
use crate::session::{self, Context};
use crate::state::State;
use crate::system_account::{self, ServerFigures};
use crate::tls_probe;
use crate::verify::cluster::check_in_cluster;

#[derive(Debug, Serialize)]
pub struct ServerStatus {
    pub deployment: String,
    pub target: String,
    pub container: Option<ContainerStatus>,
    pub certificate: Option<CertStatus>,
    /// True when the server runs exactly what natsup would deploy now.
    pub in_sync: bool,
    /// What `natsup up` would do.
    pub pending_action: Action,
    pub files_differing: Vec<String>,
    /// `single`, or `rotating` between `rotate-ca --begin` and `--finish`.
    pub ca_phase: crate::state::CaPhase,
    pub users: Vec<UserStatus>,
    /// The server's own figures, read as the system user (connections, slow consumers, memory,
    /// JetStream streams and storage); None when they could not be read (`figures_error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub figures: Option<ServerFigures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub figures_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ContainerStatus {
    pub id: String,
    pub state: String,
    pub image: String,
    pub started_at: String,
    pub restarts: u32,
}

#[derive(Debug, Serialize)]
pub struct CertStatus {
    pub serial: String,
    /// Who issued it: natsup's CA, or an ACME CA's intermediate.
    pub issuer: String,
    pub not_after: String,
    pub days_left: i64,
    /// The served certificate is the one in local state.
    pub matches_local: bool,
}

#[derive(Debug, Serialize)]
pub struct UserStatus {
    pub user: String,
    /// RFC 3339, for scripts; the text output shows it to the second.
    #[serde(with = "time::serde::rfc3339")]
    pub password_rotated_at: time::OffsetDateTime,
    pub rotation_pending: bool,
    /// The bcrypt cost of the hash the server gets for this user (`auth.bcrypt_cost` once
    /// `up` has run since it was set).
    pub bcrypt_cost: Option<u32>,
    /// Every credential of the user the server should take, the current one first: after a
    /// rotation with a grace period, the old one too, until it expires.
    pub credentials: Vec<CredentialStatus>,
}

#[derive(Debug, Serialize)]
pub struct CredentialStatus {
    pub login: String,
    /// When the server stops taking it (`None`: the current one, until it is rotated).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<time::OffsetDateTime>,
    /// Its grace period has ended, and `up` has yet to drop it and prove it refused.
    pub retiring: bool,
}

/// The credential lines under a user's line, when it has more than its own name's.
fn print_credentials(u: &UserStatus) {
    if u.credentials.len() == 1 && u.credentials[0].login == u.user {
        return;
    }
    for c in &u.credentials {
        let when = match (c.expires_at, c.retiring) {
            (None, _) => "current".to_string(),
            (Some(t), false) => format!("valid until {} (grace period)", crate::ui::utc(t)),
            (Some(t), true) => format!(
                "grace period ended {}; `natsup up` retires it",
                crate::ui::utc(t)
            ),
        };
        println!("  login:     {:<30} {when}", c.login);
    }
}

/// The credentials of `user` for [`UserStatus::credentials`].
pub fn credentials(state: &crate::state::State, user: &str) -> Vec<CredentialStatus> {
    let mut out = vec![CredentialStatus {
        login: state.secrets.login(user).to_string(),
        expires_at: None,
        retiring: false,
    }];
    let now = time::OffsetDateTime::now_utc();
    if let Some(s) = state.secrets.users.get(user) {
        out.extend(s.graced.iter().map(|g| CredentialStatus {
            login: g.login.clone(),
            expires_at: Some(g.until),
            // Past its end, the server still takes it until the next change's reload.
            retiring: g.retiring || g.until <= now,
        }));
    }
    out
}

/// Every node's status, gathered at once. One server's is shown as it always was; a
/// cluster's as one row per node, then the cluster's health. A node that cannot be reached is
/// a row that says so; the others are still shown.
pub fn run(ctx: &Context, args: StatusArgs) -> Result<i32> {
    let (config, members) = session::deployment(ctx, &args.target.target())?;
    let state = State::load(&config, &ctx.state_dir(&config))?;
    let now = OffsetDateTime::now_utc();
    let (config, state) = (&config, &state);
    let mut rows = crate::runtime().block_on(futures_util::future::join_all(members.iter().map(
        |m| async move {
            let status = server_status(config, m.index, state, &m.via, now).await;
            let routes = if config.is_cluster() {
                check_in_cluster(config, state, m.index).await
            } else {
                Ok(())
            };
            (m.name.clone(), status, routes)
        },
    )));
    if !config.is_cluster() {
        let (_, status, _) = rows.pop().expect("one node");
        let status = status?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&status).expect("status serializes")
            );
        } else {
            print_status(&status);
        }
        return Ok(if status.healthy() { 0 } else { 1 });
    }
    let rows: Vec<NodeStatus> = rows
        .into_iter()
        .map(|(node, status, routes)| match status {
            Ok(status) => NodeStatus {
                node,
                status: Some(status),
                in_cluster: routes.is_ok(),
                error: routes.err(),
            },
            Err(e) => NodeStatus {
                node,
                status: None,
                in_cluster: false,
                error: Some(e.to_string()),
            },
        })
        .collect();
    let healthy = rows
        .iter()
        .all(|r| r.in_cluster && r.status.as_ref().is_some_and(ServerStatus::healthy));
    let route = state.secrets.route.as_ref().map(|r| RouteStatus {
        password_rotated_at: r.rotated_at,
        rotation: state.secrets.route_rotation.as_ref().map(|x| x.phase),
        rotation_reason: state
            .secrets
            .route_rotation
            .as_ref()
            .map(|x| x.reason.clone()),
    });
    let status = ClusterStatus {
        deployment: config.name.clone(),
        nodes: rows,
        healthy,
        route,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serializes")
        );
    } else {
        print_cluster(&status);
    }
    Ok(if healthy { 0 } else { 1 })
}

impl ServerStatus {
    /// Its container runs exactly what natsup would deploy now.
    fn healthy(&self) -> bool {
        self.in_sync
            && self
                .container
                .as_ref()
                .is_some_and(|c| c.state == "running")
    }
}

fn print_status(s: &ServerStatus) {
    println!("deployment:  {} ({})", s.deployment, s.target);
    match &s.container {
        Some(c) => println!(
            "container:   {} {}, image {}, started {}{}",
            c.id,
            c.state,
            c.image,
            c.started_at,
            if c.restarts > 0 {
                format!(", {} restarts", c.restarts)
            } else {
                String::new()
            }
        ),
        None => println!("container:   none (run `natsup up`)"),
    }
    match &s.certificate {
        Some(c) => println!(
            "certificate: serial {}, issuer {}, expires {} ({} days left){}",
            c.serial,
            c.issuer,
            c.not_after,
            c.days_left,
            if c.matches_local {
                ""
            } else {
                ", NOT the one in local state"
            }
        ),
        None => println!("certificate: not served (the server is unreachable from here)"),
    }
    if s.in_sync {
        println!("files:       in sync with the local render");
    } else {
        println!(
            "files:       out of sync, `natsup up` would {}: {}",
            s.pending_action.name(),
            if s.files_differing.is_empty() {
                "(container state)".to_string()
            } else {
                s.files_differing.join(", ")
            }
        );
    }
    match s.ca_phase {
        crate::state::CaPhase::Single => println!("ca:          one CA"),
        crate::state::CaPhase::Rotating => println!(
            "ca:          rotating: clients get old + new CA; finish with `natsup rotate-ca --finish`"
        ),
    }
    println!("server:      {}", figures_line(s));
    for u in &s.users {
        println!(
            "user:        {:<20} password rotated {}, bcrypt cost {}{}",
            u.user,
            u.password_rotated_at
                .format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
                ))
                .unwrap_or_default(),
            u.bcrypt_cost.map_or("?".to_string(), |c| c.to_string()),
            if u.rotation_pending {
                " (rotation pending)"
            } else {
                ""
            }
        );
        print_credentials(u);
    }
}

/// Node `i`'s status: inspected over `via`, its certificate read by a TLS client.
async fn server_status(
    config: &Config,
    i: usize,
    state: &State,
    via: &Via,
    now: OffsetDateTime,
) -> Result<ServerStatus> {
    let node = &config.nodes()[i];
    let (observed, plan, target) =
        deploy::inspect(via, &deploy::Server::of(config, i, state)).await?;
    let certificate =
        match tls_probe::probe(&node.addr(), &node.host, std::time::Duration::from_secs(5)).await {
            Ok(p) => p
                .chain
                .first()
                .and_then(|der| pki::inspect_der(der).ok())
                .map(|info| CertStatus {
                    matches_local: info.serial == state.certs[i].info.serial,
                    issuer: info.issuer.clone(),
                    days_left: info.days_left(now),
                    not_after: info.not_after.date().to_string(),
                    serial: info.serial,
                }),
            Err(_) => None,
        };
    // A server that is not running has no figures to give; one that runs an older config has
    // no system user yet (the next `up` gives it one): either is said, not an error.
    let (figures, figures_error) = if observed.container.as_ref().is_some_and(|c| c.running()) {
        match system_account::node_figures(config, state, i).await {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, Some("the server is not running".to_string()))
    };
    let status = ServerStatus {
        figures,
        figures_error,
        deployment: config.name.clone(),
        target: format!(
            "{target}:{}",
            observed.dir_abs.clone().unwrap_or(node.remote_dir.clone())
        ),
        container: observed.container.as_ref().map(|c| ContainerStatus {
            id: c.id.chars().take(12).collect(),
            state: c.status.clone(),
            image: c.image.clone(),
            started_at: c.started_at.clone(),
            restarts: c.restarts,
        }),
        certificate,
        in_sync: plan.action == Action::Nothing,
        pending_action: plan.action,
        files_differing: plan.files.iter().map(|f| f.path.clone()).collect(),
        ca_phase: state.ca_phase(),
        users: config
            .users
            .iter()
            .filter_map(|u| state.secrets.users.get(&u.name).map(|s| (u, s)))
            .map(|(u, s)| UserStatus {
                user: u.name.clone(),
                password_rotated_at: s.rotated_at,
                rotation_pending: s.pending.is_some(),
                bcrypt_cost: crate::passwords::cost_of(state.secrets.served_hash(&u.name)),
                credentials: credentials(state, &u.name),
            })
            .collect(),
    };
    Ok(status)
}

/// One node of a cluster: its server's status and whether it routes to every peer, or why
/// it could not be inspected.
#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub node: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub status: Option<ServerStatus>,
    /// Its clients are told about every other node, and JetStream answers through it.
    pub in_cluster: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub deployment: String,
    pub nodes: Vec<NodeStatus>,
    /// Every node runs, is in sync and is in the cluster.
    pub healthy: bool,
    /// The route credential the nodes log in to each other with.
    pub route: Option<RouteStatus>,
}

#[derive(Debug, Serialize)]
pub struct RouteStatus {
    #[serde(with = "time::serde::rfc3339")]
    pub password_rotated_at: time::OffsetDateTime,
    /// `due`, `dialing` (pass 1 of 2) or `accepting` (pass 2 of 2), while a rotation is due
    /// or under way; `up` or `rotate-passwords --route` finishes it.
    pub rotation: Option<crate::state::RoutePhase>,
    pub rotation_reason: Option<String>,
}

fn print_cluster(c: &ClusterStatus) {
    println!(
        "deployment:  {} (a cluster of {} nodes)",
        c.deployment,
        c.nodes.len()
    );
    println!(
        "{:<10} {:<10} {:<34} {:<30} {:<8} {:<10} TARGET",
        "NODE", "CONTAINER", "CERTIFICATE", "ISSUER", "IN SYNC", "CLUSTER"
    );
    for n in &c.nodes {
        let Some(s) = &n.status else {
            println!(
                "{:<10} unreachable: {}",
                n.node,
                n.error.as_deref().unwrap_or("")
            );
            continue;
        };
        let container = s
            .container
            .as_ref()
            .map_or("none".to_string(), |c| c.state.clone());
        let cert = s
            .certificate
            .as_ref()
            .map_or("not served".to_string(), |c| {
                format!(
                    "{} {}d{}",
                    &c.serial[..c.serial.len().min(16)],
                    c.days_left,
                    if c.matches_local { "" } else { " NOT LOCAL" }
                )
            });
        let issuer = s
            .certificate
            .as_ref()
            .map_or("-".to_string(), |c| c.issuer.clone());
        let in_sync = if s.in_sync {
            "yes".to_string()
        } else {
            s.pending_action.name().to_string()
        };
        let routes = if n.in_cluster {
            "routes up".to_string()
        } else {
            format!("NO: {}", n.error.as_deref().unwrap_or(""))
        };
        println!(
            "{:<10} {:<10} {:<34} {:<30} {:<8} {:<10} {}",
            n.node, container, cert, issuer, in_sync, routes, s.target
        );
    }
    println!(
        "{:<10} {:<9} {:>11} {:>14} {:>10} {:>8} {:>12} META LEADER",
        "NODE", "VERSION", "CONNECTIONS", "SLOW CONSUMERS", "MEMORY", "STREAMS", "JS STORAGE"
    );
    for n in &c.nodes {
        match n.status.as_ref().and_then(|s| s.figures.as_ref()) {
            Some(f) => println!(
                "{:<10} {:<9} {:>11} {:>14} {:>10} {:>8} {:>12} {}",
                n.node,
                f.version,
                f.connections,
                f.slow_consumers,
                bytes(f.memory_bytes),
                f.streams,
                bytes(f.storage_bytes),
                f.meta
                    .as_ref()
                    .and_then(|m| m.leader.as_deref())
                    .unwrap_or("none"),
            ),
            None => println!(
                "{:<10} figures not read: {}",
                n.node,
                n.status
                    .as_ref()
                    .and_then(|s| s.figures_error.as_deref())
                    .unwrap_or("unreachable")
            ),
        }
    }
    if c.healthy {
        println!("cluster:     healthy: every node runs, is in sync and routes to every other");
    } else {
        println!("cluster:     NOT healthy: see the rows above; `natsup up` repairs what it can");
    }
    if let Some(r) = &c.route {
        println!(
            "route:       {:<20} password rotated {}{}",
            crate::state::ROUTE_USER,
            r.password_rotated_at
                .format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
                ))
                .unwrap_or_default(),
            match (&r.rotation, &r.rotation_reason) {
                (Some(phase), Some(why)) => format!(
                    " (rotation {}: {why}; `natsup up` finishes it)",
                    match phase {
                        crate::state::RoutePhase::Due => "due",
                        crate::state::RoutePhase::Dialing => "under way, pass 1 of 2",
                        crate::state::RoutePhase::Accepting => "under way, pass 2 of 2",
                    }
                ),
                _ => String::new(),
            }
        );
    }
    if let Some(s) = c.nodes.iter().find_map(|n| n.status.as_ref()) {
        for u in &s.users {
            println!(
                "user:        {:<20} password rotated {}{}",
                u.user,
                u.password_rotated_at
                    .format(time::macros::format_description!(
                        "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
                    ))
                    .unwrap_or_default(),
                if u.rotation_pending {
                    " (rotation pending)"
                } else {
                    ""
                }
            );
            print_credentials(u);
        }
    }
}

/// One server's figures on one line, or why there are none.
fn figures_line(s: &ServerStatus) -> String {
    match (&s.figures, &s.figures_error) {
        (Some(f), _) => format!(
            "nats-server {}, {} connections, {} slow consumers, {} memory; JetStream: {} streams, \
             {} stored ({} in memory)",
            f.version,
            f.connections,
            f.slow_consumers,
            bytes(f.memory_bytes),
            f.streams,
            bytes(f.storage_bytes),
            bytes(f.memory_store_bytes),
        ),
        (None, Some(e)) => format!("figures not read: {e}"),
        (None, None) => "figures not read".to_string(),
    }
}

/// Bytes in binary units, one decimal.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
