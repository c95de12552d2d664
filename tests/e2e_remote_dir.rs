//! What pre-flight refuses on the server before natsup writes anything there (issue 17):
//! a deployment folder another user could change (item 6), and a route port something else
//! holds (item 9). Each refusal names what to fix, and leaves the folder as it was.

use natsup_dev_support as support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use support::docker_wrapper::DockerWrapper;
use support::workspace::{Workspace, text};
use support::*;

/// A uid no account has: "another user" of the server, with no account to make and remove.
const STRANGER: u32 = 64_321;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), None).unwrap();
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `up` fails in pre-flight, or in the apply script's own check (`step`), with an error that
/// names `path` and says `what`; stderr returned for more checks.
fn refused(ws: &Workspace, step: &str, path: &Path, what: &[&str]) -> String {
    let out = ws.run(&["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains(step), "{err}");
    assert!(err.contains(&format!("{} ", path.display())), "{err}");
    for w in what {
        assert!(err.contains(w), "no {w:?} in:\n{err}");
    }
    err
}

/// Issue 17, item 6: a deployment folder another user of the server could write, or reach
/// through a folder they could write, or own, is refused before any upload, with the path,
/// its owner and mode, and the command that fixes it; a sticky world-writable parent (like
/// /tmp) is fine when the folder itself is the SSH user's, and natsup makes it private.
#[test]
fn a_remote_dir_other_users_can_change_is_refused_before_any_upload() {
    let sshd = Sshd::start();
    let ws = Workspace::new("unsafedir");
    ws.init_ssh("unsafedir", &sshd);
    let dir = ws.remote_dir.clone();
    let parent = dir.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();

    // The folder itself is group-writable.
    chmod(&parent, 0o755);
    chmod(&dir, 0o775);
    let err = refused(
        &ws,
        "pre-flight check",
        &dir,
        &[
            "is writable by other users (owner root (uid 0), mode 775)",
            &format!("`chmod go-w '{}'`", dir.display()),
        ],
    );
    assert!(err.contains("remote_dir"), "{err}");
    assert_eq!(
        listing(&dir),
        Vec::<String>::new(),
        "up wrote into the folder"
    );

    // A folder on the way is world-writable, without the sticky bit: whoever can write it can
    // rename the deployment folder away and put their own in its place.
    chmod(&dir, 0o700);
    chmod(&parent, 0o777);
    refused(
        &ws,
        "pre-flight check",
        &parent,
        &["is writable by other users (owner root (uid 0), mode 777)"],
    );
    assert_eq!(
        listing(&dir),
        Vec::<String>::new(),
        "up wrote into the folder"
    );

    // Owned by another user.
    chmod(&parent, 0o755);
    chown(&dir, STRANGER);
    refused(
        &ws,
        "pre-flight check",
        &dir,
        &[
            &format!("is owned by another user (owner UNKNOWN (uid {STRANGER}), mode 700)"),
            &format!("`chown root '{}'`", dir.display()),
        ],
    );
    assert_eq!(
        listing(&dir),
        Vec::<String>::new(),
        "up wrote into the folder"
    );

    // Made safe, but a folder in it was left behind by another user: they can still swap
    // the files natsup would write there.
    chown(&dir, 0);
    std::fs::create_dir(dir.join("nats-config")).unwrap();
    chown(&dir.join("nats-config"), STRANGER);
    refused(
        &ws,
        "pre-flight check",
        &dir.join("nats-config"),
        &["is owned by another user"],
    );
    assert_eq!(listing(&dir), ["nats-config"], "up wrote into the folder");
    assert_eq!(listing(&dir.join("nats-config")), Vec::<String>::new());

    // A sticky world-writable parent, as /tmp is: others cannot rename or remove what they do
    // not own in it, so a folder of the SSH user's own there is fine, and natsup makes it
    // readable by that user only.
    std::fs::remove_dir_all(&dir).unwrap();
    chmod(&parent, 0o1777);
    ws.ok(&["up"]);
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid()),
        (0o700, 0),
        "the folder natsup made"
    );
    ws.verify(&[]);
}

/// Issue 17, item 6: the apply script checks the folder again itself, before it unpacks the
/// upload: a folder another user made between natsup's inspection and its upload (here, at
/// the apply script's `docker version`) is refused and nothing is written to it.
#[test]
fn a_remote_dir_another_user_makes_after_the_inspection_is_refused_by_the_apply_script() {
    let docker = DockerWrapper::new();
    let sshd = docker.sshd();
    let ws = Workspace::new("unsafelate");
    ws.init_ssh("unsafelate", &sshd);
    let dir = ws.remote_dir.clone();
    // The inspection calls `docker version` once; the apply script's is the second call.
    docker.hook(
        "version",
        1,
        &format!(
            "mkdir -p '{d}' && chown {STRANGER} '{d}' && chmod 777 '{d}'",
            d = dir.display()
        ),
    );
    let err = refused(
        &ws,
        "checking the deployment folder",
        &dir,
        &[
            "is owned by another user",
            "nothing on the server was changed",
        ],
    );
    assert!(err.contains("`chown root"), "{err}");
    assert_eq!(
        listing(&dir),
        Vec::<String>::new(),
        "up wrote into the folder"
    );
    assert!(
        ws.project.container_ids().is_empty(),
        "a container was made"
    );
}

