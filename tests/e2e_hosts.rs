//! The host matrix (issue 11): natsup's day-one and day-two commands, through the built binary
//! over the real sshd, against the kinds of server its users have. Each is a real local Unix
//! user: in the docker group, with sudo for docker, with neither, or with BusyBox for shell
//! and tools; on Compose v1 or v2. The server side is this machine's Docker engine.
//!
//! Each test shares one sshd between its cases and runs them one after the other; every user,
//! with its home, sudoers file and containers, is removed when its case ends.

use natsup_dev_support as support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use support::hosts::{Compose, Host, HostUser, Kind};
use support::standin::StandInImage;
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

/// One user's deployment, left running for what a test does next. Fields drop in order: the
/// workspace's SSH masters close first, then the containers go, then the user (userdel).
struct Case {
    ws: Workspace,
    project: ComposeProject,
    user: HostUser,
    /// The deployment folder on the user's account.
    dir: PathBuf,
    /// `KIND+COMPOSE (NAME)`, for assertion messages.
    name: String,
}

/// Bootstrap, no-op, reload, password rotation, certificate renewal and verify, as `user`.
/// `remote_dir` None leaves it unset in natsup.yaml: the deployment must land in
/// `~/nats-bits`.
fn day_one_and_two(host: &Host, kind: Kind, compose: Compose, remote_dir: Option<&str>) -> Case {
    let user = host.user(kind, compose);
    let case = format!("{kind:?}+{compose:?} ({})", user.name);
    // Dropped before the user: its SSH masters close before userdel.
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

    verify_ok(&ws, &case);
    Case {
        ws,
        project,
        user,
        dir,
        name: case,
    }
}

