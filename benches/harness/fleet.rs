//! Hundreds of connected clients, as a bevygap backend has them (one connection per running
//! gameserver, plus the matchmaker's services): spread over the users, each publishing and
//! receiving on a timer, one in ten writing to a JetStream stream and counting the acks.
//!
//! Every client records its own connection events, so a benchmark can tell whose connections
//! an operation broke, when each came back, and why attempts failed. The clients reconnect
//! with async-nats' defaults (no reconnect limit, backoff 0, 2, 4 ms ... up to 4 s, 5 s
//! connect timeout), as a gameserver would.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::clients::Server;

/// The stream the JetStream clients write to (subjects `scale.>`).
pub const STREAM: &str = "SCALE";
/// Each client publishes once per period: at 500 clients a shorter one would measure the
/// publishers, not the server.
const PERIOD: Duration = Duration::from_millis(200);
/// One client in this many publishes to the stream and waits for the ack.
const JETSTREAM_EVERY: usize = 10;
/// Initial connects at once: more would only queue on the server's bcrypt and, past its
/// 2 s auth timeout, be refused.
const CONNECTING_AT_ONCE: usize = 4;

/// The password each user's clients log in with, read at every (re)connect. `None` parks the
/// user: its service is being given a new password, so its clients make no login attempts
/// (each would cost the server a bcrypt check) until the new one is set.
#[derive(Clone, Default)]
pub struct Passwords(Arc<Mutex<HashMap<String, Option<String>>>>);

impl Passwords {
    pub fn set(&self, user: &str, password: Option<String>) {
        self.0.lock().unwrap().insert(user.to_string(), password);
    }

    fn get(&self, user: &str) -> Option<String> {
        self.0.lock().unwrap().get(user).cloned().flatten()
    }
}

