//! The planner and the executor's remote commands, without a server. Steps are values and
//! one place executes them, so both can be tested apart from any server: the planner is a
//! pure function of (bundle, observed), and the executor talks to a recording remote that
//! answers like the real scripts do. The end-to-end tests (e2e_ssh) run the same paths
//! against a real sshd and Docker.

use std::collections::BTreeMap;
use std::time::Duration;

use natsup::config::{Config, InitOptions};
use natsup::deploy;
use natsup::error::Result;
use natsup::observed::{
    Container, Dir, Docker, Observed, PortRole, PortTaken, Projects, UnsafePath,
};
use natsup::plan::{Action, plan, preflight};
use natsup::remote::{Output, Remote};
use natsup::render::{self, Bundle, sha256_hex};
use natsup::state::{State, StateDir};
use time::OffsetDateTime;

struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
    state: State,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_init(InitOptions {
        name: "unit".into(),
        host: "nats.example.com".into(),
        ..InitOptions::default()
    });
    let (state, _) = State::ensure(
        &config,
        &StateDir::new(dir.path(), "unit"),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    Fixture {
        _dir: dir,
        config,
        state,
    }
}

/// `config` with a field of natsup.yaml changed, loaded again as natsup loads a file: its
/// nodes are resolved from the fields once, at load.
fn edited(config: &Config, edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = config.clone();
    edit(&mut config);
    Config::parse(&config.to_yaml(), std::path::Path::new("natsup.yaml")).unwrap()
}

impl Fixture {
    fn bundle(&self) -> Bundle {
        deploy::server_bundle(&self.config, 0, &self.state)
    }

    /// A server that runs exactly this bundle.
    fn running(&self, bundle: &Bundle) -> Observed {
        let mut contents = BTreeMap::new();
        let mut pem_sha256 = BTreeMap::new();
        for f in &bundle.files {
            if f.path.ends_with(".pem") {
                pem_sha256.insert(f.path.clone(), sha256_hex(&f.contents));
            } else {
                contents.insert(f.path.clone(), f.contents.clone());
                let name = f.path.rsplit('/').next().unwrap();
                contents.insert(format!(".natsup/applied/{name}"), f.contents.clone());
            }
        }
        Observed {
            docker: Docker::Usable {
                command: "docker".into(),
                version: "28.2.2".into(),
            },
            compose: Some("docker compose".into()),
            dir: Dir::Writable,
            dir_abs: Some("/home/u/nats-bits".into()),
            contents,
            pem_sha256,
            container: Some(Container {
                id: "c0ffee".into(),
                status: "running".into(),
                started_at: "2026-11-24T10:00:00Z".into(),
                image: self.config.image.clone(),
                restarts: 0,
            }),
            ports_taken: Vec::new(),
            unsafe_dir: None,
            staging_leftover: false,
            projects: Projects {
                marker: true,
                ..Projects::default()
            },
        }
    }
}

fn fresh_server() -> Observed {
    Observed {
        docker: Docker::Usable {
            command: "docker".into(),
            version: "28.2.2".into(),
        },
        compose: Some("docker-compose".into()),
        dir: Dir::Absent,
        dir_abs: None,
        contents: BTreeMap::new(),
        pem_sha256: BTreeMap::new(),
        container: None,
        ports_taken: Vec::new(),
        unsafe_dir: None,
        staging_leftover: false,
        projects: Projects::default(),
    }
}

