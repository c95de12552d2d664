//! The built binary in a temp dir: init, render (twice), env, ca, and bad input with its
//! message and exit code 2 (issue 2).

use natsup_dev_support as support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::workspace::{Workspace, text};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                files.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn init_writes_the_tutorials_defaults_and_refuses_to_overwrite() {
    let ws = Workspace::new("cli");
    let out = ws.ok(&["init", "--name", "t", "--host", "nats.example.com"]);
    assert!(text(&out).contains("wrote natsup.yaml"), "{}", text(&out));
    let config = natsup::config::Config::load(&ws.path().join("natsup.yaml")).unwrap();
    let users: Vec<_> = config.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(
        users,
        ["matchmaker", "matchmaker_httpd", "gameserver", "webhook"]
    );
    assert_eq!(config.image, "nats:2.10.21");
    assert_eq!(config.port, 4222);
    assert_eq!(config.bind.to_string(), "0.0.0.0");
    assert_eq!(config.remote_dir, "nats-bits");
    assert!(
        !ws.config().contains("password"),
        "natsup.yaml holds no secret"
    );

    let before = ws.config();
    let out = ws.run(&["init", "--name", "u", "--host", "other.example.com"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("natsup.yaml already exists"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(ws.config(), before);

    ws.ok(&[
        "init",
        "--name",
        "u",
        "--host",
        "other.example.com",
        "--force",
        "--user",
        "a",
        "--user",
        "b",
    ]);
    let config = natsup::config::Config::load(&ws.path().join("natsup.yaml")).unwrap();
    assert_eq!(config.name, "u");
    assert_eq!(config.users.len(), 2);
}

#[test]
fn render_writes_the_bundle_and_a_second_render_changes_nothing() {
    let ws = Workspace::new("render");
    ws.ok(&["init", "--name", "r", "--host", "203.0.113.7"]);
    let out = ws.ok(&["render"]);
    let said = text(&out);
    assert!(said.contains("created a new CA"), "{said}");
    assert!(
        said.contains("generated passwords for matchmaker, matchmaker_httpd, gameserver, webhook"),
        "{said}"
    );

    let bundle = ws.path().join("natsup-out");
    let files: Vec<_> = read_all(&bundle).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        files,
        [
            "docker-compose.yaml",
            "nats-config/nats-server-cert.pem",
            "nats-config/nats-server-key.pem",
            "nats-config/nats-server.conf"
        ]
    );
    assert_eq!(mode(&bundle.join("nats-config/nats-server-key.pem")), 0o600);

    // No password and no CA key anywhere in the bundle.
    let state = ws.state_dir().join("r");
    let secrets = std::fs::read_to_string(state.join("secrets.yaml")).unwrap();
    let passwords: Vec<&str> = secrets
        .lines()
        .filter_map(|l| l.trim().strip_prefix("password: "))
        .collect();
    // The four users', and natsup's system user's.
    assert_eq!(passwords.len(), 5, "{secrets}");
    let ca_key = std::fs::read_to_string(state.join("ca/rootCA-key.pem")).unwrap();
    for (path, bytes) in read_all(&bundle) {
        let text = String::from_utf8_lossy(&bytes);
        for pw in &passwords {
            assert!(
                !text.contains(pw.trim_matches('\'')),
                "a password in {path}"
            );
        }
        assert!(
            !text.contains(ca_key.lines().nth(1).unwrap()),
            "the CA key in {path}"
        );
    }

    // The state: private dir, private keys, public CA certificate.
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("secrets.yaml")), 0o600);
    assert!(matches!(
        mode(&state.join("ca/rootCA-key.pem")),
        0o400 | 0o600
    ));
    assert_eq!(mode(&state.join("ca/rootCA.pem")), 0o644);
    assert_eq!(mode(&state.join("server/nats-server-key.pem")), 0o600);

    let first = read_all(&bundle);
    let state_before = read_all(&state);
    let out = ws.ok(&["render"]);
    assert!(!text(&out).contains("created"), "{}", text(&out));
    assert_eq!(
        read_all(&bundle),
        first,
        "a second render changed the bundle"
    );
    assert_eq!(
        read_all(&state),
        state_before,
        "a second render changed the state"
    );

    ws.ok(&["render", "--out", "elsewhere"]);
    assert_eq!(read_all(&ws.path().join("elsewhere")), first);

    // A config an older natsup left 0644 (it holds the hashes) is made private again.
    let conf = bundle.join("nats-config/nats-server.conf");
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = ws.ok(&["render"]);
    assert!(text(&out).contains("is up to date"), "{}", text(&out));
    assert_eq!(mode(&conf), 0o600);
}