/// One client's connection, as its event callback saw it.
struct Member {
    user: String,
    up: AtomicBool,
    disconnects: AtomicUsize,
    connected_at: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Counters {
    /// Attempts refused with `Authentication Timeout` (the server's bcrypt queue was too long).
    /// Caveat: async-nats 0.51 reports a failed *re*connect by its kind only ("IO error",
    /// connector.rs), so a refusal during reconnect is counted under `reasons` as an IO error,
    /// not here; the server's log (`docker logs`) is where those can be counted.
    auth_timeouts: AtomicUsize,
    /// Every failed (re)connect attempt the clients reported.
    failed_attempts: AtomicUsize,
    acked: AtomicU64,
    publish_errors: AtomicU64,
    received: AtomicU64,
    /// Clients that gave up their first connect.
    unconnected: AtomicUsize,
    /// Failed attempts by what the client library said (digits blanked, so ports and
    /// addresses do not split a reason).
    reasons: Mutex<HashMap<String, usize>>,
}

pub struct Fleet {
    members: Vec<Arc<Member>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    /// How long it took to connect them all at first.
    pub connect_time: Duration,
}

/// The counters at one moment, to subtract from later ones.
pub struct Snapshot {
    disconnects: Vec<usize>,
    reasons: HashMap<String, usize>,
    auth_timeouts: usize,
    failed_attempts: usize,
    pub at: Instant,
}

fn is_auth_timeout(error: &str) -> bool {
    error.to_lowercase().contains("authentication timeout")
}

impl Fleet {
    /// `count` clients spread over `users` (client i is `users[i % len]`), all connected before
    /// this returns. Panics if any cannot connect within a few attempts.
    pub fn start(
        rt: &Runtime,
        server: &Server,
        users: &[&str],
        passwords: &Passwords,
        count: usize,
    ) -> Fleet {
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(tokio::sync::Semaphore::new(CONNECTING_AT_ONCE));
        let started = Instant::now();
        let mut members = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..count {
            let member = Arc::new(Member {
                user: users[i % users.len()].to_string(),
                up: AtomicBool::new(false),
                disconnects: AtomicUsize::new(0),
                connected_at: Mutex::new(None),
            });
            members.push(member.clone());
            let options = options(server, passwords, &member, &counters);
            let (url, counters, stop, gate) =
                (server.url(), counters.clone(), stop.clone(), gate.clone());
            tasks.push(rt.spawn(async move {
                let permit = gate.acquire().await.expect("semaphore");
                let mut client = None;
                for _ in 0..5 {
                    match options.clone().connect(url.as_str()).await {
                        Ok(c) => {
                            client = Some(c);
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
                drop(permit);
                let Some(client) = client else {
                    counters.unconnected.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                // Spread the clients over the period rather than publishing all at once.
                tokio::time::sleep(PERIOD * (i as u32 % 97) / 97).await;
                work(client, i, &counters, &stop).await;
            }));
        }
        let fleet = Fleet {
            members,
            counters,
            stop,
            tasks,
            connect_time: Duration::ZERO,
        };
        let deadline = Duration::from_secs(60 + count as u64 / 2);
        loop {
            let unconnected = fleet.counters.unconnected.load(Ordering::SeqCst);
            assert_eq!(
                unconnected, 0,
                "{unconnected} of {count} clients could not connect"
            );
            if fleet.connected() == count {
                break;
            }
            assert!(
                started.elapsed() < deadline,
                "only {} of {count} clients connected within {deadline:?}",
                fleet.connected()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Fleet {
            connect_time: started.elapsed(),
            ..fleet
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Clients connected now.
    pub fn connected(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.up.load(Ordering::SeqCst))
            .count()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            disconnects: self
                .members
                .iter()
                .map(|m| m.disconnects.load(Ordering::SeqCst))
                .collect(),
            reasons: self.counters.reasons.lock().unwrap().clone(),
            auth_timeouts: self.counters.auth_timeouts.load(Ordering::SeqCst),
            failed_attempts: self.counters.failed_attempts.load(Ordering::SeqCst),
            at: Instant::now(),
        }
    }

    /// Disconnects since `before` of clients whose user is not `except`.
    pub fn disconnects_since(&self, before: &Snapshot, except: Option<&str>) -> usize {
        self.members
            .iter()
            .zip(&before.disconnects)
            .filter(|(m, _)| Some(m.user.as_str()) != except)
            .map(|(m, then)| m.disconnects.load(Ordering::SeqCst) - then)
            .sum()
    }

    pub fn auth_timeouts_since(&self, before: &Snapshot) -> usize {
        self.counters.auth_timeouts.load(Ordering::SeqCst) - before.auth_timeouts
    }

    pub fn failed_attempts_since(&self, before: &Snapshot) -> usize {
        self.counters.failed_attempts.load(Ordering::SeqCst) - before.failed_attempts
    }

    /// Failed attempts since `before` by reason, most frequent first.
    pub fn reasons_since(&self, before: &Snapshot) -> Vec<(String, usize)> {
        let mut reasons: Vec<(String, usize)> = self
            .counters
            .reasons
            .lock()
            .unwrap()
            .iter()
            .map(|(r, n)| (r.clone(), n - before.reasons.get(r).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
        reasons
    }

    /// Messages the stream acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.counters.acked.load(Ordering::SeqCst)
    }

    pub fn publish_errors(&self) -> u64 {
        self.counters.publish_errors.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> u64 {
        self.counters.received.load(Ordering::SeqCst)
    }

    /// Waits until every client is connected again after `since`; returns when the last one
    /// came back, or None if some were still away after `limit`.
    pub fn wait_all_back(&self, since: Instant, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            let back: Vec<Instant> = self
                .members
                .iter()
                .filter(|m| m.up.load(Ordering::SeqCst))
                .filter_map(|m| *m.connected_at.lock().unwrap())
                .filter(|at| *at > since)
                .collect();
            if back.len() == self.members.len() {
                return back.into_iter().max();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The first reconnect after `since`, if any.
    pub fn first_back(&self, since: Instant) -> Option<Instant> {
        self.members
            .iter()
            .filter_map(|m| *m.connected_at.lock().unwrap())
            .filter(|at| *at > since)
            .min()
    }

    /// Waits until all are connected (bounded); returns whether they are.
    pub fn settle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.connected() < self.len() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    pub fn stop(self, rt: &Runtime) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            // A client waiting on an ack stops within the ack timeout (5 s).
            let _ =
                rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        }
    }
}

fn options(
    server: &Server,
    passwords: &Passwords,
    member: &Arc<Member>,
    counters: &Arc<Counters>,
) -> async_nats::ConnectOptions {
    let tls = natsup::nats_client::client_tls(&server.ca_pem).expect("CA");
    let (user, passwords) = (member.user.clone(), passwords.clone());
    let (member, counters) = (member.clone(), counters.clone());
    async_nats::ConnectOptions::with_auth_callback(move |_nonce| {
        let password = passwords.get(&user);
        let user = user.clone();
        async move {
            let password =
                password.ok_or_else(|| async_nats::AuthError::new("waiting for a new password"))?;
            let mut auth = async_nats::Auth::new();
            auth.username = Some(user);
            auth.password = Some(password);
            Ok(auth)
        }
    })
    .require_tls(true)
    .tls_client_config(tls)
    .event_callback(move |event| {
        let (member, counters) = (member.clone(), counters.clone());
        async move {
            match event {
                async_nats::Event::Connected => {
                    *member.connected_at.lock().unwrap() = Some(Instant::now());
                    member.up.store(true, Ordering::SeqCst);
                }
                async_nats::Event::Disconnected => {
                    member.up.store(false, Ordering::SeqCst);
                    member.disconnects.fetch_add(1, Ordering::SeqCst);
                }
                async_nats::Event::ClientError(e) => {
                    let error = e.to_string();
                    counters.failed_attempts.fetch_add(1, Ordering::SeqCst);
                    if is_auth_timeout(&error) {
                        counters.auth_timeouts.fetch_add(1, Ordering::SeqCst);
                    }
                    let reason: String = error
                        .chars()
                        .map(|c| if c.is_ascii_digit() { '#' } else { c })
                        .take(80)
                        .collect();
                    *counters.reasons.lock().unwrap().entry(reason).or_default() += 1;
                }
                async_nats::Event::ServerError(e) if is_auth_timeout(&e.to_string()) => {
                    counters.auth_timeouts.fetch_add(1, Ordering::SeqCst);
                }
                _ => {}
            }
        }
    })
}

/// One client's work until stopped: every period, publish to its own subject and receive it
/// back, or (one in ten) publish to the stream and wait for the ack.
async fn work(client: async_nats::Client, i: usize, counters: &Counters, stop: &AtomicBool) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if i.is_multiple_of(JETSTREAM_EVERY) {
        let js = jetstream::new(client);
        let subject = format!("scale.{i}");
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            let acked = match js.publish(subject.clone(), "payload".into()).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            if acked {
                counters.acked.fetch_add(1, Ordering::SeqCst);
            } else {
                counters.publish_errors.fetch_add(1, Ordering::SeqCst);
            }
        }
    } else {
        let subject = format!("bench.scale.{i}");
        let Ok(mut sub) = client.subscribe(subject.clone()).await else {
            counters.publish_errors.fetch_add(1, Ordering::SeqCst);
            return;
        };
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            if client.publish(subject.clone(), "x".into()).await.is_err() {
                counters.publish_errors.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            if let Ok(Some(_)) = tokio::time::timeout(PERIOD, sub.next()).await {
                counters.received.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

async fn plain_client(server: &Server, user: &str, password: &str) -> async_nats::Client {
    let tls = natsup::nats_client::client_tls(&server.ca_pem).expect("CA");
    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .require_tls(true)
        .tls_client_config(tls)
        .connect(server.url())
        .await
        .unwrap_or_else(|e| panic!("{user} cannot connect: {e}"))
}

/// Creates the stream the fleet writes to (file storage, as bevygap's work queue).
pub fn create_stream(rt: &Runtime, server: &Server, user: &str, password: &str) {
    rt.block_on(async {
        let js = jetstream::new(plain_client(server, user, password).await);
        js.get_or_create_stream(jetstream::stream::Config {
            name: STREAM.into(),
            subjects: vec!["scale.>".into()],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create the SCALE stream");
    });
}

/// Messages stored in the stream now.
pub fn stream_messages(rt: &Runtime, server: &Server, user: &str, password: &str) -> u64 {
    rt.block_on(async {
        let js = jetstream::new(plain_client(server, user, password).await);
        let mut stream = js.get_stream(STREAM).await.expect("SCALE stream");
        stream.info().await.expect("stream info").state.messages
    })
}

/// Polls until the server on `port` completes a TLS handshake (after its INFO line); returns
/// when it first did, or None after `limit`.
pub fn tls_ready(rt: &Runtime, port: u16, limit: Duration) -> Option<Instant> {
    let addr = format!("127.0.0.1:{port}");
    let started = Instant::now();
    rt.block_on(async {
        while started.elapsed() < limit {
            let probe =
                natsup::tls_probe::probe(&addr, "127.0.0.1", Duration::from_millis(500)).await;
            if probe.is_ok() {
                return Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    })
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker restart` of the container; returns when Docker says it has started again.
pub fn restart_container(id: &str) {
    docker(&["restart", "-t", "10", id]);
}

/// The container's memory use as `docker stats` reports it (RSS + kernel memory, page cache
/// excluded), in MiB.
pub fn container_memory_mib(id: &str) -> f64 {
    let usage = docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", id]);
    let used = usage.split('/').next().unwrap_or("").trim();
    let number: String = used
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let value: f64 = number.parse().unwrap_or(f64::NAN);
    let unit = &used[number.len()..];
    value
        * match unit {
            "B" => 1.0 / 1024.0 / 1024.0,
            "KiB" | "kB" => 1.0 / 1024.0,
            "GiB" | "GB" => 1024.0,
            _ => 1.0,
        }
}

/// nats-server's open-file limit inside the container (soft), from /proc.
pub fn container_nofile(id: &str) -> String {
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", id]);
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into())
}
