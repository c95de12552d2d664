//! What natsup asks a server as its system account's user (`natsup_sys`, in nats-server's
//! default system account `$SYS`): each server's own figures (`$SYS.REQ.SERVER.<id>.VARZ` and
//! `.JSZ`), the JetStream meta group as the servers see it, and removing a server from that
//! group (`$JS.API.SERVER.REMOVE`, what `nats server raft peer-remove` sends). Game servers
//! never get this user: it is not a user of the config, so `env`, `context` and `bundle`
//! cannot name it.

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::nats_client::{self, Endpoint, Login, STEP_TIMEOUT};
use crate::state::{SYSTEM_USER, State};

/// The system user's login to node `i`, or None for a state made before natsup had one
/// (the next `up` makes it).
pub fn login(config: &Config, state: &State, i: usize) -> Option<(Endpoint, Login)> {
    let system = state.secrets.system.as_ref()?;
    let endpoint =
        Endpoint::from_url(&config.nodes()[i].url(), state.node_ca(i).to_string()).ok()?;
    Some((
        endpoint,
        Login {
            user: SYSTEM_USER.to_string(),
            password: system.password.clone(),
            permissions: None,
        },
    ))
}

/// Connects as the system user to node `i`. While its rotation is pending (the new password
/// saved, not yet proven: a node may already hold it), a node that refuses the current
/// password is asked with the pending one.
pub async fn connect(
    config: &Config,
    state: &State,
    i: usize,
) -> Result<async_nats::Client, String> {
    let (endpoint, mut login) = login(config, state, i).ok_or_else(|| {
        "no system user in the local state yet (`natsup up` makes one)".to_string()
    })?;
    let mut answer = nats_client::connect(&endpoint, &login).await;
    if let Err(e) = &answer
        && nats_client::is_auth_error(e)
        && let Some(pending) = state
            .secrets
            .system
            .as_ref()
            .and_then(|s| s.pending.as_ref())
    {
        login.password = pending.password.clone();
        answer = nats_client::connect(&endpoint, &login).await;
    }
    answer.map_err(|e| {
        if nats_client::is_auth_error(&e) {
            // On a cluster the new password is promoted once the first node proves it; a run
            // stopped before the others reloaded leaves them on the old one, which natsup no
            // longer holds. The next `up` renders the promoted hash to them.
            format!(
                "the server refuses the system user's password ({e}): after an interrupted \
                 `rotate-passwords --system`, `natsup up` brings every node to the new one"
            )
        } else {
            format!("cannot connect as the system user: {e}")
        }
    })
}

/// One server's figures, as its own VARZ and JSZ report them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServerFigures {
    /// nats-server's `server_name` (its id on a server without one).
    pub server: String,
    /// The nats-server version the server itself reports.
    pub version: String,
    /// Client connections now (VARZ `connections`).
    pub connections: u64,
    /// Clients that could not keep up, since the server started (VARZ `slow_consumers`).
    pub slow_consumers: u64,
    /// Resident memory of the server process, bytes (VARZ `mem`).
    pub memory_bytes: u64,
    /// JetStream streams on this server (JSZ `streams`).
    pub streams: u64,
    /// JetStream file storage used on this server, bytes (JSZ `storage`).
    pub storage_bytes: u64,
    /// JetStream memory storage used on this server, bytes (JSZ `memory`).
    pub memory_store_bytes: u64,
    /// The meta group as this server sees it; None on a server with no cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<MetaCluster>,
}

/// JSZ's `meta_cluster`: the JetStream meta group as one server sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct MetaCluster {
    #[serde(default)]
    pub leader: Option<String>,
    #[serde(default)]
    pub cluster_size: u64,
    /// The other peers (the answering server is not in its own list).
    #[serde(default)]
    pub replicas: Vec<MetaPeer>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MetaPeer {
    pub name: String,
    #[serde(default)]
    pub current: bool,
    #[serde(default)]
    pub offline: bool,
}

