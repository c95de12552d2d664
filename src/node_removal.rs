//! Taking a node out of a cluster once it was removed from `nodes`: `up` puts it in lame duck,
//! removes it from the JetStream meta group, rolls the new route list to the others (with the
//! health gate, [`crate::operation::converge`]), stops its container, and then rotates the
//! route credential ([`crate::route_rotation`]), in that order:
//! - lame duck first, so that its clients are told to move and its JetStream leaders move to
//!   the other nodes while it still answers (nats-server's lame duck mode: SIGUSR2);
//! - then the meta group: `$JS.API.SERVER.REMOVE` (what `nats server raft peer-remove`
//!   sends), as the system user. The meta leader drops the peer and places the replicas of
//!   streams it held on the remaining nodes; left in, a peer that never comes back counts
//!   against the meta group's quorum forever;
//! - then the others drop its route, one node at a time, each gated as any change;
//! - then its container is stopped (not removed: its files and data stay in its folder), and
//!   it is told never to restart, so a reboot does not bring it back;
//! - last, the route credential it holds is replaced, so it could not rejoin even if started.
//!
//! A removed node is reached by the SSH settings recorded while it was in `nodes`
//! ([`crate::state::reach`]). If it cannot be reached, that is said and the rest still runs:
//! the meta group and the route credential are the other nodes' business.
//!
//! Refused before anything changes: a stream whose replica count exceeds the nodes that would
//! remain (an R3 stream on two nodes cannot keep its three replicas, and JetStream would leave
//! it short of a replica for good); the error names each stream.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::remote::script::{self, RetireStep};
use crate::remote::{AnyRemote, Remote, SshDestination, Via};
use crate::state::State;
use crate::state::reach::{self, NodeReach};
use crate::system_account;
use crate::ui;

/// One step of a node's removal, in the order `up` runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    LameDuck(String),
    LeaveMetaGroup(String),
    /// The remaining nodes drop the removed ones' routes, one at a time, gated.
    RollRoutes,
    StopContainer(String),
    RotateRouteCredential,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::LameDuck(n) => write!(
                f,
                "put node {n} in lame duck (its clients move, its JetStream leaders move away)"
            ),
            Step::LeaveMetaGroup(n) => write!(
                f,
                "remove node {n} from the JetStream meta group (as `nats server raft peer-remove {n}`)"
            ),
            Step::RollRoutes => write!(
                f,
                "roll the new route list to the remaining nodes, one at a time, with the health gate"
            ),
            Step::StopContainer(n) => {
                write!(f, "stop node {n}'s container (its folder and data stay)")
            }
            Step::RotateRouteCredential => write!(
                f,
                "rotate the route credential, so a removed node cannot rejoin"
            ),
        }
    }
}

/// The steps that remove `removed` (nodes with a state folder that are no longer in `nodes`).
pub fn steps(removed: &[String]) -> Vec<Step> {
    if removed.is_empty() {
        return Vec::new();
    }
    let mut steps: Vec<Step> = removed.iter().cloned().map(Step::LameDuck).collect();
    steps.extend(removed.iter().cloned().map(Step::LeaveMetaGroup));
    steps.push(Step::RollRoutes);
    steps.extend(removed.iter().cloned().map(Step::StopContainer));
    steps.push(Step::RotateRouteCredential);
    steps
}

/// A stream and its replica count, as the servers report it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamReplicas {
    pub account: String,
    pub stream: String,
    pub replicas: u64,
}

/// The streams that would have more replicas than there are nodes left.
pub fn too_replicated(streams: &[StreamReplicas], remaining: usize) -> Vec<&StreamReplicas> {
    streams
        .iter()
        .filter(|s| s.replicas > remaining as u64)
        .collect()
}