/// `natsup verify`, which must say OK.
fn verify_ok(ws: &Workspace, case: &str) {
    let out = ok(ws, &untimed(&["verify"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("OK:"),
        "{case}:\n{}",
        text(&out)
    );
}

/// 25 messages into a file-backed stream KEEP, as matchmaker.
fn write_stream(ws: &Workspace) {
    runtime().block_on(async {
        let client = ws.login("matchmaker").connect().await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "KEEP".into(),
            subjects: vec!["keep.>".into()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
        for i in 0..25 {
            js.publish(format!("keep.{i}"), "kept".into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });
}

/// How many messages stream KEEP holds, as matchmaker.
fn stream_messages(ws: &Workspace) -> u64 {
    runtime().block_on(async {
        let client = ws.login("matchmaker").connect().await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream("KEEP").await.unwrap();
        stream.info().await.unwrap().state.messages
    })
}

/// A change only a new container makes: JetStream limits cannot be reloaded on 2.10, so
/// raising `max_memory_store` plans a recreate.
fn raise_max_memory_store(ws: &Workspace, case: &str) {
    ws.edit_config("max_memory_store: 104857600", "max_memory_store: 209715200");
    let out = ok(ws, &["plan"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("action: recreate"),
        "{case}:\n{}",
        text(&out)
    );
}

/// After [`day_one_and_two`], on the same deployment: a recreate that keeps JetStream messages,
/// a rollback from an image whose nats-server passes `-t` and then exits, and a CA rotation.
fn recreate_rollback_and_ca_rotation(case: &Case, crashy: &StandInImage) {
    let Case {
        ws,
        project,
        user,
        dir,
        name: case,
    } = case;
    let rt = runtime();

    // Recreate: a new container, by the same Compose, with the stream's messages.
    write_stream(ws);
    let id = project.container_id();
    let started = project.started_at(&id);
    raise_max_memory_store(ws, case);
    let out = ok(ws, &["up"]);
    assert!(text(&out).contains("recreated"), "{case}:\n{}", text(&out));
    let id = project.container_id();
    assert_ne!(
        project.started_at(&id),
        started,
        "{case}: the container was not recreated"
    );
    let version = compose_version(&id);
    assert!(
        version.starts_with(user.compose.label_major()),
        "{case}: the recreate was made by Compose {version:?}"
    );
    assert_eq!(
        stream_messages(ws),
        25,
        "{case}: JetStream messages were lost in the recreate"
    );

    // Rollback: the new image starts and exits; the last good container comes back.
    let out = natsup(ws, &["up", "--image", &crashy.0, "--timeout", "10"]);
    assert_eq!(out.status.code(), Some(1), "{case}:\n{}", text(&out));
    assert!(
        text(&out).contains("rolled back"),
        "{case}:\n{}",
        text(&out)
    );
    let back = project.container_id();
    let image = run(Command::new("docker").args(["inspect", "-f", "{{.Config.Image}}", &back]));
    assert_eq!(
        String::from_utf8_lossy(&image.stdout).trim(),
        test_image(),
        "{case}: the rollback did not bring the last good image back"
    );
    assert!(
        crashy.containers().is_empty(),
        "{case}: a container of the crashing image was left"
    );
    let compose = std::fs::read_to_string(dir.join("docker-compose.yaml")).unwrap();
    assert!(!compose.contains(&crashy.0), "{case}: {compose}");
    assert_eq!(
        stream_messages(ws),
        25,
        "{case}: the rollback lost messages"
    );
    let out = ok(ws, &["up"]);
    assert!(
        text(&out).contains("nothing to do"),
        "{case}: after the rollback:\n{}",
        text(&out)
    );

    // CA rotation: bundle clients connect through it; then only the new CA is trusted.
    let started = project.started_at(&back);
    let old_ca = ws.login("matchmaker").ca_pem;
    ok(ws, &["rotate-ca", "--begin"]);
    let bundle = ws.login("matchmaker");
    assert_eq!(natsup::pki::pem_blocks(&bundle.ca_pem).len(), 2, "{case}");
    let client = rt
        .block_on(bundle.connect())
        .unwrap_or_else(|e| panic!("{case}: the bundle does not connect: {e}"));
    let out = ok(ws, &["rotate-ca", "--finish"]);
    assert!(
        text(&out).contains("old CA is retired"),
        "{case}:\n{}",
        text(&out)
    );
    rt.block_on(client.flush())
        .unwrap_or_else(|e| panic!("{case}: the bundle client was cut off: {e}"));
    let new = ws.login("matchmaker");
    assert_ne!(new.ca_pem, old_ca, "{case}");
    rt.block_on(new.connect())
        .unwrap_or_else(|e| panic!("{case}: the new CA does not connect: {e}"));
    assert!(
        rt.block_on(new.trusting(&old_ca).connect()).is_err(),
        "{case}: a client trusting only the old CA was accepted"
    );
    assert_eq!(
        project.started_at(&back),
        started,
        "{case}: the CA rotation restarted the server"
    );
    verify_ok(ws, case);
}

#[test]
fn docker_group_user_on_compose_v2_and_sudo_user_on_compose_v1() {
    let host = Host::start();
    let crashy = StandInImage::build("crashy.c");
    let case = day_one_and_two(&host, Kind::DockerGroup, Compose::V2, None);
    recreate_rollback_and_ca_rotation(&case, &crashy);
    drop(case);
    let case = day_one_and_two(&host, Kind::Sudo, Compose::V1, Some("nats-sudo"));
    recreate_rollback_and_ca_rotation(&case, &crashy);
}

#[test]
fn busybox_host_on_compose_v2_and_docker_group_user_on_compose_v1() {
    let host = Host::start();
    drop(day_one_and_two(
        &host,
        Kind::BusyBox,
        Compose::V2,
        Some("nats-busybox"),
    ));
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

/// Issue 11, 4.7: two users on one host, each deploying to the default `~/nats-bits`. Compose
/// named both projects `nats-bits`, and the second `up` replaced the first user's server; each
/// deployment now has a project of its own, and both keep running.
#[test]
fn two_users_deploying_to_the_default_nats_bits_both_keep_running() {
    let host = Host::start();
    let first = host.user(Kind::DockerGroup, Compose::V1);
    let second = host.user(Kind::DockerGroup, Compose::V1);
    let (ws1, ws2) = (Workspace::new("hostsfirst"), Workspace::new("hostssecond"));
    init(&ws1, "bits", &host, &first, None);
    init(&ws2, "bits", &host, &second, None);
    let dir = |user: &HostUser| user.home.join(natsup::config::DEFAULT_REMOTE_DIR);
    let (project1, project2) = (
        ComposeProject::new(&dir(&first)),
        ComposeProject::new(&dir(&second)),
    );

    ok(&ws1, &["up"]);
    let id1 = project1.container_id();
    let started1 = project1.started_at(&id1);
    let out = ok(&ws2, &["up"]);
    assert!(text(&out).contains("started in"), "{}", text(&out));
    let id2 = project2.container_id();

    assert_ne!(id1, id2);
    assert_eq!(
        project1.container_ids(),
        vec![id1.clone()],
        "the second user's up replaced the first one's server"
    );
    assert_eq!(
        project1.started_at(&id1),
        started1,
        "the first server restarted"
    );
    assert_ne!(
        support::compose_project_of(&id1),
        support::compose_project_of(&id2)
    );
    let rt = runtime();
    for ws in [&ws1, &ws2] {
        rt.block_on(ws.login("gameserver").connect())
            .expect("both servers serve their users");
        let out = ok(ws, &["up"]);
        assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    }
    assert_eq!(project1.started_at(&id1), started1);
}

/// Issue 11, 4.7: a remote_dir reached through a symlink finds its own container. Compose v1
/// labels a container with the folder's physical path, which the path through the link is not;
/// v2 labels it with the path it was run from.
#[test]
fn a_remote_dir_reached_through_a_symlink_finds_its_own_container() {
    let host = Host::start();
    through_a_symlink(&host, Compose::V1);
    through_a_symlink(&host, Compose::V2);
}

fn through_a_symlink(host: &Host, compose: Compose) {
    let user = host.user(Kind::DockerGroup, compose);
    let ws = Workspace::new("hostslink");
    user.ssh("mkdir nats-real && ln -s nats-real nats-link");
    init(
        &ws,
        &format!("hosts{}", user.name),
        host,
        &user,
        Some("nats-link"),
    );
    let project = ComposeProject::new(&user.home.join("nats-real"));

    let out = ok(&ws, &["up"]);
    assert!(text(&out).contains("started in"), "{}", text(&out));
    let id = project.container_id();
    let started = project.started_at(&id);
    let out = ok(&ws, &["up"]);
    assert!(
        text(&out).contains("nothing to do"),
        "the second up did not find the container:\n{}",
        text(&out)
    );
    ws.edit_config("- name: webhook\n", "- name: webhook\n- name: analytics\n");
    let out = ok(&ws, &["up"]);
    assert!(text(&out).contains("reloaded"), "{}", text(&out));
    assert_eq!(project.container_ids(), vec![id.clone()]);
    assert_eq!(project.started_at(&id), started);
}

/// Issue 11, 4.7: a Compose project natsup did not make, in the folder natsup is told to use,
/// is refused before anything changes: its file and its container stay as they were.
#[test]
fn a_compose_project_natsup_did_not_make_is_refused_and_left_alone() {
    let host = Host::start();
    let user = host.user(Kind::DockerGroup, Compose::V1);
    let ws = Workspace::new("hostsforeign");
    let compose = format!(
        "version: \"3.5\"\nservices:\n  nats:\n    image: {}\n",
        test_image()
    );
    user.ssh(&format!(
        "mkdir nats-bits && cd nats-bits && printf '%s' '{compose}' > docker-compose.yaml && \
         docker-compose up -d 2>&1"
    ));
    let dir = user.home.join(natsup::config::DEFAULT_REMOTE_DIR);
    let project = ComposeProject::new(&dir);
    let id = project.container_id();
    let started = project.started_at(&id);
    init(&ws, &format!("hosts{}", user.name), &host, &user, None);

    let out = natsup(&ws, &["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("holds a Compose project natsup did not make")
            && err.contains("docker-compose.yaml")
            && err.contains("containers of project `nats-bits`"),
        "{err}"
    );
    assert!(err.contains("remote_dir"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("docker-compose.yaml")).unwrap(),
        compose
    );
    assert!(!dir.join(".natsup").exists(), "up wrote into the folder");
    assert_eq!(project.container_ids(), vec![id.clone()]);
    assert_eq!(project.started_at(&id), started);
}

/// Issue 11, 4.7: a server natsup started before it named its projects runs under the
/// folder's name. natsup adopts it as it stands (no restart for a no-op or a reload), and moves
/// it to its own project at the next recreate, which restarts it anyway.
#[test]
fn a_container_under_the_folders_project_name_is_adopted_without_a_restart() {
    let host = Host::start();
    let user = host.user(Kind::DockerGroup, Compose::V1);
    let ws = Workspace::new("hostsadopt");
    init(
        &ws,
        &format!("hosts{}", user.name),
        &host,
        &user,
        Some("nats-old"),
    );
    let dir = user.home.join("nats-old");
    let project = ComposeProject::new(&dir);
    ok(&ws, &["up"]);
    let own = support::compose_project_of(&project.container_id());
    // What natsup before did: `up -d` in the folder, so Compose named the project after it.
    run(Command::new("docker").args(["rm", "-f", &project.container_id()]));
    user.ssh("cd nats-old && docker-compose up -d 2>&1");
    let id = project.container_id();
    assert_eq!(support::compose_project_of(&id), "nats-old");
    let started = project.started_at(&id);

    let out = ok(&ws, &["up"]);
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    ws.edit_config("- name: webhook\n", "- name: webhook\n- name: analytics\n");
    let out = ok(&ws, &["up"]);
    assert!(text(&out).contains("reloaded"), "{}", text(&out));
    assert_eq!(project.container_ids(), vec![id.clone()]);
    assert_eq!(
        project.started_at(&id),
        started,
        "the adopted server restarted"
    );
    let rt = runtime();
    rt.block_on(ws.login("analytics").connect())
        .expect("the adopted server reloaded");

    ws.edit_config("max_memory_store: 104857600", "max_memory_store: 209715200");
    let out = ok(&ws, &["up"]);
    assert!(text(&out).contains("recreated"), "{}", text(&out));
    let moved = project.container_id();
    assert_eq!(
        support::compose_project_of(&moved),
        own,
        "the recreate kept the folder's name"
    );
    rt.block_on(ws.login("analytics").connect())
        .expect("the server runs under its own project");
    let out = ok(&ws, &["up"]);
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
}

/// Issue 11, section 1: a deployment made by one Compose, whose user then has the other (the
/// v2 plugin installed on a v1 host, or removed from a v2 one), is adopted as it stands: the
/// next `up` is a no-op and a reload keeps the server's start time; the next recreate is made
/// by the Compose the user has now, and leaves one container.
fn taken_over(host: &Host, from: Compose, to: Compose) {
    let mut user = host.user(Kind::DockerGroup, from);
    let case = format!("{from:?} then {to:?} ({})", user.name);
    // Dropped before the user: its SSH masters close before userdel.
    let ws = Workspace::new("hostsswitch");
    init(
        &ws,
        &format!("hosts{}", user.name),
        host,
        &user,
        Some("nats-switch"),
    );
    let project = ComposeProject::new(&user.home.join("nats-switch"));
    let out = ok(&ws, &["up"]);
    assert!(text(&out).contains("started in"), "{case}:\n{}", text(&out));
    let id = project.container_id();
    let started = project.started_at(&id);
    assert!(
        compose_version(&id).starts_with(from.label_major()),
        "{case}"
    );
    write_stream(&ws);

    match to {
        Compose::V2 => user.switch_to_compose_v2(),
        Compose::V1 => user.switch_to_compose_v1(),
    }
    let has = user.ssh("docker compose version >/dev/null 2>&1 && echo V2 || echo V1");
    assert_eq!(has, format!("{to:?}"), "{case}: the switch did not take");

    let out = ok(&ws, &["up"]);
    assert!(
        text(&out).contains("nothing to do"),
        "{case}: the first up after the switch:\n{}",
        text(&out)
    );
    assert_eq!(project.container_ids(), vec![id.clone()], "{case}");
    assert_eq!(
        project.started_at(&id),
        started,
        "{case}: the first up after the switch restarted the server"
    );

    ws.edit_config("- name: webhook\n", "- name: webhook\n- name: analytics\n");
    let out = ok(&ws, &["up"]);
    assert!(text(&out).contains("reloaded"), "{case}:\n{}", text(&out));
    assert_eq!(project.container_ids(), vec![id.clone()], "{case}");
    assert_eq!(
        project.started_at(&id),
        started,
        "{case}: the reload after the switch restarted the server"
    );
    runtime()
        .block_on(ws.login("analytics").connect())
        .unwrap_or_else(|e| panic!("{case}: the reload did not take: {e}"));

    raise_max_memory_store(&ws, &case);
    let out = ok(&ws, &["up"]);
    assert!(text(&out).contains("recreated"), "{case}:\n{}", text(&out));
    let ids = project.container_ids();
    assert_eq!(ids.len(), 1, "{case}: after the recreate: {ids:?}");
    assert_ne!(ids[0], id, "{case}: the container was not recreated");
    let version = compose_version(&ids[0]);
    assert!(
        version.starts_with(to.label_major()),
        "{case}: the recreate was made by Compose {version:?}"
    );
    assert_eq!(
        stream_messages(&ws),
        25,
        "{case}: JetStream messages were lost when the other Compose recreated"
    );
    let out = ok(&ws, &["up"]);
    assert!(
        text(&out).contains("nothing to do"),
        "{case}:\n{}",
        text(&out)
    );
}

#[test]
fn a_compose_v1_deployment_is_adopted_by_compose_v2() {
    let host = Host::start();
    taken_over(&host, Compose::V1, Compose::V2);
}

#[test]
fn a_compose_v2_deployment_is_adopted_by_compose_v1() {
    let host = Host::start();
    taken_over(&host, Compose::V2, Compose::V1);
}
