//! Bounded remote commands (issue 11, 4.1): a step that never ends on the server, or a command
//! that never answers, ends the run within its bound, names the step, and leaves the server on
//! its old config with no lock held and no container of the run left behind.

use natsup_dev_support as support;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use natsup::remote::{LocalRemote, Remote};
use support::standin::StandInImage;
use support::workspace::{Workspace, text};
use support::*;

/// Runs natsup, killing it (by pid) if it is still running after `limit`.
fn run_within(ws: &Workspace, args: &[&str], limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = ws
        .natsup()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "natsup {args:?} still ran after {limit:?}; killed:\n{}",
                text(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (child.wait_with_output().unwrap(), started.elapsed())
}

#[test]
fn an_image_whose_entrypoint_never_exits_fails_validation_within_its_bound() {
    let hang = StandInImage::build("hang.c");
    let sshd = Sshd::start();
    let ws = Workspace::deployed("boundhang", &sshd);
    let id = ws.project.container_id();
    let started = ws.project.started_at(&id);
    let live_before = ws.live_conf();

    // Validation gets --timeout: 5 s here, and the run a minute at most around it.
    let (out, took) = run_within(
        &ws,
        &["up", "--image", &hang.0, "--timeout", "5"],
        Duration::from_secs(90),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("validating the new configuration"), "{err}");
    assert!(err.contains("did not finish within 5s"), "{err}");
    assert!(err.contains("nothing on the server was changed"), "{err}");
    assert!(took < Duration::from_secs(60), "took {took:?}");

    assert_eq!(
        hang.containers(),
        Vec::<String>::new(),
        "a container was left"
    );
    assert_eq!(ws.project.container_id(), id, "the server was replaced");
    assert_eq!(ws.project.started_at(&id), started, "the server restarted");
    assert_eq!(ws.live_conf(), live_before, "the live config changed");
    let compose = std::fs::read_to_string(ws.remote_dir.join("docker-compose.yaml")).unwrap();
    assert!(!compose.contains("natsup-test/hang"), "{compose}");
    ws.verify(&[]);

    // Nothing holds the server's lock: the next run goes straight through.
    let (out, took) = run_within(&ws, &["up"], Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    assert!(took < Duration::from_secs(30), "waited {took:?} for a lock");
}

#[test]
fn a_remote_command_that_never_answers_ends_at_its_bound_naming_the_step() {
    let rt = support::workspace::runtime();
    let mut remote = LocalRemote::default();
    let started = Instant::now();
    let err = rt
        .block_on(remote.run_within(
            "applying the change",
            "sleep 60",
            &[],
            Duration::from_secs(1),
        ))
        .expect_err("sleep 60 cannot finish within 1 s");
    assert!(started.elapsed() < Duration::from_secs(10));
    let message = err.to_string();
    assert!(message.contains("applying the change"), "{message}");
    assert!(message.contains("did not answer within 1s"), "{message}");
}

/// Issue 17, item 8: a Docker daemon that stops answering (its CLI hangs) ends the run at the
/// scripts' own bound on one Docker call (30 s), naming the call that hung, in the inspection
/// (`docker version`, `docker inspect`) and in the apply script (its `docker version`, run
/// with the hang-up ignored), with nothing written on the server and no lock left held.
#[test]
fn a_docker_that_stops_answering_is_named_and_nothing_is_half_written() {
    use support::docker_wrapper::DockerWrapper;
    let docker = DockerWrapper::new();
    let sshd = docker.sshd();
    let ws = Workspace::deployed("boundstuck", &sshd);
    let id = ws.project.container_id();
    let started = ws.project.started_at(&id);
    let live_before = ws.live_conf();
    // A change, so that `up` gets as far as the apply script.
    ws.edit_config("- name: webhook\n", "- name: webhook\n- name: analytics\n");

    let stuck = |sub: &str, after: u32, step: &str, call: &str| {
        docker.hang(sub, after);
        let (out, took) = run_within(&ws, &["up"], Duration::from_secs(90));
        docker.clear(sub);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains(step), "{call}: {err}");
        assert!(
            err.contains(&format!("`{call}` did not answer within 30s")),
            "{call}: {err}"
        );
        assert!(
            err.contains("Docker on the server is not answering"),
            "{err}"
        );
        assert!(took < Duration::from_secs(60), "{call}: took {took:?}");
        assert_eq!(
            ws.live_conf(),
            live_before,
            "{call}: the live config changed"
        );
        assert!(
            !ws.remote_dir.join(".natsup/staging").exists(),
            "{call}: staging left behind"
        );
        assert_eq!(ws.project.container_ids(), vec![id.clone()], "{call}");
        assert_eq!(ws.project.started_at(&id), started, "{call}: restarted");
    };
    // The inspection's first call; then the apply script's (the inspection made the first).
    stuck("version", 0, "inspecting the server", "docker version");
    stuck("version", 1, "checking Docker", "docker version");
    // The inspection's look at the container.
    stuck("inspect", 0, "inspecting the server", "docker inspect");

    // Docker answers again: the change goes through at once (no lock held, nothing to undo).
    let (out, took) = run_within(&ws, &["up"], Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("reloaded"), "{}", text(&out));
    assert!(took < Duration::from_secs(30), "waited {took:?} for a lock");
    ws.verify(&[]);
}