/// The refusal for [`too_replicated`] streams.
pub fn refusal(removed: &[String], remaining: usize, streams: &[&StreamReplicas]) -> Error {
    let names: Vec<String> = streams
        .iter()
        .map(|s| {
            let account = if s.account == "$G" {
                String::new()
            } else {
                format!(" (account {})", s.account)
            };
            format!("{} R{}{account}", s.stream, s.replicas)
        })
        .collect();
    Error::usage(
        format!(
            "cannot remove node {}: {} node{} would remain, fewer than the replicas of stream{} {}",
            removed.join(", "),
            remaining,
            if remaining == 1 { "" } else { "s" },
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        ),
        Some(format!(
            "put the node back in `nodes`, or lower those streams' replicas to {remaining} or \
             fewer first (`nats stream edit NAME --replicas {remaining}`; a KV bucket's stream \
             is KV_<bucket>)"
        )),
    )
}

/// A removed node on its way out, with the connection its steps run over (if it could be
/// reached).
pub struct Retiring {
    pub node: String,
    reach: Option<NodeReach>,
    remote: Option<AnyRemote>,
}

/// How long the meta leader may take to drop the removed peer, and to move away from it.
const META_PATIENCE: Duration = Duration::from_secs(30);

/// Before the roll: refuses a removal that would leave a stream short of replicas, then puts
/// each removed node in lame duck and removes it from the meta group. Returns the nodes to
/// stop after the roll ([`finish`]). Nothing to do for a deployment with no removed node.
pub async fn begin(
    config: &Config,
    state: &State,
    accept_new_host_key: bool,
) -> Result<Vec<Retiring>> {
    let removed = state.dir.removed_nodes(config);
    if removed.is_empty() || !config.is_cluster() {
        return Ok(Vec::new());
    }
    let remaining = config.nodes().len();
    let streams = streams(config, state).await.map_err(|e| {
        Error::failed(
            format!(
                "cannot read the streams' replica counts before removing node {}: {e}",
                removed.join(", ")
            ),
            Some(
                "the remaining nodes must take natsup's system user: put the removed node back in \
                 `nodes`, run `natsup up` once (it gives every node the system user), then \
                 remove it again"
                    .to_string(),
            ),
        )
    })?;
    let short = too_replicated(&streams, remaining);
    if !short.is_empty() {
        return Err(refusal(&removed, remaining, &short));
    }
    // The meta group can only drop a peer while a majority of it answers: every remaining node
    // must answer and know a meta leader before the removed one is put in lame duck.
    let figures =
        join_all((0..remaining).map(|i| system_account::node_figures(config, state, i))).await;
    for (node, f) in config.nodes().iter().zip(figures) {
        let why = match f {
            Err(e) => e,
            Ok(f) if f.meta.as_ref().and_then(|m| m.leader.as_ref()).is_none() => {
                "it knows no JetStream meta leader".to_string()
            }
            Ok(_) => continue,
        };
        return Err(Error::failed(
            format!(
                "not removing node {}: node {} is not healthy: {why}",
                removed.join(", "),
                node.name
            ),
            Some(
                "nothing was changed; bring that node back (`natsup status`), then run \
                 `natsup up` again"
                    .to_string(),
            ),
        ));
    }
    ui::note(format!(
        "removing node {}: {}",
        removed.join(", "),
        steps(&removed)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    ));
    let mut retiring = Vec::new();
    for node in &removed {
        let reach = reach::read(&state.dir, node)?;
        let mut r = Retiring {
            node: node.clone(),
            reach,
            remote: None,
        };
        match r.connect(accept_new_host_key).await {
            Ok(remote) => r.remote = Some(remote),
            Err(e) => ui::note(format!(
                "node {node} cannot be reached ({e}): it is not put in lame duck and its \
                 container is not stopped; the other steps go on. Stop it yourself \
                 (`docker compose stop` in its folder): the route credential is rotated below, \
                 so it cannot rejoin"
            )),
        }
        r.run(config, RetireStep::LameDuck).await;
        retiring.push(r);
    }
    leaders_moved(config, state, &removed).await;
    for node in &removed {
        leave_meta_group(config, state, node).await?;
    }
    Ok(retiring)
}