/// A `$SYS.REQ.SERVER.*` answer: the figures under `data`, or an `error`.
#[derive(Deserialize)]
struct ServerApiResponse<T> {
    data: Option<T>,
    error: Option<ApiError>,
    server: Option<ServerInfo>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct ServerInfo {
    #[serde(default)]
    name: String,
    #[serde(default)]
    ver: String,
}

#[derive(Deserialize)]
struct Varz {
    #[serde(default)]
    connections: u64,
    #[serde(default)]
    slow_consumers: u64,
    #[serde(default)]
    mem: u64,
}

#[derive(Deserialize)]
struct Jsz {
    #[serde(default)]
    streams: u64,
    #[serde(default)]
    storage: u64,
    #[serde(default)]
    memory: u64,
    #[serde(default)]
    meta_cluster: Option<MetaCluster>,
}

/// Asks the server this client is connected to (by its id, so that no other server of a
/// cluster answers) for one of the `$SYS.REQ.SERVER` endpoints.
async fn ask<T: for<'de> Deserialize<'de>>(
    client: &async_nats::Client,
    endpoint: &str,
) -> Result<(T, Option<ServerInfo>), String> {
    ask_with(client, endpoint, "{}").await
}

async fn ask_with<T: for<'de> Deserialize<'de>>(
    client: &async_nats::Client,
    endpoint: &str,
    options: &'static str,
) -> Result<(T, Option<ServerInfo>), String> {
    let id = client.server_info().server_id;
    let subject = format!("$SYS.REQ.SERVER.{id}.{endpoint}");
    let reply = tokio::time::timeout(STEP_TIMEOUT, client.request(subject, options.into()))
        .await
        .map_err(|_| format!("{endpoint}: no answer within {STEP_TIMEOUT:?}"))?
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let parsed: ServerApiResponse<T> = serde_json::from_slice(&reply.payload)
        .map_err(|e| format!("{endpoint}: unreadable answer: {e}"))?;
    if let Some(e) = parsed.error {
        return Err(format!("{endpoint}: error {}: {}", e.code, e.description));
    }
    let data = parsed
        .data
        .ok_or_else(|| format!("{endpoint}: an answer without data"))?;
    Ok((data, parsed.server))
}

/// The figures of the server `client` (a system-user connection) is connected to.
pub async fn figures(client: &async_nats::Client) -> Result<ServerFigures, String> {
    let (varz, server) = ask::<Varz>(client, "VARZ").await?;
    let (jsz, _) = ask::<Jsz>(client, "JSZ").await?;
    let info = client.server_info();
    let server = server.unwrap_or(ServerInfo {
        name: String::new(),
        ver: String::new(),
    });
    Ok(ServerFigures {
        server: if server.name.is_empty() {
            info.server_name.clone()
        } else {
            server.name
        },
        version: if server.ver.is_empty() {
            info.version.clone()
        } else {
            server.ver
        },
        connections: varz.connections,
        slow_consumers: varz.slow_consumers,
        memory_bytes: varz.mem,
        streams: jsz.streams,
        storage_bytes: jsz.storage,
        memory_store_bytes: jsz.memory,
        meta: jsz.meta_cluster.filter(|m| m.cluster_size > 0),
    })
}

/// Node `i`'s figures, over a system-user connection of its own.
pub async fn node_figures(
    config: &Config,
    state: &State,
    i: usize,
) -> Result<ServerFigures, String> {
    let client = connect(config, state, i).await?;
    let figures = figures(&client).await;
    drop(client);
    figures
}

/// JSZ with every account's streams and their configs (`{"accounts":true,"streams":true,
/// "config":true}`): the streams this server holds a replica of.
#[derive(Deserialize)]
struct JszAccounts {
    #[serde(default)]
    account_details: Vec<AccountDetail>,
}

#[derive(Deserialize)]
struct AccountDetail {
    #[serde(default)]
    name: String,
    #[serde(default)]
    stream_detail: Vec<StreamDetail>,
}

#[derive(Deserialize)]
struct StreamDetail {
    name: String,
    config: Option<StreamConfig>,
    cluster: Option<StreamCluster>,
}

#[derive(Deserialize)]
struct StreamCluster {
    leader: Option<String>,
}

/// One stream as a server that holds a replica of it reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReport {
    pub account: String,
    pub stream: String,
    pub replicas: u64,
    /// Its leader, as this server knows it; None while it has none.
    pub leader: Option<String>,
}

#[derive(Deserialize)]
struct StreamConfig {
    #[serde(default)]
    num_replicas: u64,
}

/// Every stream the server `client` is connected to holds a replica of.
pub async fn stream_replicas(client: &async_nats::Client) -> Result<Vec<StreamReport>, String> {
    let (jsz, _) = ask_with::<JszAccounts>(
        client,
        "JSZ",
        r#"{"accounts":true,"streams":true,"config":true}"#,
    )
    .await?;
    Ok(jsz
        .account_details
        .into_iter()
        .flat_map(|a| {
            let account = a.name;
            a.stream_detail.into_iter().map(move |s| StreamReport {
                account: account.clone(),
                stream: s.name,
                replicas: s.config.map_or(1, |c| c.num_replicas.max(1)),
                leader: s.cluster.and_then(|c| c.leader).filter(|l| !l.is_empty()),
            })
        })
        .collect())
}

/// What `$JS.API.SERVER.REMOVE` answers.
#[derive(Deserialize)]
struct RemoveResponse {
    #[serde(default)]
    success: bool,
    error: Option<ApiError>,
}

/// Removes server `name` from the JetStream meta group, through `client` (a system-user
/// connection to any other node): the meta leader answers. The same request as
/// `nats server raft peer-remove NAME` (`{"peer": NAME}` to `$JS.API.SERVER.REMOVE`).
pub async fn remove_peer(client: &async_nats::Client, name: &str) -> Result<(), String> {
    let body = serde_json::json!({ "peer": name }).to_string();
    let reply = tokio::time::timeout(
        STEP_TIMEOUT * 2,
        client.request("$JS.API.SERVER.REMOVE", body.into()),
    )
    .await
    .map_err(|_| "the JetStream meta leader did not answer within 10 s".to_string())?
    .map_err(|e| e.to_string())?;
    let parsed: RemoveResponse =
        serde_json::from_slice(&reply.payload).map_err(|e| format!("unreadable answer: {e}"))?;
    match (parsed.success, parsed.error) {
        (true, _) => Ok(()),
        (false, Some(e)) => Err(format!("error {}: {}", e.code, e.description)),
        (false, None) => Err("the meta leader did not confirm the removal".to_string()),
    }
}
