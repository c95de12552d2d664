//! Proof of health beyond `docker logs` (issue 11, 4.8): a server whose log cannot be read back
//! (`logging: {driver: none}`) is started, reloaded and recreated without a rollback, because
//! natsup then checks from its side that it serves the new certificate and takes every login.
//!
//! The log driver is set without touching natsup's files or config: the test sshd sets
//! `COMPOSE_FILE` for its sessions, so Compose (v1 and v2 read it) merges an override file
//! into the deployment's docker-compose.yaml.

use natsup_dev_support as support;

use std::process::Command;

use support::workspace::{Workspace, text};
use support::*;

/// A second tag of the test image, so that `up --image` asks for a new container; removed
/// on Drop.
struct Alias(String);

impl Drop for Alias {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["image", "rm", &self.0])
            .output();
    }
}

fn log_driver(id: &str) -> String {
    let out =
        run(Command::new("docker").args(["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", id]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_server_without_a_readable_log_is_started_reloaded_and_recreated() {
    let overrides = tempfile::tempdir().unwrap();
    let file = overrides.path().join("no-log.yaml");
    std::fs::write(
        &file,
        "version: \"3.5\"\nservices:\n  nats:\n    logging:\n      driver: none\n",
    )
    .unwrap();
    let sshd = Sshd::start_with(&format!(
        "SetEnv COMPOSE_FILE=docker-compose.yaml:{}\n",
        file.display()
    ));

    // Start.
    let ws = Workspace::deployed("unlogged", &sshd);
    let id = ws.project.container_id();
    assert_eq!(log_driver(&id), "none");
    ws.verify(&[]);

    // Reload: a new user.
    ws.edit_config("- name: webhook\n", "- name: webhook\n- name: analytics\n");
    let out = ws.ok(&["up"]);
    assert!(text(&out).contains("reloaded"), "{}", text(&out));
    assert!(!text(&out).contains("rolled back"), "{}", text(&out));
    assert_eq!(
        ws.project.container_id(),
        id,
        "a reload replaced the container"
    );
    assert!(ws.live_conf().contains("analytics"));
    ws.verify(&[]);

    // Recreate: another image name.
    let alias = Alias(format!("natsup-test/nats:{}", unique_name("alias")));
    run(Command::new("docker").args(["tag", &test_image(), &alias.0]));
    let out = ws.ok(&["up", "--image", &alias.0]);
    assert!(text(&out).contains("recreated"), "{}", text(&out));
    let new_id = ws.project.container_id();
    assert_ne!(new_id, id, "the container was not recreated");
    assert_eq!(log_driver(&new_id), "none");
    ws.verify(&[]);

    // Each change was recorded as applied: nothing is left to do.
    let out = ws.ok(&["up", "--image", &alias.0]);
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
}