#[test]
fn env_and_ca_print_what_clients_need() {
    let ws = Workspace::new("env");
    ws.ok(&[
        "init",
        "--name",
        "e",
        "--host",
        "nats.example.com",
        "--port",
        "4333",
    ]);
    ws.ok(&["render"]);

    let out = ws.ok(&["env", "gameserver"]);
    let env = String::from_utf8_lossy(&out.stdout);
    let keys: Vec<&str> = env
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split('=').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["NATS_HOST", "NATS_USER", "NATS_PASSWORD", "NATS_CA"],
        "{env}"
    );
    assert!(env.contains("NATS_USER=gameserver"), "{env}");
    let ca = env
        .lines()
        .find_map(|l| l.strip_prefix("NATS_CA="))
        .unwrap()
        .trim_matches(['"', '\'']);
    assert!(
        Path::new(ca).is_absolute() && Path::new(ca).is_file(),
        "{ca}"
    );

    let out = ws.run(&["env", "nobody"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("`nobody` is not a user"),
        "{}",
        text(&out)
    );

    let out = ws.ok(&["ca", "path"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), ca);
    let out = ws.ok(&["ca", "show"]);
    let show = String::from_utf8_lossy(&out.stdout);
    for word in ["natsup CA e ", "fingerprint: SHA256 ", "expires:"] {
        assert!(show.contains(word), "{word} missing from:\n{show}");
    }
    assert!(!show.contains("PRIVATE KEY"));
}

