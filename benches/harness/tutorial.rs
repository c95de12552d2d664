//! The baseline: ../shared/TUTORIAL.md's manual steps, run by `tutorial.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::SshEndpoint;
use crate::support::{ComposeProject, free_port, unique_name};

pub struct TutorialDeployment {
    work: tempfile::TempDir,
    pub remote_dir: PathBuf,
    pub port: u16,
    pub project: ComposeProject,
    /// Passwords are `<prefix>-<user>` (the tutorial uses the user name; any fixed string is
    /// the same work).
    prefix: String,
    gameserver_rotated: bool,
    webhook_rotated: bool,
    env: Vec<(String, String)>,
}

impl TutorialDeployment {
    pub fn new(ssh: &SshEndpoint, image: &str) -> TutorialDeployment {
        let work = tempfile::tempdir().expect("tempdir");
        let remote_dir = work.path().join("server").join(unique_name("tutorial"));
        std::fs::create_dir_all(remote_dir.parent().unwrap()).expect("server dir");
        let port = free_port();
        let prefix = unique_name("pw");
        let env = vec![
            (
                "WORK".into(),
                work.path().join("local").display().to_string(),
            ),
            ("SSH_DEST".into(), format!("{}@127.0.0.1", ssh.user)),
            ("SSH_PORT".into(), ssh.port.to_string()),
            ("SSH_KEY".into(), ssh.identity.display().to_string()),
            ("KNOWN_HOSTS".into(), ssh.known_hosts.display().to_string()),
            ("REMOTE_DIR".into(), remote_dir.display().to_string()),
            ("IMAGE".into(), image.to_string()),
            ("PORT".into(), port.to_string()),
            ("PASSWORD_PREFIX".into(), prefix.clone()),
        ];
        TutorialDeployment {
            project: ComposeProject::new(&remote_dir),
            work,
            remote_dir,
            port,
            prefix,
            gameserver_rotated: false,
            webhook_rotated: false,
            env,
        }
    }

    /// Runs one step of the script and returns its wall time.
    pub fn step(&mut self, step: &str) -> Duration {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/harness/tutorial.sh");
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(script)
            .arg(step)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run tutorial.sh");
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "tutorial.sh {step} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match step {
            "rotate-password" => self.gameserver_rotated = true,
            "rotate-webhook-password" => self.webhook_rotated = true,
            _ => {}
        }
        took
    }

    /// The image the next `bootstrap` or `upgrade` step writes into docker-compose.yaml.
    pub fn set_image(&mut self, image: &str) {
        for (key, value) in &mut self.env {
            if key == "IMAGE" {
                *value = image.to_string();
            }
        }
    }

    pub fn password(&self, user: &str) -> String {
        self.passwords().get(user)
    }

    /// The passwords as they are now, detached from the deployment (which a step borrows).
    pub fn passwords(&self) -> Passwords {
        Passwords {
            prefix: self.prefix.clone(),
            gameserver_rotated: self.gameserver_rotated,
            webhook_rotated: self.webhook_rotated,
        }
    }

    /// mkcert's CA, which clients trust.
    pub fn ca_pem(&self) -> String {
        let path = self.work.path().join("local/mkcert/rootCA.pem");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }
}

/// The tutorial's passwords: `<prefix>-<user>`, gameserver's and webhook's with `-2` once
/// rotated.
#[derive(Clone)]
pub struct Passwords {
    prefix: String,
    pub gameserver_rotated: bool,
    pub webhook_rotated: bool,
}

impl Passwords {
    pub fn get(&self, user: &str) -> String {
        match user {
            "analytics" => "analytics".to_string(),
            "gameserver" if self.gameserver_rotated => format!("{}-gameserver-2", self.prefix),
            "webhook" if self.webhook_rotated => format!("{}-webhook-2", self.prefix),
            _ => format!("{}-{user}", self.prefix),
        }
    }
}
