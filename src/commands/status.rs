//! `natsup status`: the container, the served certificate, and whether the server's files
//! match the local render. Read-only.

use serde::Serialize;
use time::OffsetDateTime;

use crate::cli::StatusArgs;
use crate::deploy;
use crate::error::Result;
use crate::pki;
use crate::plan::Action;
use crate::state::State;
use crate::tls_probe;

use crate::cluster;
use crate::config::Config;
use crate::remote::Via;
use crate::session::{self, Context};

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
}

pub fn run(ctx: &Context, args: StatusArgs) -> Result<i32> {
    if let Some(config) = session::cluster_config(ctx, &args.target)? {
        return run_cluster(ctx, &args, config);
    }
    let (config, via) = session::server(ctx, &args.target)?;
    let state = State::load(&config, &ctx.state_dir(&config))?;
    let now = OffsetDateTime::now_utc();

    crate::runtime().block_on(async {
        let status = server_status(&config, &state, &via, now).await?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&status).expect("status serializes")
            );
        } else {
            print_status(&status);
        }
        Ok(
            if status.in_sync
                && status
                    .container
                    .as_ref()
                    .is_some_and(|c| c.state == "running")
            {
                0
            } else {
                1
            },
        )
    })
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
            "certificate: serial {}, expires {} ({} days left){}",
            c.serial,
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
    }
}

/// One server's status: inspected over `via`, its certificate read by a TLS client.
async fn server_status(
    config: &Config,
    state: &State,
    via: &Via,
    now: OffsetDateTime,
) -> Result<ServerStatus> {
    let (observed, plan, target) = deploy::inspect(via, &deploy::Node::of(config, state)).await?;

    let addr = crate::config::host_port(&config.host, config.port);
    let certificate =
        match tls_probe::probe(&addr, &config.host, std::time::Duration::from_secs(5)).await {
            Ok(p) => p
                .chain
                .first()
                .and_then(|der| pki::inspect_der(der).ok())
                .map(|info| CertStatus {
                    matches_local: info.serial == state.server_info.serial,
                    days_left: info.days_left(now),
                    not_after: info.not_after.date().to_string(),
                    serial: info.serial,
                }),
            Err(_) => None,
        };
    let status = ServerStatus {
        deployment: config.name.clone(),
        target: format!(
            "{target}:{}",
            observed
                .dir_abs
                .clone()
                .unwrap_or(config.remote_dir.clone())
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
}

/// `status` for a cluster: one row per node, then the cluster's health. A node that cannot be
/// reached is a row that says so; the others are still shown.
fn run_cluster(ctx: &Context, args: &StatusArgs, config: Config) -> Result<i32> {
    let mut nodes = Vec::new();
    for view in config.node_views() {
        let state = State::load(&view, &ctx.state_dir(&view))?;
        nodes.push((view, state));
    }
    let members = cluster::members(&nodes, args.target.accept_new_host_key);
    let now = OffsetDateTime::now_utc();
    let rows = crate::runtime().block_on(futures_util::future::join_all(members.iter().map(
        |m| async {
            let status = server_status(&m.view, &m.state, &m.via, now).await;
            let routes = cluster::check_in_cluster(m, &members).await;
            match status {
                Ok(status) => NodeStatus {
                    node: m.name.clone(),
                    status: Some(status),
                    in_cluster: routes.is_ok(),
                    error: routes.err(),
                },
                Err(e) => NodeStatus {
                    node: m.name.clone(),
                    status: None,
                    in_cluster: false,
                    error: Some(e.to_string()),
                },
            }
        },
    )));
    let healthy = rows.iter().all(|r| {
        r.in_cluster
            && r.status.as_ref().is_some_and(|s| {
                s.in_sync && s.container.as_ref().is_some_and(|c| c.state == "running")
            })
    });
    let status = ClusterStatus {
        deployment: config.name.clone(),
        nodes: rows,
        healthy,
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

fn print_cluster(c: &ClusterStatus) {
    println!(
        "deployment:  {} (a cluster of {} nodes)",
        c.deployment,
        c.nodes.len()
    );
    println!(
        "{:<10} {:<10} {:<34} {:<8} {:<10} TARGET",
        "NODE", "CONTAINER", "CERTIFICATE", "IN SYNC", "CLUSTER"
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
            "{:<10} {:<10} {:<34} {:<8} {:<10} {}",
            n.node, container, cert, in_sync, routes, s.target
        );
    }
    if c.healthy {
        println!("cluster:     healthy: every node runs, is in sync and routes to every other");
    } else {
        println!("cluster:     NOT healthy: see the rows above; `natsup up` repairs what it can");
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
        }
    }
}