#[test]
fn which_action_for_which_difference() {
    let mut fx = fixture();
    let running = fx.running(&fx.bundle());

    assert_eq!(plan(&fx.bundle(), &running).action, Action::Nothing);
    assert_eq!(plan(&fx.bundle(), &fresh_server()).action, Action::Start);

    let mut stopped = running.clone();
    stopped.container.as_mut().unwrap().status = "exited".into();
    assert_eq!(plan(&fx.bundle(), &stopped).action, Action::Start);

    // A pem file someone removed on the server: put back, nothing to restart.
    let mut missing_pem = running.clone();
    let pem = missing_pem.pem_sha256.keys().next().unwrap().clone();
    missing_pem.pem_sha256.remove(&pem);
    let p = plan(&fx.bundle(), &missing_pem);
    assert_eq!(p.action, Action::Files);

    // Users and passwords reload.
    let before = fx.bundle();
    let live = fx.running(&before);
    fx.state.secrets.users.get_mut("gameserver").unwrap().bcrypt =
        natsup::passwords::hash(&natsup::passwords::generate(), 4);
    assert_eq!(plan(&fx.bundle(), &live).action, Action::Reload);

    // A renewed certificate has new file names: the config changes, a reload serves it.
    let mut fx = fixture();
    let live = fx.running(&fx.bundle());
    fx.state
        .reissue_server_cert(&fx.config, 0, OffsetDateTime::now_utc())
        .unwrap();
    assert_eq!(plan(&fx.bundle(), &live).action, Action::Reload);

    // JetStream limits and compose settings need a new container.
    let mut fx = fixture();
    let live = fx.running(&fx.bundle());
    fx.config.jetstream.max_memory_store *= 2;
    assert_eq!(plan(&fx.bundle(), &live).action, Action::Recreate);
    let mut fx = fixture();
    let live = fx.running(&fx.bundle());
    fx.config = edited(&fx.config, |c| c.port = 4333);
    assert_eq!(plan(&fx.bundle(), &live).action, Action::Recreate);
    let mut fx = fixture();
    let live = fx.running(&fx.bundle());
    fx.config.set_image("nats:2.10.26");
    assert_eq!(plan(&fx.bundle(), &live).action, Action::Recreate);
}

#[test]
fn diffs_never_show_secrets() {
    let mut fx = fixture();
    let live = fx.running(&fx.bundle());
    fx.state
        .reissue_server_cert(&fx.config, 0, OffsetDateTime::now_utc())
        .unwrap();
    fx.state.secrets.users.get_mut("webhook").unwrap().bcrypt =
        natsup::passwords::hash(&natsup::passwords::generate(), 4);
    let shown = plan(&fx.bundle(), &live).describe(true);
    assert!(shown.contains("nats-server.conf"), "{shown}");
    assert!(!shown.contains("$2b$"), "a bcrypt hash in a diff:\n{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "a key in a diff:\n{shown}");
    for user in fx.state.secrets.users.values() {
        assert!(!shown.contains(user.password.expose()));
    }
}

#[test]
fn preflight_names_what_is_missing_and_what_to_do() {
    let mut o = fresh_server();
    o.docker = Docker::Missing;
    let problems = preflight(&o);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].0.contains("docker is not installed"));
    assert!(problems[0].1.contains("install Docker"));

    let mut o = fresh_server();
    o.docker = Docker::Denied;
    assert!(preflight(&o)[0].1.contains("docker group"));

    let mut o = fresh_server();
    o.compose = None;
    assert!(preflight(&o)[0].0.contains("docker compose"));

    let mut o = fresh_server();
    o.dir = Dir::Unwritable;
    o.ports_taken = vec![PortTaken {
        role: PortRole::Client,
        port: 4222,
        holder: "container other".into(),
    }];
    let problems = preflight(&o);
    assert_eq!(problems.len(), 2);
    assert!(problems[1].0.contains("container other"));
}

/// Issue 17, item 9: the route port is checked like the client port, and each is named with
/// the field that moves it.
#[test]
fn preflight_names_a_taken_route_port_and_its_field() {
    let mut o = fresh_server();
    o.ports_taken = vec![PortTaken {
        role: PortRole::Route,
        port: 6222,
        holder: "process nats-server (pid 42) listening on 6222".into(),
    }];
    let problems = preflight(&o);
    assert_eq!(problems.len(), 1);
    let (message, hint) = &problems[0];
    assert_eq!(
        message,
        "the route port 6222 is already taken on the server by process nats-server (pid 42) \
         listening on 6222"
    );
    assert!(hint.contains("`cluster.port`"), "{hint}");
}

/// Issue 17, item 6: a deployment folder another user could change is refused, naming the
/// path, its owner and mode, and the command that fixes it.
#[test]
fn preflight_refuses_a_deployment_folder_others_can_write() {
    let mut o = fresh_server();
    o.unsafe_dir = UnsafePath::parse("writable|775|1001|alice|alice|/srv/nats");
    let (message, hint) = &preflight(&o)[0];
    assert!(
        message
            .starts_with("/srv/nats is writable by other users (owner alice (uid 1001), mode 775)"),
        "{message}"
    );
    assert!(hint.contains("`chmod go-w '/srv/nats'`"), "{hint}");

    o.unsafe_dir = UnsafePath::parse("owner|700|1002|mallory|alice|/srv/a|b");
    let (message, hint) = &preflight(&o)[0];
    assert!(
        message.starts_with("/srv/a|b is owned by another user (owner mallory"),
        "{message}"
    );
    assert!(hint.contains("`sudo chown alice '/srv/a|b'`"), "{hint}");

    o.unsafe_dir = UnsafePath::parse("writable|1777|0|root|alice|/srv");
    assert!(preflight(&o)[0].1.contains("`sudo chmod go-w '/srv'`"));
}