/// After the roll: stops each removed node's container, and closes its connection.
pub async fn finish(config: &Config, retiring: Vec<Retiring>) {
    for mut r in retiring {
        r.run(config, RetireStep::Stop).await;
        if let Some(remote) = r.remote.take() {
            remote.close().await;
        }
    }
}

impl Retiring {
    async fn connect(&self, accept_new_host_key: bool) -> std::result::Result<AnyRemote, String> {
        let reach = self
            .reach
            .as_ref()
            .ok_or("natsup has no record of how it reached it")?;
        let ssh = reach
            .ssh
            .as_ref()
            .ok_or("its record has no ssh destination")?;
        let via = Via::Ssh(SshDestination::from_config(ssh, accept_new_host_key));
        via.open().await.map_err(|e| e.to_string())
    }

    /// Runs one retire step over the node's connection; a failure is said, not fatal.
    async fn run(&mut self, config: &Config, step: RetireStep) {
        let (Some(remote), Some(reach)) = (self.remote.as_mut(), self.reach.as_ref()) else {
            return;
        };
        let wait = crate::deploy::lame_duck_wait(config);
        let script = script::retire(
            &config.name,
            &reach.remote_dir,
            step,
            wait,
            Duration::from_secs(60),
        );
        let what = match step {
            RetireStep::LameDuck => "putting the removed node in lame duck",
            RetireStep::Stop => "stopping the removed node's container",
        };
        let ui_step = ui::Step::start(format!("node {}: {what}", self.node));
        let bound = wait + Duration::from_secs(120);
        match remote.run_within(what, &script, &[], bound).await {
            Ok(out) if out.status == 0 => {
                let said = |key: &str| {
                    out.stdout
                        .lines()
                        .find_map(|l| l.strip_prefix(&format!("natsup.{key}=")))
                        .map(str::to_string)
                };
                ui_step.done(match (said("container").as_deref(), step) {
                    (Some("none") | None, _) => "no container there".to_string(),
                    (_, RetireStep::LameDuck) => match said("lame_duck").as_deref() {
                        Some("sent") => "in lame duck".to_string(),
                        _ => "its server was not running".to_string(),
                    },
                    (_, RetireStep::Stop) => format!(
                        "stopped after {}s",
                        said("stopped").unwrap_or_else(|| "?".into())
                    ),
                });
            }
            Ok(out) => ui_step.done(format!(
                "FAILED (exit {}): {}; the other steps go on",
                out.status,
                out.stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("natsup.error="))
                    .unwrap_or(out.stderr.trim())
            )),
            Err(e) => ui_step.done(format!("FAILED: {e}; the other steps go on")),
        }
    }
}

/// What each remaining node reports of the streams it holds a replica of (its own JSZ, as
/// the system user).
async fn reports(
    config: &Config,
    state: &State,
) -> Vec<std::result::Result<Vec<system_account::StreamReport>, String>> {
    join_all((0..config.nodes().len()).map(|i| async move {
        let client = system_account::connect(config, state, i).await?;
        system_account::stream_replicas(&client).await
    }))
    .await
}

/// Every stream on the remaining nodes with its replica count.
async fn streams(
    config: &Config,
    state: &State,
) -> std::result::Result<Vec<StreamReplicas>, String> {
    let answers = reports(config, state).await;
    let mut all: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut answered = false;
    let mut last_error = None;
    for answer in answers {
        match answer {
            Ok(list) => {
                answered = true;
                for s in list {
                    let slot = all.entry((s.account, s.stream)).or_default();
                    *slot = (*slot).max(s.replicas);
                }
            }
            Err(e) => last_error = Some(e),
        }
    }
    if !answered {
        return Err(last_error.unwrap_or_else(|| "no node answered".into()));
    }
    Ok(all
        .into_iter()
        .map(|((account, stream), replicas)| StreamReplicas {
            account,
            stream,
            replicas,
        })
        .collect())
}

