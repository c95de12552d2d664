//! The host matrix (issue 11): natsup's day-one and day-two commands, through the built binary
//! over the real sshd, against the kinds of server its users have. Each is a real local Unix
//! user: in the docker group, with sudo for docker, with neither, or with BusyBox for shell
//! and tools; on Compose v1 or v2. The server side is this machine's Docker engine.
//!
//! Each test shares one sshd between its cases and runs them one after the other; every user,
//! with its home, sudoers file and containers, is removed when its case ends.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use support::hosts::{Compose, Host, HostUser, Kind};
use support::workspace::{Workspace, runtime, text};
use support::*;

/// The longest one natsup command may take here (a bootstrap pulls nothing, but it waits for
/// the server to be ready, and two cores are shared with the rest of the suite).
const COMMAND_BOUND: Duration = Duration::from_secs(120);

/// `natsup ARGS` in `ws`, killed if it outlasts [`COMMAND_BOUND`].
fn natsup(ws: &Workspace, args: &[&str]) -> Output {
    assert_cmd::Command::from_std(ws.natsup())
        .args(args)
        .timeout(COMMAND_BOUND)
        .output()
        .expect("run natsup")
}

/// `natsup ARGS`, which must succeed.
fn ok(ws: &Workspace, args: &[&str]) -> Output {
    let out = natsup(ws, args);
    assert!(
        out.status.success(),
        "natsup {args:?} failed ({}):\n{}",
        out.status,
        text(&out)
    );
    out
}

/// A natsup.yaml for a deployment on `user`'s account; with `remote_dir` None, the file has no
/// `remote_dir` and natsup's default applies.
fn init(ws: &Workspace, name: &str, host: &Host, user: &HostUser, remote_dir: Option<&str>) {
    let mut args = ws.init_args(name);
    let at = args
        .iter()
        .position(|a| a == "--remote-dir")
        .expect("init_args sets --remote-dir");
    args.drain(at..at + 2);
    args.extend([
        "--ssh".to_string(),
        user.destination(),
        "--identity".to_string(),
        host.sshd.identity().display().to_string(),
        "--known-hosts".to_string(),
        host.sshd.known_hosts().display().to_string(),
    ]);
    if let Some(dir) = remote_dir {
        args.extend(["--remote-dir".to_string(), dir.to_string()]);
    }
    ok(ws, &args.iter().map(String::as_str).collect::<Vec<_>>());
    if remote_dir.is_none() {
        let default = format!("remote_dir: {}\n", natsup::config::DEFAULT_REMOTE_DIR);
        ws.edit_config(&default, "");
        assert!(!ws.config().contains("remote_dir"), "{}", ws.config());
    }
}