#[test]
fn bad_input_is_exit_2_with_the_file_or_field_and_a_hint() {
    let ws = Workspace::new("bad");
    let out = ws.run(&["render"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("natsup.yaml"), "{said}");
    assert!(
        said.contains("hint:") && said.contains("natsup init"),
        "{said}"
    );

    ws.set_config("name: t\nhost: nats.example.com\nport: 70000\n");
    let out = ws.run(&["render"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("natsup.yaml: port: 70000 is not a valid port (1-65535)"),
        "{}",
        text(&out)
    );
    assert!(
        !ws.path().join("natsup-out").exists(),
        "a bad config rendered something"
    );
    assert!(!ws.state_dir().exists(), "a bad config made state");

    ws.set_config("name: t\nhost: nats.example.com\nauth:\n  bcrypt_cost: 3\n");
    let out = ws.run(&["render"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("natsup.yaml: auth.bcrypt_cost: 3 is out of range"),
        "{}",
        text(&out)
    );
    assert!(!ws.state_dir().exists(), "a bad config made state");

    ws.set_config("name: [unclosed\n");
    let out = ws.run(&["render"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("natsup.yaml"), "{}", text(&out));

    let out = ws.run(&["render", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = ws.run(&["init", "--name", "x", "--host", "not a host", "--force"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("not a host"), "{}", text(&out));

    // Errors are one sentence and a hint, not a debug dump.
    assert!(!text(&out).contains("Error {"), "{}", text(&out));
    assert!(!text(&out).contains("backtrace"), "{}", text(&out));

    // A bad NATSUP_SSH_PERSIST is named before any SSH connection is tried.
    ws.set_config("name: t\nhost: nats.example.com\nssh:\n  destination: deploy@192.0.2.1\n");
    let out = ws
        .natsup()
        .args(["plan"])
        .env("NATSUP_SSH_PERSIST", "thirty")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("NATSUP_SSH_PERSIST=\"thirty\" is not a duration")
            && text(&out).contains("hint:"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_second_run_on_the_same_deployment_waits_for_the_first() {
    let ws = Workspace::new("lock");
    ws.ok(&["init", "--name", "lock", "--host", "nats.example.com"]);
    ws.ok(&["render"]);
    // Another natsup run holds the deployment's lock.
    let held = natsup::state::StateDir::new(&ws.state_dir(), "lock")
        .lock()
        .unwrap();
    let mut child = ws
        .natsup()
        .args(["render", "--out", "second"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(
        child.try_wait().unwrap().is_none(),
        "render ran while the lock was held"
    );
    assert!(!ws.path().join("second").exists());
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("waiting for another natsup run on `lock`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ws.path()
            .join("second/nats-config/nats-server.conf")
            .is_file()
    );
}

/// `--image` gets the check the config's `image:` gets: a value `docker run` would read as an
/// option, or one with a space, is refused before anything runs, naming the flag.
#[test]
fn a_bad_image_flag_is_exit_2_naming_the_flag() {
    let ws = Workspace::new("img");
    ws.ok(&["init", "--name", "img", "--host", "nats.example.com"]);
    for (args, bad) in [
        (
            vec!["up", "--local", "--dry-run", "--image=--privileged"],
            "--privileged",
        ),
        (vec!["plan", "--local", "--image", "nats 2.10"], "nats 2.10"),
        (
            vec![
                "init",
                "--name",
                "x",
                "--host",
                "h",
                "--force",
                "--image=-v/:/host",
            ],
            "-v/:/host",
        ),
    ] {
        let out = ws.run(&args);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(
            said.contains("--image")
                && said.contains(&format!("{bad:?} is not a Docker image reference")),
            "{args:?}: {said}"
        );
        assert!(!ws.state_dir().exists(), "{args:?} made state");
    }
}

/// Issue 11, 4.6 f: `bundle --out .` leaves the project folder's mode alone; only a folder
/// bundle makes is private. nats.env, which holds the password, is 0600 either way.
#[test]
fn bundle_makes_only_its_own_folder_private() {
    let ws = Workspace::new("bundlemode");
    ws.ok(&["init", "--name", "bm", "--host", "203.0.113.9"]);
    ws.ok(&["render"]);
    std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    ws.ok(&["bundle", "gameserver", "--out", "."]);
    assert_eq!(
        mode(ws.path()),
        0o755,
        "bundle --out . changed the project's mode"
    );
    assert_eq!(mode(&ws.path().join("nats.env")), 0o600);

    ws.ok(&["bundle", "gameserver", "--out", "images/gs"]);
    assert_eq!(mode(&ws.path().join("images/gs")), 0o700);
    assert_eq!(mode(&ws.path().join("images/gs/nats.env")), 0o600);
}

/// Issue 11, 4.6 b: `render` in a git work tree leaves a `.gitignore` beside the private key
/// and the config (it holds the hashes), so `git add -A` commits neither; a `.gitignore`
/// already there keeps its lines.
#[test]
fn render_in_a_git_work_tree_keeps_the_key_out_of_git() {
    let ws = Workspace::new("rendergit");
    // git in the workspace only: no system or user config (a global excludes file listing
    // *.pem would keep the key out whatever natsup wrote), and no GIT_DIR or index of a
    // repository the suite runs in (a git hook exports them).
    let git = |args: &[&str]| {
        let mut cmd = std::process::Command::new("git");
        cmd.current_dir(ws.path())
            .env("HOME", ws.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("XDG_CONFIG_HOME");
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_CONFIG_GLOBAL",
        ] {
            cmd.env_remove(var);
        }
        cmd.args(args).output().unwrap()
    };
    assert!(git(&["init", "-q"]).status.success());
    ws.ok(&["init", "--name", "rg", "--host", "203.0.113.8"]);
    let config_dir = ws.path().join("natsup-out/nats-config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(config_dir.join(".gitignore"), "*.bak").unwrap();

    ws.ok(&["render"]);
    let key = "natsup-out/nats-config/nats-server-key.pem";
    let ignored = git(&["check-ignore", "-q", key]);
    assert_eq!(ignored.status.code(), Some(0), "git would commit {key}");
    let added = git(&["add", "-A", "--dry-run"]);
    let added = String::from_utf8_lossy(&added.stdout);
    assert!(!added.contains(key), "{added}");
    // The config holds every user's bcrypt hash: it is kept out too (0600, like the key).
    assert!(
        !added.contains("natsup-out/nats-config/nats-server.conf"),
        "{added}"
    );
    assert!(
        added.contains("natsup-out/nats-config/nats-server-cert.pem"),
        "{added}"
    );
    let ignore = std::fs::read_to_string(config_dir.join(".gitignore")).unwrap();
    assert!(ignore.starts_with("*.bak\n"), "{ignore}");

    // Once listed, a second render changes nothing.
    let out = ws.ok(&["render"]);
    assert!(text(&out).contains("is up to date"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(config_dir.join(".gitignore")).unwrap(),
        ignore
    );
}
