//! Clients that keep working while a day-2 operation runs: each publishes to a JetStream
//! stream with acks and reads its own messages back, and every disconnect is counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::workspace::Login;

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

pub struct Crowd {
    pub disconnects: Arc<AtomicUsize>,
    acked: Arc<AtomicU64>,
    read_back: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

pub struct CrowdReport {
    pub disconnects: usize,
    pub acked: u64,
    pub read_back: u64,
    pub errors: u64,
}

impl Crowd {
    /// `count` clients, spread over `logins`, all connected before this returns, each
    /// publishing every 20 ms.
    pub fn start(rt: &Runtime, logins: &[Login], count: usize) -> Crowd {
        Crowd::start_every(rt, logins, count, Duration::from_millis(20))
    }

    /// As [`Crowd::start`], each client publishing every `period`: hundreds of clients at 20 ms
    /// would measure this machine's two cores, not the server.
    pub fn start_every(rt: &Runtime, logins: &[Login], count: usize, period: Duration) -> Crowd {
        let disconnects = Arc::new(AtomicUsize::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        let read_back = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for i in 0..count {
            let login = logins[i % logins.len()].clone();
            let client = rt
                .block_on(counting_disconnects(&login, &disconnects).connect(login.url()))
                .unwrap_or_else(|e| panic!("crowd client {i} ({}): {e}", login.user));
            let (acked, read_back, errors, stop) = (
                acked.clone(),
                read_back.clone(),
                errors.clone(),
                stop.clone(),
            );
            tasks.push(rt.spawn(async move {
                let js = jetstream::new(client);
                let Ok(stream) = js.get_stream(STREAM).await else {
                    errors.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                while !stop.load(Ordering::SeqCst) {
                    let sequence = match js.publish(format!("load.{i}"), "payload".into()).await {
                        Ok(ack) => ack.await.ok().map(|a| a.sequence),
                        Err(_) => None,
                    };
                    match sequence {
                        Some(sequence) => {
                            acked.fetch_add(1, Ordering::SeqCst);
                            if stream.get_raw_message(sequence).await.is_ok() {
                                read_back.fetch_add(1, Ordering::SeqCst);
                            } else {
                                errors.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        None => {
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    tokio::time::sleep(period).await;
                }
            }));
        }
        Crowd {
            disconnects,
            acked,
            read_back,
            errors,
            stop,
            tasks,
        }
    }

    pub fn stop(self, rt: &Runtime) -> CrowdReport {
        let disconnects = self.disconnects.load(Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            rt.block_on(task).expect("crowd task");
        }
        CrowdReport {
            disconnects,
            acked: self.acked.load(Ordering::SeqCst),
            read_back: self.read_back.load(Ordering::SeqCst),
            errors: self.errors.load(Ordering::SeqCst),
        }
    }
}

/// Messages now in the LOAD stream.
pub fn stream_messages(rt: &Runtime, login: &Login) -> u64 {
    rt.block_on(async {
        let js = jetstream::new(login.connect().await.expect("connect"));
        let mut stream = js.get_stream(STREAM).await.expect("LOAD stream");
        stream.info().await.expect("stream info").state.messages
    })
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
fn counting_disconnects(login: &Login, counter: &Arc<AtomicUsize>) -> async_nats::ConnectOptions {
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
