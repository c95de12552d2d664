//! `verify` as CI and monitoring use it (issue 5): text, json, nagios and prometheus output,
//! thresholds in the nats CLI's duration syntax, exit codes 0/1/2/3, and the env-only smoke
//! mode. Against a real nats-server serving the rendered config.

use natsup_dev_support as support;

use std::process::{Command, Output};

use support::local::{rendered_workspace, serve};
use support::untimed;
use support::workspace::{Workspace, text};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `natsup verify` in smoke mode: an empty folder, no config, no state, only env vars.
fn smoke(ws: &Workspace, user: &str, password: &str, args: &[&str]) -> Output {
    let empty = tempfile::tempdir().unwrap();
    let ca = ws.login(user).ca_pem;
    Command::new(env!("CARGO_BIN_EXE_natsup"))
        .current_dir(empty.path())
        .env("NATSUP_STATE_DIR", empty.path().join("state"))
        .env("NATS_URL", format!("tls://127.0.0.1:{}", ws.port))
        .env("NATS_CA_CONTENTS", ca)
        .env("NATS_USER", user)
        .env("NATS_PASSWORD", password)
        .env_remove("NATS_CA")
        .arg("verify")
        .args(untimed(args))
        .output()
        .unwrap()
}

#[test]
fn formats_and_thresholds() {
    let (ws, config, state) = rendered_workspace("formats");
    let _server = serve(&config, &state, ws.port);

    let out = ws.verify(&[]);
    let table = stdout(&out);
    assert!(
        table.contains("SCOPE") && table.contains("STATUS"),
        "{table}"
    );
    assert!(
        table.trim_end().ends_with("OK: 15 of 15 checks OK"),
        "{table}"
    );

    // json: one object, stable keys.
    let out = ws.verify(&["--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["cert_days_left", "cert_serial", "checks", "status", "url"],
        "{report}"
    );
    assert_eq!(report["status"], "OK");
    assert_eq!(report["cert_days_left"], 364);
    for check in report["checks"].as_array().unwrap() {
        let mut keys: Vec<&str> = check
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.retain(|k| *k != "seconds");
        assert_eq!(keys, ["check", "detail", "scope", "status"], "{check}");
    }
    assert_eq!(
        stdout(&ws.verify(&["--format", "json"])).lines().count(),
        stdout(&out).lines().count()
    );

    // nagios: one line, status word, then perfdata in seconds with warn;crit.
    let out = ws.verify(&[
        "--format",
        "nagios",
        "--user",
        "gameserver",
        "--connect-warn",
        "4s",
        "--connect-critical",
        "5s",
    ]);
    let line = stdout(&out);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.starts_with("OK "), "{line}");
    let (_, perf) = line.split_once(" | ").expect("perfdata after ' | '");
    for metric in ["connect_time=", "rtt=", "request_time=", "cert_days="] {
        assert!(perf.contains(metric), "{metric} missing: {line}");
    }
    let connect = perf
        .split_whitespace()
        .find(|m| m.starts_with("connect_time="))
        .unwrap();
    let fields: Vec<&str> = connect["connect_time=".len()..].split(';').collect();
    assert!(fields[0].ends_with('s'), "{connect}");
    assert_eq!(&fields[1..3], ["4.0000", "5.0000"], "{connect}");
    // Without flags the limits are the nats CLI's: WARNING at 500 ms, CRITICAL at 1 s.
    let help = stdout(&ws.ok(&["verify", "--help"]));
    assert!(
        help.contains("[default: 500ms]") && help.contains("[default: 1s]"),
        "{help}"
    );

    // prometheus: exposition format, every sample line `name{labels} value`.
    let out = ws.verify(&["--format", "prometheus"]);
    let text_format = stdout(&out);
    let mut samples = 0;
    for line in text_format.lines().filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
        assert!(series.starts_with("natsup_"), "{line}");
        samples += 1;
    }
    assert!(samples >= 5, "{text_format}");
    assert!(text_format.contains("user=\"webhook\""), "{text_format}");

    // Thresholds: durations as the nats CLI writes them; days as whole numbers.
    let code = |args: &[&str]| {
        let mut all = vec!["verify", "--user", "matchmaker"];
        all.extend_from_slice(args);
        ws.run(&untimed(&all)).status.code()
    };
    assert_eq!(
        code(&["--connect-warn", "0s", "--connect-critical", "10s"]),
        Some(1)
    );
    assert_eq!(
        code(&["--connect-warn", "0s", "--connect-critical", "0s"]),
        Some(2)
    );
    assert_eq!(code(&["--rtt-warn", "0s"]), Some(1));
    assert_eq!(
        code(&["--rtt-warn", "500ms", "--rtt-critical", "1s"]),
        Some(0)
    );
    assert_eq!(
        code(&["--cert-warn-days", "400", "--cert-critical-days", "7"]),
        Some(1)
    );
    assert_eq!(
        code(&["--cert-warn-days", "400", "--cert-critical-days", "400"]),
        Some(2)
    );
    let out = ws.run(&["verify", "--rtt-warn", "half a second"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--rtt-warn"), "{}", text(&out));
    let out = ws.run(&untimed(&[
        "verify",
        "--format",
        "nagios",
        "--rtt-warn",
        "0s",
        "--user",
        "webhook",
    ]));
    assert!(stdout(&out).starts_with("WARNING "), "{}", text(&out));
}

#[test]
fn smoke_mode_needs_only_env_vars() {
    let (ws, config, state) = rendered_workspace("smoke");
    let server = serve(&config, &state, ws.port);
    let password = ws.login("gameserver").password;

    let out = smoke(&ws, "gameserver", &password, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("OK"), "{}", text(&out));

    let out = smoke(&ws, "gameserver", "wrong", &["--format", "nagios"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stdout(&out).starts_with("CRITICAL"), "{}", text(&out));

    // Nothing listening: the check cannot run at all.
    drop(server);
    let out = smoke(&ws, "gameserver", &password, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// The users a JSON report checked.
fn scopes(out: &Output) -> std::collections::BTreeSet<String> {
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)));
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["scope"].as_str().unwrap().to_string())
        .collect()
}