/// Issue 11, 4.7: a Compose project natsup did not make in the deployment directory is refused,
/// whatever shows it; natsup's own (its `.natsup/`, or its mark in the compose file) is not.
#[test]
fn preflight_refuses_a_compose_project_natsup_did_not_make() {
    let fx = fixture();
    let foreign = |o: &Observed| {
        preflight(o)
            .into_iter()
            .find(|(m, _)| m.contains("natsup did not make"))
    };
    let mut tutorial = fresh_server();
    tutorial.dir = Dir::Writable;
    tutorial.dir_abs = Some("/home/u/nats-bits".into());
    tutorial.contents.insert(
        "docker-compose.yaml".into(),
        b"services:\n  nats:\n    image: nats\n".to_vec(),
    );
    let (message, hint) = foreign(&tutorial).expect("a foreign compose file is refused");
    assert!(message.starts_with("/home/u/nats-bits holds"), "{message}");
    assert!(message.contains("docker-compose.yaml"), "{message}");
    assert!(hint.contains("remote_dir"), "{hint}");

    let mut running = fresh_server();
    running.projects.in_use = Some("nats-bits".into());
    running.projects.own = Some("prod-0a1b2c3d".into());
    running.projects.others = vec!["web".into()];
    running.projects.other_files = vec!["compose.yaml".into()];
    let (message, _) = foreign(&running).expect("foreign containers are refused");
    assert!(
        message.contains(
            "compose.yaml, containers of project `nats-bits`, containers of project `web`"
        ),
        "{message}"
    );

    assert!(foreign(&fresh_server()).is_none(), "an empty folder");
    let mut marked = running.clone();
    marked.projects.marker = true;
    assert!(foreign(&marked).is_none(), "natsup's .natsup/");
    let mut rendered = running.clone();
    rendered.contents.insert(
        "docker-compose.yaml".into(),
        render::compose(&fx.config, &fx.config.nodes()[0]).into_bytes(),
    );
    assert!(foreign(&rendered).is_none(), "natsup's compose file");
}

/// Records each command the executor runs and answers like the real scripts.
struct Recording {
    observe_answer: String,
    calls: Vec<(String, String, Vec<u8>)>,
}

impl Remote for Recording {
    async fn run(&mut self, step: &str, script: &str, stdin: &[u8]) -> Result<Output> {
        self.calls
            .push((step.to_string(), script.to_string(), stdin.to_vec()));
        let stdout = if stdin.is_empty() {
            self.observe_answer.clone()
        } else {
            "natsup.committed=yes\nnatsup.result=applied\n".to_string()
        };
        Ok(Output {
            status: 0,
            stdout,
            stderr: String::new(),
            elapsed: Duration::ZERO,
        })
    }

    fn describe(&self) -> String {
        "recording".into()
    }

