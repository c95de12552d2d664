//! What natsup hands to the tools people already use (issue 5): nats CLI contexts, env blocks
//! in three formats, the gameserver's CA argument, bundles for images, and an imported mkcert
//! CA.

use natsup_dev_support as support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use support::local::{rendered_workspace, serve};
use support::workspace::{Login, Workspace, runtime, text};
use support::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The nats CLI's context fields (nats.go's natscontext package).
const NATS_CONTEXT_KEYS: &[&str] = &[
    "description",
    "url",
    "socks_proxy",
    "token",
    "user",
    "password",
    "creds",
    "nkey",
    "cert",
    "key",
    "ca",
    "nsc",
    "jetstream_domain",
    "jetstream_api_prefix",
    "jetstream_event_prefix",
    "inbox_prefix",
    "user_jwt",
    "color_scheme",
    "tls_first",
    "windows_cert_store",
    "windows_cert_match_by",
    "windows_cert_match",
    "windows_ca_certs_match",
];

#[test]
fn contexts_use_the_nats_clis_own_keys_and_modes() {
    let (ws, config, state) = rendered_workspace("ctx");
    let _server = serve(&config, &state, ws.port);
    ws.ok(&["context"]);
    let dir = ws.path().join("xdg/nats/context");
    assert_eq!(mode(&dir), 0o700);
    for user in ["matchmaker", "matchmaker_httpd", "gameserver", "webhook"] {
        let file = dir.join(format!("ctx-{user}.json"));
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("PRIVATE KEY"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in json.as_object().unwrap().keys() {
            assert!(
                NATS_CONTEXT_KEYS.contains(&key.as_str()),
                "{key} is not a nats CLI key"
            );
        }
        let login = ws.login(user);
        assert_eq!(json["user"], user);
        assert_eq!(json["password"], login.password.as_str());
        assert!(
            json["url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("://127.0.0.1:{}", ws.port))
        );
        let ca = Path::new(json["ca"].as_str().unwrap());
        assert!(ca.is_absolute() && ca.is_file());
        // What the context says is enough to connect.
        let from_context = Login {
            user: user.into(),
            password: json["password"].as_str().unwrap().into(),
            ca_pem: std::fs::read_to_string(ca).unwrap(),
            port: ws.port,
        };
        runtime().block_on(from_context.connect()).unwrap();
    }
    assert!(!dir.parent().unwrap().join("context.txt").exists());

    let out = ws.run(&["context", "--select"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    ws.ok(&["context", "--user", "gameserver", "--select"]);
    let selected = std::fs::read_to_string(ws.path().join("xdg/nats/context.txt")).unwrap();
    assert_eq!(selected.trim(), "ctx-gameserver");
}

/// Evaluates `script` under sh with `file` sourced, as a deploy script would.
fn sh(file: &Path, script: &str) -> String {
    let out = run(Command::new("sh")
        .arg("-c")
        .arg(format!(". '{}'; {script}", file.display())));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn env_formats_carry_the_same_values() {
    let ws = Workspace::new("envfmt");
    ws.ok(&["init", "--name", "envfmt", "--host", "nats.example.com"]);
    ws.ok(&["render"]);
    let json: serde_json::Value =
        serde_json::from_slice(&ws.ok(&["env", "webhook", "--format", "json"]).stdout).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["NATS_CA", "NATS_HOST", "NATS_PASSWORD", "NATS_USER"]);

    let shell = ws.path().join("env.sh");
    std::fs::write(
        &shell,
        ws.ok(&["env", "webhook", "--format", "shell"]).stdout,
    )
    .unwrap();
    let dotenv = ws.path().join("env.dotenv");
    std::fs::write(&dotenv, ws.ok(&["env", "webhook"]).stdout).unwrap();
    for file in [&shell, &dotenv] {
        for key in keys.iter() {
            let value = sh(file, &format!("printf %s \"${key}\""));
            assert_eq!(
                value,
                json[*key].as_str().unwrap(),
                "{key} in {}",
                file.display()
            );
        }
    }

    // --ca-contents: the PEM itself, which survives the shell round trip with its newlines.
    let contents = ws.path().join("contents.sh");
    std::fs::write(
        &contents,
        ws.ok(&["env", "webhook", "--format", "shell", "--ca-contents"])
            .stdout,
    )
    .unwrap();
    let pem = sh(&contents, "printf %s \"$NATS_CA_CONTENTS\"");
    let ca_file = std::fs::read_to_string(json["NATS_CA"].as_str().unwrap()).unwrap();
    assert_eq!(pem.trim_end(), ca_file.trim_end());
    assert_eq!(sh(&contents, "printf %s \"${NATS_CA-unset}\""), "unset");
    let out = ws.ok(&["env", "webhook", "--ca-contents", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["NATS_CA_CONTENTS"].as_str().unwrap().trim_end(),
        ca_file.trim_end()
    );
}

#[test]
fn the_gameserver_ca_argument_connects_once_turned_back_into_a_file() {
    let (ws, config, state) = rendered_workspace("caarg");
    let _server = serve(&config, &state, ws.port);
    let printed =
        String::from_utf8_lossy(&ws.ok(&["env", "gameserver", "--ca-arg"]).stdout).into_owned();
    // The gameserver's command line, split as a shell splits it: flag, then the PEM.
    let argv = sh(
        Path::new("/dev/null"),
        &format!(
            "set -- {}; printf '%s\\n' \"$1\"; printf %s \"$2\"",
            printed.trim_end()
        ),
    );
    let (flag, pem) = argv.split_once('\n').unwrap();
    assert_eq!(flag, "--ca_contents");
    assert!(
        printed.len() < 1024,
        "the argument is {} bytes",
        printed.len()
    );
    let login = ws.login("gameserver");
    runtime()
        .block_on(login.trusting(pem).connect())
        .expect("the CA from --ca_contents is accepted");

    // Why the newlines stay: a PEM with them removed is refused by rustls.
    let flattened = pem.replace('\n', "");
    assert!(
        natsup::nats_client::client_tls(&flattened).is_err(),
        "rustls accepted a flattened PEM; --ca-arg could drop the newlines"
    );
}

#[test]
fn bundle_holds_what_one_component_needs() {
    let (ws, config, state) = rendered_workspace("bundle");
    let _server = serve(&config, &state, ws.port);
    ws.ok(&["bundle", "gameserver", "--out", "gs"]);
    let out = ws.path().join("gs");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["README.txt", "nats.env", "rootCA.pem"]);
    assert_eq!(mode(&out.join("nats.env")), 0o600);
    for name in &names {
        let text = std::fs::read_to_string(out.join(name)).unwrap();
        assert!(!text.contains("PRIVATE KEY"), "{name}");
    }
    let env = out.join("nats.env");
    assert_eq!(sh(&env, "printf %s \"$NATS_USER\""), "gameserver");
    let ca = sh(&env, "printf %s \"$NATS_CA\"");
    assert_eq!(Path::new(&ca), out.join("rootCA.pem"));
    let login = Login {
        user: "gameserver".into(),
        password: sh(&env, "printf %s \"$NATS_PASSWORD\""),
        ca_pem: std::fs::read_to_string(&ca).unwrap(),
        port: ws.port,
    };
    runtime().block_on(login.connect()).unwrap();
}

#[test]
fn an_mkcert_ca_can_be_imported_and_bad_ones_are_refused() {
    let ws = Workspace::new("import");
    ws.ok(&[
        "init",
        "--name",
        "import",
        "--host",
        "127.0.0.1",
        "--port",
        &ws.port.to_string(),
    ]);
    let mkcert = |caroot: &str, args: &[&str]| {
        run(Command::new("mkcert")
            .env("CAROOT", ws.path().join(caroot))
            .current_dir(ws.path())
            .args(args))
    };
    mkcert(
        "mk",
        &[
            "-cert-file",
            "leaf.pem",
            "-key-file",
            "leaf-key.pem",
            "localhost",
        ],
    );
    mkcert(
        "other",
        &["-cert-file", "o.pem", "-key-file", "o-key.pem", "localhost"],
    );

    // Not a CA: mkcert's leaf certificate.
    let out = ws.run(&[
        "ca",
        "import",
        "--cert",
        "leaf.pem",
        "--key",
        "leaf-key.pem",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("leaf.pem: is not a CA certificate"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("mkcert -CAROOT"), "{}", text(&out));
    // A key that belongs to another CA.
    let out = ws.run(&[
        "ca",
        "import",
        "--cert",
        "mk/rootCA.pem",
        "--key",
        "other/rootCA-key.pem",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("is not the key of the CA"),
        "{}",
        text(&out)
    );
    assert!(
        !ws.state_dir().join("import/ca").exists(),
        "a refused import left files"
    );

    let out = ws.ok(&[
        "ca",
        "import",
        "--cert",
        "mk/rootCA.pem",
        "--key",
        "mk/rootCA-key.pem",
    ]);
    assert!(
        text(&out).contains("mkcert development CA"),
        "{}",
        text(&out)
    );
    ws.ok(&["render"]);
    let verified = run(Command::new("openssl").current_dir(ws.path()).args([
        "verify",
        "-CAfile",
        "mk/rootCA.pem",
        "natsup-out/nats-config/nats-server-cert.pem",
    ]));
    assert!(String::from_utf8_lossy(&verified.stdout).contains(": OK"));

    // And a client that trusts only the mkcert CA it already had connects.
    let config = natsup::config::Config::load(&ws.path().join("natsup.yaml")).unwrap();
    let state = natsup::state::State::load(
        &config,
        &natsup::state::StateDir::new(&ws.state_dir(), "import"),
    )
    .unwrap();
    let _server = serve(&config, &state, ws.port);
    let mk_ca = std::fs::read_to_string(ws.path().join("mk/rootCA.pem")).unwrap();
    runtime()
        .block_on(ws.login("matchmaker").trusting(&mk_ca).connect())
        .unwrap();

    // A second import would cut off clients: refused without --force.
    let out = ws.run(&[
        "ca",
        "import",
        "--cert",
        "other/rootCA.pem",
        "--key",
        "other/rootCA-key.pem",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("rotate-ca"), "{}", text(&out));
}

/// The dotenv form read back by `dotenvy` (what Rust services, bevygap among them, load with),
/// with a state dir whose path needs quoting and a multi-line PEM.
#[test]
fn dotenv_output_reads_back_with_dotenvy() {
    let ws = Workspace::new("dotenvy");
    ws.ok(&["init", "--name", "dotenvy", "--host", "nats.example.com"]);
    let odd_state = ws.path().join("my state $HOME \"quoted\" `x`");
    let natsup = |args: &[&str]| {
        let out = ws
            .natsup()
            .env("NATSUP_STATE_DIR", &odd_state)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        out.stdout
    };
    natsup(&["render"]);
    for extra in [&[][..], &["--ca-contents"][..]] {
        let mut args = vec!["env", "matchmaker"];
        args.extend_from_slice(extra);
        let dotenv = natsup(&args);
        let json: serde_json::Value =
            serde_json::from_slice(&natsup(&[args.as_slice(), &["--format", "json"]].concat()))
                .unwrap();
        let parsed: Vec<(String, String)> = dotenvy::from_read_iter(dotenv.as_slice())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("dotenvy refused {extra:?}: {e}"));
        assert_eq!(parsed.len(), 4);
        for (key, value) in parsed {
            assert_eq!(json[&key].as_str().unwrap(), value, "{key}");
        }
    }
}