/// Issue 17, item 9: pre-flight checks a cluster node's route port like its client port. A
/// plain listener on one node's address at the route port is refused before anything is
/// touched on any node, naming the node, the port and the process that holds it. Two nodes
/// on one server (one sshd, one SSH destination), each on its own loopback address, as
/// natsup.yaml must have them: the cheapest cluster there is, and nothing starts. (Both
/// nodes open their SSH connection at once: that once failed one with "No such file or
/// directory", each opening clearing the other's master folder.)
#[test]
fn a_route_port_something_else_holds_is_refused_naming_the_node_and_the_holder() {
    let ws = Workspace::new("routeheld");
    let addrs = ["127.0.0.26", "127.0.0.27"];
    let sshd = Sshd::start();
    let port = free_port_on(&addrs);
    let route = free_port_on_besides(&addrs, &[port]);
    let dirs = [ws.remote_dir.join("n1"), ws.remote_dir.join("n2")];
    // Should a node start after all (a regression), its container is removed with these.
    let _projects = dirs.each_ref().map(|d| ComposeProject::new(d));
    let nodes: String = (0..2)
        .map(|i| {
            format!(
                "- name: n{n}\n  host: {a}\n  ssh: {dest}\n  identity: {id}\n  known_hosts: {kh}\n  bind: {a}\n  remote_dir: {dir}\n",
                n = i + 1,
                a = addrs[i],
                dest = sshd.destination(),
                id = sshd.identity().display(),
                kh = sshd.known_hosts().display(),
                dir = dirs[i].display(),
            )
        })
        .collect();
    ws.set_config(&format!(
        "name: routeheld\nimage: {}\nport: {port}\nnetwork: host\ncluster:\n  port: {route}\nnodes:\n{nodes}",
        test_image()
    ));

    let holder = std::net::TcpListener::bind((addrs[1], route)).unwrap();
    let out = ws.run(&["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("n2"), "{err}");
    assert!(
        err.contains(&format!("the route port {route} is already taken")),
        "{err}"
    );
    assert!(
        err.contains(&format!("(pid {})", std::process::id())),
        "the holder is not named: {err}"
    );
    assert!(err.contains("`cluster.port`"), "{err}");
    assert!(err.contains("nothing was changed on any node"), "{err}");
    for dir in &dirs {
        assert!(!dir.exists(), "up made {}", dir.display());
    }
    drop(holder);
}

/// Issue 17, item 6: the folder check (`check_dir_safe` in common.sh) gives the same answers
/// under BusyBox (its sh, stat, find and id first on PATH, as on a BusyBox host) as under
/// dash with coreutils, for every kind of folder it refuses or accepts.
#[test]
fn the_folder_check_answers_alike_under_busybox_and_dash() {
    let common = std::fs::read_to_string(repo_root().join("src/scripts/common.sh")).unwrap();
    let busybox = tempfile::tempdir().unwrap();
    run(std::process::Command::new("/bin/busybox")
        .arg("--install")
        .arg("-s")
        .arg(busybox.path()));
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for d in [
        "ok/d/nats-data/x",
        "gw/d",
        "sticky",
        "own/d",
        "file/d",
        "open/d",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    chmod(&root.join("gw"), 0o775);
    chmod(&root.join("sticky"), 0o1777);
    std::fs::create_dir(root.join("sticky/mine")).unwrap();
    chown(&root.join("own/d"), STRANGER);
    // JetStream's files are the container's business: not looked at.
    chmod(&root.join("ok/d/nats-data/x"), 0o777);
    std::fs::write(root.join("file/d/docker-compose.yaml"), "").unwrap();
    chmod(&root.join("file/d/docker-compose.yaml"), 0o666);
    chmod(&root.join("open/d"), 0o1777);
    std::os::unix::fs::symlink(root.join("gw/d"), root.join("ok/link")).unwrap();
    let r = root.display();
    let cases = [
        ("ok/d", String::new()),
        ("ok/d/new/deeper", String::new()),
        ("sticky/mine", String::new()),
        ("sticky/new", String::new()),
        ("gw/d", format!("writable|775|0|root|root|{r}/gw")),
        ("gw/d/new", format!("writable|775|0|root|root|{r}/gw")),
        ("ok/link", format!("writable|775|0|root|root|{r}/gw")),
        (
            "own/d",
            format!("owner|755|{STRANGER}|UNKNOWN|root|{r}/own/d"),
        ),
        ("sticky", format!("writable|1777|0|root|root|{r}/sticky")),
        ("open/d", format!("writable|1777|0|root|root|{r}/open/d")),
        (
            "file/d",
            format!("writable|666|0|root|root|{r}/file/d/docker-compose.yaml"),
        ),
    ];
    for (shell, path) in [
        ("/bin/dash".into(), std::env::var("PATH").unwrap()),
        (
            busybox.path().join("sh"),
            format!(
                "{}:{}",
                busybox.path().display(),
                std::env::var("PATH").unwrap()
            ),
        ),
    ] {
        let shell: std::path::PathBuf = shell;
        for (dir, expected) in &cases {
            let out = std::process::Command::new(&shell)
                .env("PATH", &path)
                .current_dir(root)
                .arg("-c")
                .arg(format!("{common}\ncheck_dir_safe '{dir}/'; echo \"rc=$?\""))
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let said = stdout
                .lines()
                .find_map(|l| l.strip_prefix("natsup.unsafe_dir="))
                .unwrap_or("");
            let rc = if expected.is_empty() { "rc=0" } else { "rc=1" };
            assert_eq!(
                (said, stdout.lines().last().unwrap_or("")),
                (expected.as_str(), rc),
                "{} ({path}): {dir}",
                shell.display()
            );
        }
    }
}
