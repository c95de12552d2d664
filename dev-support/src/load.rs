//! NATS clients that keep working while an operation runs and count what it does to them, for
//! the tests and the benchmarks alike:
//! - [`Crowd`]: N connected clients spread over some logins, each doing a [`Work`] every
//!   period; it counts every client's disconnects, reconnects and failed attempts (and why
//!   they failed), and the messages acked, read back and received;
//! - [`watched`]: one client that counts its disconnects;
//! - [`ConnectLoop`]: a client that connects over and over, to find the window in which new
//!   connections fail or stall;
//! - [`wait_for_tls`] and [`tls_ready`]: until a user can log in, until the server's TLS
//!   answers.
//!
//! Clients reconnect with async-nats' defaults (no reconnect limit, backoff 0, 2, 4 ms ... up
//! to 4 s, 5 s connect timeout), as a gameserver would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::workspace::Login;

/// The stream the JetStream clients write to (subjects `load.>`, file storage).
pub const STREAM: &str = "LOAD";

/// Creates the stream the crowd writes to (subjects `load.>`, file storage).
pub fn create_stream(rt: &Runtime, login: &Login) {
    rt.block_on(async {
        let js = jetstream::new(login.connect().await.expect("connect"));
        js.get_or_create_stream(jetstream::stream::Config {
            name: STREAM.into(),
            subjects: vec!["load.>".into()],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create the LOAD stream");
    });
}

/// Messages now in the LOAD stream.
pub fn stream_messages(rt: &Runtime, login: &Login) -> u64 {
    rt.block_on(async {
        let js = jetstream::new(login.connect().await.expect("connect"));
        let mut stream = js.get_stream(STREAM).await.expect("LOAD stream");
        stream.info().await.expect("stream info").state.messages
    })
}

/// What each client of a crowd does once per period.
#[derive(Clone, Copy, Debug)]
pub enum Work {
    /// Publishes to the LOAD stream (`load.<i>`), waits for the ack and reads the message back
    /// by its sequence: every acked message must be stored.
    JetStream,
    /// Publishes to a core NATS subject of its own (`echo.<i>`, outside the stream) and
    /// receives it back.
    Echo,
    /// One client in `jetstream_every` publishes to the LOAD stream and waits for the ack (no
    /// read back); the others echo. A backend's mix: many services on core NATS, some work
    /// queues in JetStream.
    Mixed { jetstream_every: usize },
}

/// How a crowd loads the server.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub work: Work,
    /// Each client starts a round once per period (right after the last one, if that one took
    /// longer). Hundreds of clients at 20 ms would measure this machine's two cores, not the
    /// server.
    pub period: Duration,
    /// First connects at once. More than a few only queue on the server's bcrypt and, past its
    /// 2 s auth timeout, are refused.
    pub connecting_at_once: usize,
}

impl Load {
    /// [`Work::JetStream`] every `period`, connecting one client at a time.
    pub fn jetstream(period: Duration) -> Load {
        Load {
            work: Work::JetStream,
            period,
            connecting_at_once: 1,
        }
    }

    /// [`Work::Echo`] every `period`, connecting one client at a time.
    pub fn echo(period: Duration) -> Load {
        Load {
            work: Work::Echo,
            period,
            connecting_at_once: 1,
        }
    }
}

/// Password overrides by user, read at every (re)connect. With no entry, a client logs in with
/// its own [`Login`]'s password; `Some(p)` replaces it; `None` parks the user: its service is
/// being given a new password, so its clients make no login attempts (each would cost the
/// server a bcrypt check) until the new one is set.
#[derive(Clone, Default)]
pub struct Passwords(Arc<Mutex<HashMap<String, Option<String>>>>);

impl Passwords {
    pub fn set(&self, user: &str, password: Option<String>) {
        self.0.lock().unwrap().insert(user.to_string(), password);
    }

    /// The password to log in with now, or None while the user is parked.
    fn current(&self, login: &Login) -> Option<String> {
        match self.0.lock().unwrap().get(&login.user) {
            Some(overridden) => overridden.clone(),
            None => Some(login.password.clone()),
        }
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
    read_back: AtomicU64,
    /// Publishes, acks, reads back and subscribes that failed.
    errors: AtomicU64,
    received: AtomicU64,
    /// Clients that gave up their first connect, and the last reason one gave.
    unconnected: AtomicUsize,
    last_connect_error: Mutex<Option<String>>,
    /// Failed attempts by what the client library said (digits blanked, so ports and
    /// addresses do not split a reason).
    reasons: Mutex<HashMap<String, usize>>,
}

/// Connected clients doing their [`Work`] until stopped.
pub struct Crowd {
    members: Vec<Arc<Member>>,
    counters: Arc<Counters>,
    passwords: Passwords,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    /// How long it took to connect them all at first.
    pub connect_time: Duration,
}

/// What a crowd did, when stopped.
pub struct CrowdReport {
    /// Of every client, until it was stopped.
    pub disconnects: usize,
    /// JetStream publishes acknowledged.
    pub acked: u64,
    /// Acked messages read back from the stream ([`Work::JetStream`]).
    pub read_back: u64,
    pub errors: u64,
    /// Echoes received back.
    pub received: u64,
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

impl Crowd {
    /// `count` clients, spread over `logins`, all connected before this returns, each
    /// publishing to the LOAD stream every 20 ms and reading its message back.
    pub fn start(rt: &Runtime, logins: &[Login], count: usize) -> Crowd {
        Crowd::start_every(rt, logins, count, Duration::from_millis(20))
    }

    /// As [`Crowd::start`], each client publishing every `period`: hundreds of clients at 20 ms
    /// would measure this machine's two cores, not the server.
    pub fn start_every(rt: &Runtime, logins: &[Login], count: usize, period: Duration) -> Crowd {
        Crowd::start_with(rt, logins, count, Load::jetstream(period))
    }

    /// `count` clients (client i logs in as `logins[i % len]`) doing `load`, all connected
    /// before this returns. Panics if any cannot connect within a few attempts.
    pub fn start_with(rt: &Runtime, logins: &[Login], count: usize, load: Load) -> Crowd {
        let counters = Arc::new(Counters::default());
        let passwords = Passwords::default();
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(tokio::sync::Semaphore::new(load.connecting_at_once.max(1)));
        let started = Instant::now();
        let mut members = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..count {
            let login = &logins[i % logins.len()];
            let member = Arc::new(Member {
                user: login.user.clone(),
                up: AtomicBool::new(false),
                disconnects: AtomicUsize::new(0),
                connected_at: Mutex::new(None),
            });
            members.push(member.clone());
            let options = options(login, &passwords, &member, &counters);
            let (url, counters, stop, gate) =
                (login.url(), counters.clone(), stop.clone(), gate.clone());
            tasks.push(rt.spawn(async move {
                let permit = gate.acquire().await.expect("semaphore");
                let mut client = None;
                for _ in 0..5 {
                    match options.clone().connect(url.as_str()).await {
                        Ok(c) => {
                            client = Some(c);
                            break;
                        }
                        Err(e) => {
                            *counters.last_connect_error.lock().unwrap() =
                                Some(format!("client {i}: {e}"));
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                drop(permit);
                let Some(client) = client else {
                    counters.unconnected.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                // Spread the clients over the period rather than publishing all at once.
                tokio::time::sleep(load.period * (i as u32 % 97) / 97).await;
                work(client, i, load, &counters, &stop).await;
            }));
        }
        let crowd = Crowd {
            members,
            counters,
            passwords,
            stop,
            tasks,
            connect_time: Duration::ZERO,
        };
        let deadline = Duration::from_secs(60 + count as u64 / 2);
        loop {
            let unconnected = crowd.counters.unconnected.load(Ordering::SeqCst);
            assert_eq!(
                unconnected,
                0,
                "{unconnected} of {count} clients could not connect (last: {})",
                crowd
                    .counters
                    .last_connect_error
                    .lock()
                    .unwrap()
                    .as_deref()
                    .unwrap_or("?")
            );
            if crowd.connected() == count {
                break;
            }
            assert!(
                started.elapsed() < deadline,
                "only {} of {count} clients connected within {deadline:?}",
                crowd.connected()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Crowd {
            connect_time: started.elapsed(),
            ..crowd
        }
    }

    /// The password overrides its clients log in with (to park a user, or give it a new one).
    pub fn passwords(&self) -> &Passwords {
        &self.passwords
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
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

    pub fn errors(&self) -> u64 {
        self.counters.errors.load(Ordering::SeqCst)
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

    /// Stops the clients and reports what they did.
    pub fn stop(self, rt: &Runtime) -> CrowdReport {
        // Read before the clients go away: closing is not a disconnect we caused.
        let disconnects = self
            .members
            .iter()
            .map(|m| m.disconnects.load(Ordering::SeqCst));
        let disconnects = disconnects.sum();
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            // A client waiting on an ack stops within the ack timeout (5 s).
            if let Ok(Err(e)) =
                rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await })
            {
                panic!("a crowd client failed: {e}");
            }
        }
        // Read after every client stopped: an ack that arrived while stopping is counted, so
        // the stream holds exactly what was acked.
        CrowdReport {
            disconnects,
            acked: self.counters.acked.load(Ordering::SeqCst),
            read_back: self.counters.read_back.load(Ordering::SeqCst),
            errors: self.counters.errors.load(Ordering::SeqCst),
            received: self.counters.received.load(Ordering::SeqCst),
        }
    }
}

/// A crowd client's options: the login's TLS, its password read at every (re)connect, and
/// its connection events recorded.
fn options(
    login: &Login,
    passwords: &Passwords,
    member: &Arc<Member>,
    counters: &Arc<Counters>,
) -> async_nats::ConnectOptions {
    let tls = natsup::nats_client::client_tls(&login.ca_pem).expect("CA PEM");
    let (login_, passwords) = (login.clone(), passwords.clone());
    let (member, counters) = (member.clone(), counters.clone());
    async_nats::ConnectOptions::with_auth_callback(move |_nonce| {
        let password = passwords.current(&login_);
        let user = login_.user.clone();
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
    .connection_timeout(Duration::from_secs(5))
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

/// Client `i`'s work until stopped.
async fn work(
    client: async_nats::Client,
    i: usize,
    load: Load,
    counters: &Counters,
    stop: &AtomicBool,
) {
    let mut tick = tokio::time::interval(load.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let jetstream = match load.work {
        Work::JetStream => true,
        Work::Echo => false,
        Work::Mixed { jetstream_every } => i.is_multiple_of(jetstream_every.max(1)),
    };
    if jetstream {
        let js = jetstream::new(client);
        let read_back = match load.work {
            Work::JetStream => match js.get_stream(STREAM).await {
                Ok(stream) => Some(stream),
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            },
            _ => None,
        };
        let subject = format!("load.{i}");
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            let sequence = match js.publish(subject.clone(), "payload".into()).await {
                Ok(ack) => ack.await.ok().map(|a| a.sequence),
                Err(_) => None,
            };
            let Some(sequence) = sequence else {
                counters.errors.fetch_add(1, Ordering::SeqCst);
                continue;
            };
            counters.acked.fetch_add(1, Ordering::SeqCst);
            if let Some(stream) = &read_back {
                if stream.get_raw_message(sequence).await.is_ok() {
                    counters.read_back.fetch_add(1, Ordering::SeqCst);
                } else {
                    counters.errors.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    } else {
        // Not under `load.`: the stream would store every echo.
        let subject = format!("echo.{i}");
        let Ok(mut sub) = client.subscribe(subject.clone()).await else {
            counters.errors.fetch_add(1, Ordering::SeqCst);
            return;
        };
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            if client.publish(subject.clone(), "x".into()).await.is_err() {
                counters.errors.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            if let Ok(Some(_)) = tokio::time::timeout(load.period, sub.next()).await {
                counters.received.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// A client that counts its disconnects (and keeps trying to reconnect as it would).
pub struct Watched {
    pub client: async_nats::Client,
    pub disconnects: Arc<AtomicUsize>,
}

pub fn watched(rt: &Runtime, login: &Login) -> Watched {
    let disconnects = Arc::new(AtomicUsize::new(0));
    let client = rt
        .block_on(counting_disconnects(login, &disconnects).connect(login.url()))
        .expect("connect");
    Watched {
        client,
        disconnects,
    }
}

/// The login's options, counting every disconnect the client library reports into `counter`.
pub fn counting_disconnects(
    login: &Login,
    counter: &Arc<AtomicUsize>,
) -> async_nats::ConnectOptions {
    let counter = counter.clone();
    login.options().event_callback(move |event| {
        let counter = counter.clone();
        async move {
            if matches!(event, async_nats::Event::Disconnected) {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
}

/// Polls until `login` can connect over TLS (60 s bound); returns how long that took.
pub fn wait_for_tls(rt: &Runtime, login: &Login) -> Duration {
    let started = Instant::now();
    rt.block_on(async {
        while login.connect().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} could not connect to port {} within 60 s",
                login.user,
                login.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    started.elapsed()
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

/// A client that connects, round-trips and closes, over and over.
pub struct ConnectLoop {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<(Instant, Duration, bool)>>,
}

/// What the connect loop saw.
pub struct Window {
    pub attempts: usize,
    pub failures: usize,
    /// Total time from a first failed attempt to the next successful one.
    pub failed_for: Duration,
    /// The slowest attempt, failed or not: a server that stalls new connections shows here.
    pub slowest: Duration,
}

impl ConnectLoop {
    pub fn start(rt: &Runtime, login: &Login) -> ConnectLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let (login, flag) = (login.clone(), stop.clone());
        let task = rt.spawn(async move {
            let mut attempts = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let at = Instant::now();
                let ok = login.connect().await.is_ok();
                attempts.push((at, at.elapsed(), ok));
                if !ok {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            attempts
        });
        ConnectLoop { stop, task }
    }

    pub fn stop(self, rt: &Runtime) -> Window {
        self.stop.store(true, Ordering::SeqCst);
        let attempts = rt.block_on(self.task).expect("connect loop");
        let stopped = Instant::now();
        let mut failed_for = Duration::ZERO;
        let mut failing_since = None;
        for &(at, _, ok) in &attempts {
            match (ok, failing_since) {
                (false, None) => failing_since = Some(at),
                (true, Some(since)) => {
                    failed_for += at - since;
                    failing_since = None;
                }
                _ => {}
            }
        }
        if let Some(since) = failing_since {
            failed_for += stopped - since;
        }
        Window {
            attempts: attempts.len(),
            failures: attempts.iter().filter(|(_, _, ok)| !ok).count(),
            slowest: attempts
                .iter()
                .map(|(_, took, _)| *took)
                .max()
                .unwrap_or_default(),
            failed_for,
        }
    }
}

/// What a client library told its user, in order: the events lame duck mode is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    LameDuck,
    Disconnected,
    Connected,
}

/// A client of `login` connected to `urls` (the first it reaches), with every lame-duck,
/// disconnect and connect event async-nats reports, in order, with when it came.
pub struct Listening {
    pub client: async_nats::Client,
    pub heard: Arc<Mutex<Vec<(Instant, Heard)>>>,
}

impl Listening {
    pub async fn connect(login: &Login, urls: Vec<async_nats::ServerAddr>) -> Listening {
        let heard: Arc<Mutex<Vec<(Instant, Heard)>>> = Arc::default();
        let log = heard.clone();
        let client = tokio::time::timeout(
            Duration::from_secs(30),
            login
                .options()
                .retry_on_initial_connect()
                .event_callback(move |event| {
                    let log = log.clone();
                    async move {
                        let what = match event {
                            async_nats::Event::LameDuckMode => Heard::LameDuck,
                            async_nats::Event::Disconnected => Heard::Disconnected,
                            async_nats::Event::Connected => Heard::Connected,
                            _ => return,
                        };
                        log.lock().unwrap().push((Instant::now(), what));
                    }
                })
                .connect(urls),
        )
        .await
        .expect("a connect within 30 s")
        .expect("connect");
        tokio::time::timeout(Duration::from_secs(10), client.flush())
            .await
            .expect("a flush within 10 s")
            .expect("flush");
        // The first Connected is the connect itself.
        heard.lock().unwrap().clear();
        Listening { client, heard }
    }

    pub fn heard(&self) -> Vec<(Instant, Heard)> {
        self.heard.lock().unwrap().clone()
    }

    /// Whether the first disconnect was preceded by a lame-duck notice, and how long before.
    pub fn warned_before_disconnect(&self) -> Result<Duration, String> {
        let heard = self.heard();
        let Some((dropped, _)) = heard.iter().find(|(_, h)| *h == Heard::Disconnected) else {
            return Err(format!("never disconnected: {heard:?}"));
        };
        match heard.iter().find(|(_, h)| *h == Heard::LameDuck) {
            Some((warned, _)) if warned <= dropped => Ok(dropped.duration_since(*warned)),
            _ => Err(format!(
                "disconnected without a lame-duck notice first: {heard:?}"
            )),
        }
    }
}

/// What [`publish_throughout`] saw.
#[derive(Debug, Default)]
pub struct Published {
    pub acked: usize,
    /// Each failed publish, with how long it waited.
    pub failed: Vec<String>,
    /// The slowest acked publish, from the publish to its ack.
    pub slowest: Duration,
}

/// Publishes to `subject` (a stream's) every 20 ms, waiting for each ack, until the flag it
/// returns is set; the task ends with what it saw.
pub fn publish_throughout(
    rt: &Runtime,
    js: &jetstream::Context,
    subject: &'static str,
) -> (Arc<AtomicBool>, JoinHandle<Published>) {
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = rt.spawn({
        let (js, stop) = (js.clone(), stop.clone());
        async move {
            let mut seen = Published::default();
            while !stop.load(Ordering::SeqCst) {
                let at = Instant::now();
                let acked = match js.publish(subject, "t".into()).await {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match acked {
                    Ok(()) => {
                        seen.acked += 1;
                        seen.slowest = seen.slowest.max(at.elapsed());
                    }
                    Err(e) => seen.failed.push(format!("{e} (after {:?})", at.elapsed())),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }
    });
    (stop, publisher)
}