    fn commands(&self) -> usize {
        self.calls.len()
    }
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What observe.sh prints for `observed`.
fn observe_report(o: &Observed) -> String {
    let mut lines = vec![
        "natsup.docker=docker".to_string(),
        "natsup.docker_version=28.2.2".to_string(),
        "natsup.compose=docker compose".to_string(),
        "natsup.dir=writable".to_string(),
    ];
    for (path, contents) in &o.contents {
        lines.push(format!("natsup.content:{path}={}", b64(contents)));
    }
    for (path, sha) in &o.pem_sha256 {
        lines.push(format!("natsup.sha256:{path}={sha}"));
    }
    if let Some(c) = &o.container {
        lines.push(format!("natsup.container_id={}", c.id));
        lines.push(format!(
            "natsup.container={}|{}|{}|{}",
            c.status, c.started_at, c.image, c.restarts
        ));
    }
    lines.push("natsup.observed=ok".into());
    lines.join("\n")
}

/// observe → plan → apply through the recording remote, as `up` does.
fn converge(fx: &Fixture, server: &Observed) -> Recording {
    let mut remote = Recording {
        observe_answer: observe_report(server),
        calls: Vec::new(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let node = deploy::Server::of(&fx.config, 0, &fx.state);
        let observed = deploy::observe(&mut remote, &node).await.unwrap();
        assert_eq!(
            &observed.contents, &server.contents,
            "the report round-trips"
        );
        let p = plan(&node.bundle, &observed);
        if p.uploads() {
            deploy::apply(&mut remote, &node, &p, Duration::from_secs(30))
                .await
                .unwrap();
        }
    });
    remote
}

#[test]
fn a_server_in_sync_gets_one_read_only_command() {
    let fx = fixture();
    let remote = converge(&fx, &fx.running(&fx.bundle()));
    assert_eq!(remote.calls.len(), 1);
    let (step, script, stdin) = &remote.calls[0];
    assert_eq!(step, "inspecting the server");
    assert!(stdin.is_empty());
    assert!(
        !script.contains("docker kill") && !script.contains(" up -d"),
        "{script}"
    );
}

#[test]
fn a_change_is_one_upload_and_secrets_travel_only_on_stdin() {
    let mut fx = fixture();
    let live = fx.running(&fx.bundle());
    fx.state.secrets.users.get_mut("gameserver").unwrap().bcrypt =
        natsup::passwords::hash(&natsup::passwords::generate(), 4);
    let remote = converge(&fx, &live);
    assert_eq!(remote.calls.len(), 2, "observe, then one apply");
    let (step, script, stdin) = &remote.calls[1];
    assert_eq!(step, "applying the change");
    assert!(
        script.contains("ACTION='reload'") || script.contains("ACTION=reload"),
        "{script}"
    );
    // The command line (visible in `ps` on the server) holds no secret of any kind.
    for (_, script, _) in &remote.calls {
        assert!(!script.contains("PRIVATE KEY"));
        assert!(!script.contains("$2b$"));
        for user in fx.state.secrets.users.values() {
            assert!(!script.contains(user.password.expose()));
        }
    }
    // stdin is the bundle as a tar: the config (with hashes, never passwords) and the key.
    let tar = String::from_utf8_lossy(stdin);
    assert!(tar.contains("nats-config/nats-server.conf"));
    assert!(tar.contains("$2b$04$"));
    assert!(tar.contains("PRIVATE KEY"));
    for user in fx.state.secrets.users.values() {
        assert!(
            !tar.contains(user.password.expose()),
            "a plaintext password in the upload"
        );
    }
    assert!(
        !tar.contains(fx.state.ca.key_pem().expose().lines().nth(1).unwrap()),
        "the CA key left the state dir"
    );
}

#[test]
fn a_fresh_server_is_started_in_one_upload() {
    let fx = fixture();
    let remote = converge(&fx, &fresh_server());
    assert_eq!(remote.calls.len(), 2);
    assert!(remote.calls[1].1.contains("start"));
}

/// `bundle` as natsup rendered it before every stop went through lame duck: the same files
/// without the compose file's `stop_signal`/`stop_grace_period` (and their comment) and
/// without the config's `lame_duck_*` lines (and theirs).
fn before_lame_duck(bundle: &Bundle) -> Bundle {
    let mut old = bundle.clone();
    for f in &mut old.files {
        if f.path.ends_with(".pem") {
            continue;
        }
        let text = String::from_utf8(f.contents.clone()).unwrap();
        let mut kept = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            let t = line.trim_start();
            // A comment block that introduces a lame-duck line goes with it.
            if t.starts_with('#') {
                let mut block = vec![line];
                while let Some(next) = lines.peek().filter(|l| l.trim_start().starts_with('#')) {
                    block.push(next);
                    lines.next();
                }
                let introduces = lines.peek().is_some_and(|l| is_lame_duck_line(l));
                if !introduces {
                    kept.extend(block);
                }
                continue;
            }
            if !is_lame_duck_line(line) {
                kept.push(line);
            }
        }
        let mut text = kept.join("\n") + "\n";
        // The config's lame-duck block stood between two blank lines.
        text = text.replace("\n\n\n", "\n\n");
        f.contents = text.into_bytes();
    }
    assert_ne!(&old, bundle, "the render has lame-duck lines to take out");
    old
}

fn is_lame_duck_line(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("stop_signal:")
        || t.starts_with("stop_grace_period:")
        || t.starts_with("lame_duck_")
}

