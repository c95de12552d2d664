//! The shortest real path: `init` → `up --local` against this machine's Docker → `verify`,
//! then a second `up` that changes nothing.

use natsup_dev_support as support;

use assert_cmd::Command;
use support::*;

#[test]
fn local_bootstrap_then_noop() {
    let work = tempfile::tempdir().unwrap();
    let remote = work.path().join(unique_name("smoke"));
    let _project = ComposeProject::new(&remote);
    let port = free_port();
    let natsup = || {
        let mut cmd = Command::cargo_bin("natsup").unwrap();
        cmd.current_dir(work.path())
            .env("NATSUP_STATE_DIR", work.path().join("state"));
        // Nothing of the caller's NATS_* or NATSUP_* settings (NATSUP_CONFIG would point
        // natsup at another config).
        for var in support::workspace::FOREIGN_ENV {
            cmd.env_remove(var);
        }
        cmd
    };
    natsup()
        .args([
            "init",
            "--name",
            "smoke",
            "--host",
            "127.0.0.1",
            "--bind",
            "127.0.0.1",
        ])
        .args(["--port", &port.to_string(), "--image", &test_image()])
        .arg("--remote-dir")
        .arg(&remote)
        .assert()
        .success();

    let out = natsup().args(["up", "--local"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    assert!(
        stderr.contains("started in") && stderr.contains("(2 remote commands)"),
        "{stderr}"
    );
    assert!(stdout.contains("OK: 15 of 15 checks OK"), "{stdout}");
    let project = ComposeProject::new(&remote);
    let id = project.container_id();
    let started = project.started_at(&id);

    let out = natsup().args(["up", "--local"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("nothing to do") && stderr.contains("(1 remote command)"),
        "{stderr}"
    );
    assert_eq!(project.container_id(), id);
    assert_eq!(
        project.started_at(&id),
        started,
        "a no-op up must not restart the server"
    );

    natsup().arg("verify").args(UNTIMED).assert().success();
}
