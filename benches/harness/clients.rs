//! NATS clients that watch an operation from the outside: a crowd of connected clients that
//! counts its disconnects, and a client that connects in a tight loop to find the window in
//! which new connections fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// Where a client dials and what it trusts.
#[derive(Clone)]
pub struct Server {
    pub port: u16,
    pub ca_pem: String,
}

impl Server {
    fn options(&self, user: &str, password: &str) -> async_nats::ConnectOptions {
        let tls = natsup::nats_client::client_tls(&self.ca_pem).expect("CA");
        async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
            .require_tls(true)
            .tls_client_config(tls)
        // async-nats' default connection timeout (5 s), as a gameserver would have.
    }

    pub fn url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port)
    }

    /// One connection: connect, one round trip to the server, close.
    async fn connect_once(&self, user: &str, password: &str) -> bool {
        self.try_connect(user, password).await.is_ok()
    }

    async fn try_connect(&self, user: &str, password: &str) -> Result<(), String> {
        let client = self
            .options(user, password)
            .connect(self.url())
            .await
            .map_err(|e| e.to_string())?;
        client.flush().await.map_err(|e| e.to_string())
    }
}

/// Polls until `user` can connect over TLS; returns how long that took.
pub fn wait_for_tls(rt: &Runtime, server: &Server, user: &str, password: &str) -> Duration {
    let started = Instant::now();
    rt.block_on(async {
        while !server.connect_once(user, password).await {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{user} could not connect to port {} within 60 s",
                server.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    started.elapsed()
}

/// `count` connected clients, each publishing to its own subject every 20 ms and receiving
/// it back, counting every disconnect the client library reports.
pub struct Crowd {
    disconnects: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Crowd {
    pub fn start(
        rt: &Runtime,
        server: &Server,
        logins: &[(String, String)],
        count: usize,
    ) -> Crowd {
        let disconnects = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for i in 0..count {
            let (user, password) = &logins[i % logins.len()];
            let counter = disconnects.clone();
            let options = server.options(user, password).event_callback(move |event| {
                let counter = counter.clone();
                async move {
                    if matches!(event, async_nats::Event::Disconnected) {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
            let client = rt
                .block_on(options.connect(server.url()))
                .unwrap_or_else(|e| panic!("crowd client {i} ({user}) cannot connect: {e}"));
            clients.push(client);
        }
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                let stop = stop.clone();
                let received = received.clone();
                rt.spawn(async move {
                    let subject = format!("bench.crowd.{i}");
                    let Ok(mut sub) = client.subscribe(subject.clone()).await else {
                        return;
                    };
                    while !stop.load(Ordering::SeqCst) {
                        let _ = client.publish(subject.clone(), "x".into()).await;
                        if let Ok(Some(_)) =
                            tokio::time::timeout(Duration::from_millis(20), futures_next(&mut sub))
                                .await
                        {
                            received.fetch_add(1, Ordering::SeqCst);
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        Crowd {
            disconnects,
            received,
            stop,
            tasks,
        }
    }

    /// Stops the clients; returns (disconnects, messages received back).
    pub fn stop(self, rt: &Runtime) -> (usize, usize) {
        // Read before the clients go away: closing is not a disconnect we caused.
        let disconnects = self.disconnects.load(Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            let _ = rt.block_on(task);
        }
        (disconnects, self.received.load(Ordering::SeqCst))
    }
}

async fn futures_next(sub: &mut async_nats::Subscriber) -> Option<async_nats::Message> {
    use futures_util::StreamExt;
    sub.next().await
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
    pub fn start(rt: &Runtime, server: &Server, user: &str, password: &str) -> ConnectLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let (server, user, password) = (server.clone(), user.to_string(), password.to_string());
        let flag = stop.clone();
        let task = rt.spawn(async move {
            let mut attempts = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let at = Instant::now();
                let result = server.try_connect(&user, &password).await;
                attempts.push((at, at.elapsed(), result.is_ok()));
                let ok = result.is_ok();
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