/// Issue 18: a deployment natsup made before every stop went through lame duck changes once,
/// on its first `up`: one recreate (the only way a container takes a new stop signal), with
/// the reason shown, and nothing after it.
#[test]
fn an_existing_deployment_adopts_lame_duck_stops_with_one_recreate_and_its_reason() {
    let fx = fixture();
    let now = fx.bundle();
    let before = before_lame_duck(&now);
    let old_compose =
        String::from_utf8(before.get("docker-compose.yaml").unwrap().contents.clone()).unwrap();
    assert!(!old_compose.contains("stop_signal"), "{old_compose}");
    let live = fx.running(&before);
    let p = plan(&now, &live);
    assert_eq!(p.action, Action::Recreate, "{p:?}");
    assert_eq!(
        p.reasons.len(),
        1,
        "one reason, the adoption: {:?}",
        p.reasons
    );
    let reason = &p.reasons[0];
    for words in [
        "lame duck",
        "stop_signal: SIGUSR2",
        "recreated once",
        "this recreate already goes through lame duck",
    ] {
        assert!(reason.contains(words), "{words:?} not in {reason:?}");
    }
    let shown = p.describe(true);
    assert!(shown.contains("+    stop_signal: SIGUSR2"), "{shown}");
    assert!(shown.contains("+lame_duck_duration: \"30s\""), "{shown}");
    // Once adopted, the next run has nothing to do.
    assert_eq!(plan(&now, &fx.running(&now)).action, Action::Nothing);
}

/// A changed lame-duck window needs a restart: nats-server's reload knows no lame-duck option.
#[test]
fn a_changed_lame_duck_window_recreates() {
    let mut fx = fixture();
    let live = fx.running(&fx.bundle());
    fx.config = edited(&fx.config, |c| c.lame_duck.duration_secs = 60);
    let p = plan(&fx.bundle(), &live);
    assert_eq!(p.action, Action::Recreate, "{p:?}");
    let mut fx = fixture();
    let live = fx.running(&fx.bundle());
    fx.config = edited(&fx.config, |c| c.lame_duck.grace_secs = 5);
    // The grace is only in nats-server.conf: still a restart, not a reload that would fail.
    let p = plan(&fx.bundle(), &live);
    assert_eq!(p.action, Action::Recreate, "{p:?}");
    assert!(p.reasons[0].contains("lame-duck window"), "{p:?}");
}

/// `plan` names an image change as the nats-server versions its tags name.
#[test]
fn plan_names_the_nats_server_version_change() {
    let mut fx = fixture();
    fx.config.set_image("natsup-test/nats:2.10.26");
    let live = fx.running(&fx.bundle());
    fx.config.set_image("natsup-test/nats:2.11.11");
    let p = plan(&fx.bundle(), &live);
    assert_eq!(p.action, Action::Recreate);
    assert_eq!(
        p.reasons,
        vec![
            "nats-server 2.10.26 → 2.11.11 (image natsup-test/nats:2.10.26 → \
             natsup-test/nats:2.11.11): the container is recreated on the new image"
                .to_string()
        ]
    );
    // Going back: a minor downgrade is warned about; across the 2.10 storage format, refused.
    let mut fx = fixture();
    fx.config.set_image("nats:2.11.11");
    let live = fx.running(&fx.bundle());
    fx.config.set_image("nats:2.10.26");
    let p = plan(&fx.bundle(), &live);
    assert!(
        p.reasons[1].starts_with("warning: nats-server 2.11.11 → 2.10.26 is a downgrade"),
        "{p:?}"
    );
    fx.config.set_image("nats:2.9.21");
    let p = plan(&fx.bundle(), &live);
    assert!(
        p.reasons[1].starts_with("`natsup up` refuses this: nats-server 2.11.11 → 2.9.21"),
        "{p:?}"
    );
    fx.config.set_image("nats:latest");
    let p = plan(&fx.bundle(), &live);
    assert!(
        p.reasons[0].starts_with("image nats:2.11.11 → nats:latest:"),
        "{p:?}"
    );
}

/// Issue 18: a server that runs a config from before natsup had a system account gets it by
/// a reload (nats-server 2.10.26 reloads `accounts` with the default system account name, see
/// tests/real_nats_server.rs), and the plan says why.
#[test]
fn the_system_account_is_adopted_by_a_reload_and_the_plan_names_it() {
    let fx = fixture();
    let mut before = fx.state.clone();
    before.secrets.system = None;
    let old = deploy::server_bundle(&fx.config, 0, &before);
    let live = fx.running(&old);
    let p = plan(&fx.bundle(), &live);
    assert_eq!(p.action, Action::Reload, "{:?}", p.reasons);
    assert!(
        p.reasons
            .iter()
            .any(|r| r.contains("natsup's system account") && r.contains("a reload adds it")),
        "{:?}",
        p.reasons
    );
    // Once it runs it, nothing more.
    assert_eq!(
        plan(&fx.bundle(), &fx.running(&fx.bundle())).action,
        Action::Nothing
    );
}
