//! What the side-by-side benchmarks share: the two ways of running a NATS server that they
//! compare (natsup, and the tutorial's steps as a script). The NATS clients that watch what
//! each way does to the people connected are natsup-dev-support's `load`, shared with the
//! tests.
//!
//! Both deployments go to the same real sshd on 127.0.0.1 and the same Docker engine, so the
//! figures differ only by what each way does.

#![allow(dead_code)] // each benchmark uses its own part of the harness

pub mod natsup;
pub mod tutorial;

use std::time::Duration;

/// Where a deployment's clients dial (127.0.0.1) and what they trust.
#[derive(Clone)]
pub struct Server {
    pub port: u16,
    pub ca_pem: String,
}

impl Server {
    /// A user's login to this server.
    pub fn login(&self, user: &str, password: &str) -> crate::support::workspace::Login {
        crate::support::workspace::Login {
            user: user.to_string(),
            password: password.to_string(),
            ca_pem: self.ca_pem.clone(),
            port: self.port,
        }
    }
}

/// The median of some durations (the benchmarks run each case a few times, interleaved).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// natsup's figure over the baseline's, as the README quotes it.
pub fn ratio(ours: Duration, theirs: Duration) -> String {
    format!("{:.2}×", ours.as_secs_f64() / theirs.as_secs_f64())
}

/// Where both deployments reach the sshd: directly, or through `delay_proxy.py`, which adds a
/// fixed delay each way to every byte (a distant VPS, where round trips dominate).
pub struct SshEndpoint {
    pub port: u16,
    pub user: String,
    pub identity: std::path::PathBuf,
    pub known_hosts: std::path::PathBuf,
    proxy: Option<std::process::Child>,
    _dir: Option<tempfile::TempDir>,
}

impl SshEndpoint {
    /// The wall time of one bare `ssh HOST true`: a new connection, one command.
    pub fn bare_command(&self) -> Duration {
        let started = std::time::Instant::now();
        crate::support::run(
            std::process::Command::new("ssh")
                .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
                .arg(&self.identity)
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
                .args(["-p", &self.port.to_string(), "-l", &self.user])
                .args(["127.0.0.1", "true"]),
        );
        started.elapsed()
    }

    pub fn direct(sshd: &crate::support::Sshd) -> SshEndpoint {
        SshEndpoint {
            port: sshd.port(),
            user: sshd.user(),
            identity: sshd.identity(),
            known_hosts: sshd.known_hosts(),
            proxy: None,
            _dir: None,
        }
    }

    pub fn delayed(sshd: &crate::support::Sshd, delay_ms: u32) -> SshEndpoint {
        use std::io::BufRead;
        let port = crate::support::free_port();
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/harness/delay_proxy.py");
        let mut proxy = std::process::Command::new("python3")
            .arg(script)
            .args([
                port.to_string(),
                sshd.port().to_string(),
                delay_ms.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start delay_proxy.py");
        let mut ready = String::new();
        std::io::BufReader::new(proxy.stdout.take().unwrap())
            .read_line(&mut ready)
            .expect("delay proxy ready");
        // The same host key, recorded for the proxy's port.
        let dir = tempfile::tempdir().expect("tempdir");
        let known = std::fs::read_to_string(sshd.known_hosts())
            .expect("known_hosts")
            .replace(
                &format!("[127.0.0.1]:{}", sshd.port()),
                &format!("[127.0.0.1]:{port}"),
            );
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, known).expect("write known_hosts");
        SshEndpoint {
            port,
            user: sshd.user(),
            identity: sshd.identity(),
            known_hosts,
            proxy: Some(proxy),
            _dir: Some(dir),
        }
    }

    pub fn destination(&self) -> String {
        format!("ssh://{}@127.0.0.1:{}", self.user, self.port)
    }
}

impl Drop for SshEndpoint {
    fn drop(&mut self) {
        if let Some(mut proxy) = self.proxy.take() {
            let _ = proxy.kill();
            let _ = proxy.wait();
        }
    }
}
