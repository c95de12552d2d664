//! The two rendered files: snapshots of exactly what goes to the server, the quoting filters
//! under hostile input, and byte-identical re-rendering (issue 2). tests/real_nats_server.rs
//! runs the same renders under a real nats-server.

use std::path::Path;

use natsup::config::{Config, InitOptions};
use natsup::render::{self, ConfPaths, TlsNames, nats_quote, yaml_quote};
use natsup::state::{State, StateDir};
use time::OffsetDateTime;

fn state_for(config: &Config, dir: &Path) -> State {
    State::ensure(
        config,
        &StateDir::new(dir, &config.name),
        OffsetDateTime::now_utc(),
    )
    .unwrap()
    .0
}

/// The config with each bcrypt hash replaced by a marker: the rest must be stable.
fn redacted_conf(config: &Config, state: &State) -> String {
    let mut conf = render::nats_conf(config, 0, state, &ConfPaths::container(&TlsNames::plain()));
    for user in &config.users {
        let hash = state.secrets.served_hash(&user.name);
        assert!(
            conf.contains(&format!("\"{hash}\"")),
            "hash of {} not quoted",
            user.name
        );
        conf = conf.replace(hash, &format!("<bcrypt hash of {}'s password>", user.name));
    }
    let system = &state.secrets.system.as_ref().expect("a system user").bcrypt;
    assert!(
        conf.contains(&format!("\"{system}\"")),
        "system hash not quoted"
    );
    conf.replace(system, "<bcrypt hash of the system user's password>")
}

const WITH_PERMISSIONS: &str = r#"name: bevygap
host: nats.example.com
bind: 127.0.0.1
port: 4333
image: nats:2.10.26
users:
- name: matchmaker
- name: gameserver
  permissions:
    publish:
      allow: ["game.>", "_INBOX.>"]
      deny: ["game.admin.>"]
    subscribe:
      allow: ["game.*.events", "_INBOX.>"]
jetstream:
  max_memory_store: 268435456
  max_file_store: 1073741824
"#;

#[test]
fn snapshots_of_the_tutorial_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_init(InitOptions {
        name: "bevygap".into(),
        host: "nats.example.com".into(),
        ..InitOptions::default()
    });
    let state = state_for(&config, dir.path());
    insta::assert_snapshot!("tutorial_nats_server_conf", redacted_conf(&config, &state));
    insta::assert_snapshot!(
        "tutorial_docker_compose",
        render::compose(&config, &config.nodes()[0])
    );
}

#[test]
fn snapshots_with_permissions_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(WITH_PERMISSIONS, Path::new("natsup.yaml")).unwrap();
    let state = state_for(&config, dir.path());
    insta::assert_snapshot!(
        "permissions_nats_server_conf",
        redacted_conf(&config, &state)
    );
    insta::assert_snapshot!(
        "permissions_docker_compose",
        render::compose(&config, &config.nodes()[0])
    );
}

#[test]
fn rendering_twice_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(WITH_PERMISSIONS, Path::new("natsup.yaml")).unwrap();
    let state = state_for(&config, dir.path());
    let tls = TlsNames::versioned(&state.certs[0].info.serial);
    assert_eq!(
        render::bundle(&config, 0, &state, &tls),
        render::bundle(&config, 0, &state, &tls)
    );
    // And loading the state again from disk changes nothing either.
    let again = state_for(&config, dir.path());
    assert_eq!(
        render::bundle(&config, 0, &state, &tls),
        render::bundle(&config, 0, &again, &tls)
    );
}

#[test]
fn the_bundle_holds_no_password_and_no_ca_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(WITH_PERMISSIONS, Path::new("natsup.yaml")).unwrap();
    let state = state_for(&config, dir.path());
    let bundle = render::bundle(&config, 0, &state, &TlsNames::plain());
    let paths: Vec<_> = bundle.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "docker-compose.yaml",
            "nats-config/nats-server.conf",
            "nats-config/nats-server-cert.pem",
            "nats-config/nats-server-key.pem"
        ]
    );
    let ca_key = state.ca.key_pem().expose();
    for f in &bundle.files {
        let text = String::from_utf8_lossy(&f.contents);
        for user in state.secrets.users.values() {
            assert!(
                !text.contains(user.password.expose()),
                "a password in {}",
                f.path
            );
        }
        assert!(
            !text.contains(ca_key.lines().nth(1).unwrap()),
            "the CA key in {}",
            f.path
        );
    }
    let key = bundle.get("nats-config/nats-server-key.pem").unwrap();
    assert!(key.is_secret() && key.mode == 0o600);
}

/// Strings that break naive quoting in one format or the other.
const HOSTILE: &[&str] = &[
    "",
    "plain",
    "with \"double\" quotes",
    "single ' quote",
    "back\\slash\\",
    "$VAR and ${VAR} and $$",
    "braces } { ] [",
    "# not a comment",
    "line\nbreak",
    "tab\there\r",
    "unicode ü 🦀 ∀",
    "nul\u{1}ctl\u{7f}",
    ": colon, comma",
];

/// What nats-server's parser reads back from a double-quoted string (its conf lexer knows only
/// `\xXX \t \n \r \" \\`, and `$` is literal inside quotes).
fn nats_unquote(quoted: &str) -> String {
    let inner = quoted.strip_prefix('"').unwrap().strip_suffix('"').unwrap();
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            assert!(c != '"', "an unescaped quote in {quoted}");
            out.push(c);
            continue;
        }
        match chars.next().unwrap() {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap() as char);
            }
            other => panic!("unknown escape \\{other} in {quoted}"),
        }
    }
    out
}

#[test]
fn nats_quoting_round_trips_hostile_strings() {
    for s in HOSTILE {
        let q = nats_quote(s);
        assert!(!q[1..q.len() - 1].contains('\n'), "a raw newline in {q}");
        assert_eq!(&nats_unquote(&q), s, "{q}");
    }
}

#[test]
fn yaml_quoting_round_trips_hostile_strings() {
    for s in HOSTILE
        .iter()
        .filter(|s| !s.contains(['\n', '\r', '\t', '\u{1}', '\u{7f}']))
    {
        let q = yaml_quote(s);
        let doc = format!("key: {q}\n");
        let parsed: serde_yaml::Value = serde_yaml::from_str(&doc).unwrap();
        // Compose then turns `$$` back into `$`.
        let value = parsed["key"].as_str().unwrap().replace("$$", "$");
        assert_eq!(&value, s, "{doc}");
    }
}