/// How long the streams led by a node in lame duck may take to elect leaders elsewhere.
const LEADERS_PATIENCE: Duration = Duration::from_secs(15);

/// Waits until no replicated stream is led by a removed node, or has no leader, as the
/// remaining nodes report it: lame duck starts those elections, and the meta group changing
/// a stream's replicas in the middle of one may leave it leaderless for longer (seen: one R3
/// publish of 785 answered "no stream found" when the removal followed the lame-duck signal
/// by 0.5 s). Bounded: a removed node that was not reached still leads its streams, and the
/// removal goes on without it (new leaders are elected once it leaves the group).
async fn leaders_moved(config: &Config, state: &State, removed: &[String]) {
    let step = ui::Step::start("waiting until the removed nodes lead no stream");
    let started = Instant::now();
    loop {
        let mut waiting: Vec<String> = reports(config, state)
            .await
            .into_iter()
            .flatten()
            .flatten()
            .filter(|s| {
                s.replicas > 1
                    && s.leader
                        .as_ref()
                        .is_none_or(|l| removed.iter().any(|r| r == l))
            })
            .map(|s| s.stream)
            .collect();
        waiting.sort();
        waiting.dedup();
        if waiting.is_empty() {
            step.done(format!("done in {:.1}s", started.elapsed().as_secs_f64()));
            return;
        }
        if started.elapsed() > LEADERS_PATIENCE {
            step.done(format!(
                "still waiting for {} after {}s; going on",
                waiting.join(", "),
                LEADERS_PATIENCE.as_secs()
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The meta group as its leader sees it, asked through the remaining nodes: the leader's name
/// and the peers it lists (only the leader's JSZ lists them).
async fn meta_view(config: &Config, state: &State) -> Option<(String, Vec<String>)> {
    let figures =
        join_all((0..config.nodes().len()).map(|i| system_account::node_figures(config, state, i)))
            .await;
    let figures: Vec<_> = figures.into_iter().filter_map(|f| f.ok()).collect();
    let leader = figures
        .iter()
        .find_map(|f| f.meta.as_ref().and_then(|m| m.leader.clone()))?;
    let peers = figures
        .iter()
        .find(|f| f.server == leader)
        .and_then(|f| f.meta.as_ref())
        .map(|m| m.replicas.iter().map(|p| p.name.clone()).collect())
        .unwrap_or_default();
    Some((leader, peers))
}

/// Removes `node` from the meta group through the remaining nodes, and waits until the leader
/// (a remaining node) no longer lists it.
async fn leave_meta_group(config: &Config, state: &State, node: &str) -> Result<()> {
    let step = ui::Step::start(format!(
        "removing node {node} from the JetStream meta group"
    ));
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < META_PATIENCE {
        match meta_view(config, state).await {
            // Lame duck hands the leadership away; a leader that is the removed node is
            // waited for, since a leader cannot be removed through itself.
            Some((leader, _)) if leader == node => {
                last = format!("node {node} still leads the meta group");
            }
            Some((leader, peers)) if !peers.iter().any(|p| p == node) => {
                step.done(format!(
                    "done in {:.1}s; the meta group is {leader} (leader), {}",
                    started.elapsed().as_secs_f64(),
                    peers.join(", ")
                ));
                return Ok(());
            }
            Some(_) => {
                for i in 0..config.nodes().len() {
                    let removed = async {
                        let client = system_account::connect(config, state, i).await?;
                        system_account::remove_peer(&client, node).await
                    };
                    match removed.await {
                        Ok(()) => break,
                        Err(e) => last = e,
                    }
                }
            }
            None => last = "no remaining node knows a meta leader".to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    step.done("FAILED");
    Err(Error::failed(
        format!(
            "node {node} is still in the JetStream meta group after {}s: {last}",
            META_PATIENCE.as_secs()
        ),
        Some(format!(
            "run `natsup up` again; or remove it yourself: `nats server raft peer-remove {node}` \
             as the system user (`natsup context --system`)"
        )),
    ))
}