/// Issue 11, 4.2: in a deployment, `verify` checks every user whatever the shell exported;
/// smoke mode is chosen by `--url`, or by NATS_URL only where there is no natsup.yaml.
#[test]
fn in_a_deployment_the_nats_variables_are_not_read() {
    let (ws, config, state) = rendered_workspace("envmode");
    let _server = serve(&config, &state, ws.port);
    let all: std::collections::BTreeSet<String> =
        config.users.iter().map(|u| u.name.clone()).collect();

    // What `eval "$(natsup env gameserver --format shell)"` exports, plus the NATS_URL the CI
    // example is given.
    let exported: serde_json::Value =
        serde_json::from_slice(&ws.ok(&["env", "gameserver", "--format", "json"]).stdout).unwrap();
    let mut vars: Vec<(String, String)> = exported
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    vars.push((
        "NATS_URL".into(),
        format!("tls://{}", exported["NATS_HOST"].as_str().unwrap()),
    ));
    let verify = |vars: &[(String, String)], args: &[&str]| {
        let mut cmd = ws.natsup();
        cmd.envs(vars.iter().map(|(k, v)| (k, v)))
            .args(untimed(&[&["verify", "--json"][..], args].concat()));
        cmd.output().unwrap()
    };

    let out = verify(&vars, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(scopes(&out).is_superset(&all), "{}", text(&out));

    // Not even bad values are read: a dead URL, a wrong password, a CA that is not a PEM.
    let bad: Vec<(String, String)> = [
        ("NATS_URL", "tls://127.0.0.1:1"),
        ("NATS_USER", "nobody"),
        ("NATS_PASSWORD", "wrong"),
        ("NATS_CA_CONTENTS", "not a pem"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let out = verify(&bad, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(scopes(&out).is_superset(&all), "{}", text(&out));

    // `--url` chooses smoke mode explicitly, and then the variables fill in its login.
    let url = format!("tls://127.0.0.1:{}", ws.port);
    let out = verify(&vars, &["--url", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let checked = scopes(&out);
    assert!(checked.contains("gameserver"), "{}", text(&out));
    assert!(!checked.contains("webhook"), "{}", text(&out));
}

/// Issue 11, 4.6 e: a URL's `user:pass@` never reaches smoke mode's output, in any format,
/// whether the URL is bad (port, scheme) or names a host that is not there.
#[test]
fn smoke_mode_never_echoes_a_password_from_the_url() {
    let (ws, _config, _state) = rendered_workspace("urlpw");
    let secret = "s3cr3t-in-the-url";
    let port = ws.port.to_string();
    let ca = ws.login("gameserver").ca_pem;
    let urls = [
        format!("tls://gameserver:{secret}@127.0.0.1:99999"),
        format!("tls://gameserver:{secret}@127.0.0.1:{port}"),
        format!("tls://gameserver:{secret}@no-such-host.invalid:4222"),
        format!("http://gameserver:{secret}@127.0.0.1:{port}"),
        format!("tls://gameserver:{secret}@[::1:{port}"),
        format!("tls://gameserver:{secret}@:{port}"),
    ];
    for url in &urls {
        for format in ["text", "json", "nagios", "prometheus"] {
            let args = ["--format", format];
            // From NATS_URL, where there is no natsup.yaml.
            let mut both = vec![smoke_at(url, &ca, "gameserver", "wrong", &args)];
            // From --url, in the deployment.
            let mut cmd = ws.natsup();
            cmd.env("NATS_PASSWORD", "wrong")
                .args(untimed(&["verify", "--url", url, "--user", "gameserver"]))
                .args(["--ca-contents", &ca])
                .args(args);
            both.push(cmd.output().unwrap());
            for out in both {
                assert_ne!(out.status.code(), Some(0), "{url}: {}", text(&out));
                assert!(
                    !text(&out).contains(secret),
                    "{url} {format}: {}",
                    text(&out)
                );
            }
        }
    }
}

/// Like [`smoke`], with the URL given.
fn smoke_at(url: &str, ca_pem: &str, user: &str, password: &str, args: &[&str]) -> Output {
    let empty = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_natsup"))
        .current_dir(empty.path())
        .env("NATSUP_STATE_DIR", empty.path().join("state"))
        .env("NATS_URL", url)
        .env("NATS_CA_CONTENTS", ca_pem)
        .env("NATS_USER", user)
        .env("NATS_PASSWORD", password)
        .env_remove("NATS_CA")
        .arg("verify")
        .args(untimed(args))
        .output()
        .unwrap()
}