fn compose_version(id: &str) -> String {
    let out = run(Command::new("docker").args([
        "inspect",
        "-f",
        "{{index .Config.Labels \"com.docker.compose.version\"}}",
        id,
    ]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Bootstrap, no-op, reload, password rotation, certificate renewal and verify, as `user`.
/// `remote_dir` None leaves it unset in natsup.yaml: the deployment must land in
/// `~/nats-bits`. (Only one case in the suite may use that default at a time: Compose names
/// the project after the folder, so two `nats-bits` would be one project.)
fn day_one_and_two(host: &Host, kind: Kind, compose: Compose, remote_dir: Option<&str>) {
    let user = host.user(kind, compose);
    let case = format!("{kind:?}+{compose:?} ({})", user.name);
    // Declared after the user, so dropped first: its SSH masters close before userdel.
    let ws = Workspace::new("hosts");
    if kind == Kind::BusyBox {
        // What natsup's scripts meet: BusyBox's sh (natsup runs them with `sh -c`) and tools.
        let seen = user.ssh(
            "sh -c 'readlink /proc/$$/exe'; echo \"$PATH\"; \
             sha256sum --help 2>&1 | head -n 1; tar --help 2>&1 | head -n 1",
        );
        let lines: Vec<&str> = seen.lines().collect();
        assert!(
            lines.len() == 4
                && lines[0].ends_with("/busybox")
                && lines[1].starts_with(&host.busybox_dir().display().to_string())
                && lines[2..].iter().all(|l| l.starts_with("BusyBox")),
            "{case}: the session does not run BusyBox's sh and tools:\n{seen}"
        );
    }
    let name = format!("hosts{}", user.name);
    init(&ws, &name, host, &user, remote_dir);
    let dir: PathBuf = user
        .home
        .join(remote_dir.unwrap_or(natsup::config::DEFAULT_REMOTE_DIR));
    let project = ComposeProject::new(&dir);

    let out = ok(&ws, &["up"]);
    assert!(text(&out).contains("started in"), "{case}:\n{}", text(&out));
    assert!(
        dir.join("docker-compose.yaml").is_file(),
        "{case}: the deployment is not in {}",
        dir.display()
    );
    let id = project.container_id();
    let started = project.started_at(&id);
    let version = compose_version(&id);
    assert!(
        version.starts_with(compose.label_major()),
        "{case}: the container was made by Compose {version:?}"
    );

    let out = ok(&ws, &["up"]);
    assert!(
        text(&out).contains("nothing to do"),
        "{case}:\n{}",
        text(&out)
    );
    assert_eq!(
        project.started_at(&id),
        started,
        "{case}: a no-op up restarted the server"
    );

    ws.edit_config(
        "- name: webhook\n",
        "- name: webhook\n- name: analytics\n  permissions:\n    publish:\n      allow:\n      - analytics.>\n",
    );
    let out = ok(&ws, &["up"]);
    assert!(text(&out).contains("reloaded"), "{case}:\n{}", text(&out));
    assert_eq!(project.container_id(), id, "{case}");
    assert_eq!(
        project.started_at(&id),
        started,
        "{case}: a reload restarted"
    );
    let rt = runtime();
    rt.block_on(ws.login("analytics").connect())
        .unwrap_or_else(|e| panic!("{case}: the new user cannot log in: {e}"));

    let before = ws.login("gameserver").password;
    let out = ok(&ws, &["rotate-passwords", "--user", "gameserver"]);
    assert!(
        text(&out).contains("rotated: gameserver"),
        "{case}:\n{}",
        text(&out)
    );
    let after = ws.login("gameserver");
    assert_ne!(
        after.password, before,
        "{case}: the password did not change"
    );
    rt.block_on(after.connect())
        .unwrap_or_else(|e| panic!("{case}: the rotated password does not work: {e}"));

    ok(&ws, &["renew-cert", "--force"]);
    assert_eq!(
        project.started_at(&id),
        started,
        "{case}: a renewal restarted"
    );

    let out = ok(&ws, &untimed(&["verify"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("OK:"),
        "{case}:\n{}",
        text(&out)
    );
}

#[test]
fn docker_group_user_on_compose_v2_and_sudo_user_on_compose_v1() {
    let host = Host::start();
    day_one_and_two(&host, Kind::DockerGroup, Compose::V2, None);
    day_one_and_two(&host, Kind::Sudo, Compose::V1, Some("nats-sudo"));
}

#[test]
fn busybox_host_on_compose_v2_and_docker_group_user_on_compose_v1() {
    let host = Host::start();
    day_one_and_two(&host, Kind::BusyBox, Compose::V2, Some("nats-busybox"));
    day_one_and_two(&host, Kind::DockerGroup, Compose::V1, Some("nats-group"));
}

#[test]
fn a_user_with_neither_the_docker_group_nor_sudo_is_told_how_and_nothing_is_made() {
    let host = Host::start();
    let user = host.user(Kind::Neither, Compose::V1);
    let ws = Workspace::new("hostsneither");
    init(&ws, &format!("hosts{}", user.name), &host, &user, None);

    let out = natsup(&ws, &["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot use docker"), "{err}");
    assert!(err.contains("docker group"), "{err}");
    assert!(err.contains("sudo"), "{err}");
    assert!(
        !user.home.join(natsup::config::DEFAULT_REMOTE_DIR).exists(),
        "up made the deployment folder for a user who cannot run it"
    );
    assert!(user.container_ids().is_empty(), "up made a container");
}

/// `mode & 0o777` and owner uid of `path`.
fn mode_and_owner(path: &std::path::Path) -> (u32, u32) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.permissions().mode() & 0o777, meta.uid())
}

/// Issue 11, 4.6: on the server, the config (it holds the hashes) and the key are readable by
/// the deploy user only, and nats-server, root in its container, still starts and reloads on
/// them. The user is a non-root member of the docker group.
#[test]
fn the_config_and_key_on_the_server_are_readable_by_the_deploy_user_only() {
    let host = Host::start();
    let user = host.user(Kind::DockerGroup, Compose::V1);
    let ws = Workspace::new("hostsmodes");
    init(
        &ws,
        &format!("hosts{}", user.name),
        &host,
        &user,
        Some("nats-modes"),
    );
    let dir = user.home.join("nats-modes");
    let _project = ComposeProject::new(&dir);
    let uid: u32 = user.ssh("id -u").parse().expect("a uid");

    let check = |when: &str| {
        let config = dir.join("nats-config");
        let mut private = vec![
            config.join("nats-server.conf"),
            dir.join(".natsup/applied/nats-server.conf"),
        ];
        let keys: Vec<PathBuf> = std::fs::read_dir(&config)
            .expect("read nats-config")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().contains("key"))
            .collect();
        assert_eq!(keys.len(), 1, "{when}: {keys:?}");
        private.extend(keys);
        for path in &private {
            let (mode, owner) = mode_and_owner(path);
            assert_eq!(
                (mode & 0o077, owner),
                (0, uid),
                "{when}: {} is {mode:o}, owned by {owner}",
                path.display()
            );
        }
    };

    let out = ok(&ws, &["up"]);
    assert!(text(&out).contains("started in"), "{}", text(&out));
    check("after the first up");
    let rt = runtime();
    rt.block_on(ws.login("gameserver").connect())
        .expect("the server runs on its private files");

    ws.edit_config("- name: webhook\n", "- name: webhook\n- name: analytics\n");
    let out = ok(&ws, &["up"]);
    assert!(text(&out).contains("reloaded"), "{}", text(&out));
    check("after a reload");
    rt.block_on(ws.login("analytics").connect())
        .expect("the reload read the private config");
}
