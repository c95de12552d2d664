//! The human side of the terminal (issue 5), through the real binary: snapshots of what people
//! read (errors, plan, verify, progress lines), a pseudo-terminal for the spinner, NO_COLOR,
//! --quiet, -v, completions and the man page.

use natsup_dev_support as support;

use std::process::{Command, Output};

use support::workspace::{Workspace, text};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Replaces what changes from run to run: durations, ports, dates, serials, temp paths.
fn stable(ws: &Workspace) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(&regex_escape(&ws.path().display().to_string()), "[tmp]");
    s.add_filter(r"\d+(\.\d+)?(ms|s)\b", "[time]");
    // Column padding depends on how wide each time was.
    s.add_filter(r" {2,}\[time\]", "  [time]");
    s.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[port]");
    s.add_filter(
        r"\d{4}-\d{2}-\d{2} \(\d+ days left\)",
        "[date] ([n] days left)",
    );
    s.add_filter(r"(cert|key)-[0-9a-f]{16}\.pem", "$1-[serial].pem");
    s.add_filter(r"REDACTED [0-9a-f]{8}", "REDACTED [hash]");
    s.add_filter(r"natsup_verify_[0-9a-f]{12}", "natsup_verify_[id]");
    s.add_filter(r" +\n", "\n");
    s
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

#[test]
fn errors_are_one_sentence_and_a_hint() {
    let ws = Workspace::new("errs");
    let settings = stable(&ws);
    let out = ws.run(&["render"]);
    assert_eq!(out.status.code(), Some(2));
    settings.bind(|| insta::assert_snapshot!("error_no_config", stderr(&out)));

    ws.set_config("name: t\nhost: nats.example.com\nusers:\n- name: game server\n");
    let out = ws.run(&["up", "--local"]);
    assert_eq!(out.status.code(), Some(2));
    settings.bind(|| insta::assert_snapshot!("error_bad_user_name", stderr(&out)));

    ws.ok(&[
        "init",
        "--name",
        "t",
        "--host",
        "nats.example.com",
        "--force",
    ]);
    let out = ws.run(&["up"]);
    assert_eq!(out.status.code(), Some(2));
    settings.bind(|| insta::assert_snapshot!("error_no_ssh_section", stderr(&out)));
    {
        let out = &out;
        assert!(!text(out).contains("panicked") && !text(out).contains("Error {"));
    }
}

#[test]
fn progress_plan_and_verify_read_well() {
    let ws = Workspace::new("term");
    ws.init_local("term");
    let settings = stable(&ws);

    // Not a terminal: plain lines on stderr, the report on stdout, no escape codes at all.
    let out = ws.ok(&["up", "--local"]);
    assert!(
        !text(&out).contains('\u{1b}'),
        "escape codes off a terminal"
    );
    settings.bind(|| insta::assert_snapshot!("up_fresh_stderr", stderr(&out)));
    settings.bind(|| insta::assert_snapshot!("up_fresh_stdout", stdout(&out)));

    ws.edit_config("- name: webhook\n", "- name: webhook\n- name: analytics\n");
    let out = ws.ok(&["plan", "--local"]);
    settings.bind(|| {
        insta::assert_snapshot!("plan_add_user", format!("{}{}", stdout(&out), stderr(&out)))
    });
    let out = ws.ok(&["plan", "--local", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["action"], "reload");

    let out = ws.verify(&["--user", "matchmaker"]);
    settings.bind(|| insta::assert_snapshot!("verify_one_user", stdout(&out)));

    // --quiet: results only.
    let out = ws.ok(&["--quiet", "up", "--local"]);
    assert_eq!(stderr(&out), "", "--quiet printed progress");
    assert!(stdout(&out).contains("checks OK"), "{}", text(&out));

    // -v: every remote command with its duration, and no secret.
    let out = ws.ok(&["-v", "up", "--local"]);
    let log = stderr(&out);
    assert!(
        log.contains("inspecting the server: sh -c <script"),
        "{log}"
    );
    assert!(log.contains(" exited 0 in "), "{log}");
    assert!(
        !log.contains("$2b$") && !log.contains("PRIVATE KEY"),
        "{log}"
    );
    let password = ws.login("analytics").password;
    assert!(!log.contains(&password));
}

/// Runs natsup under a pseudo-terminal (util-linux `script`), returning what the terminal got.
fn on_a_terminal(ws: &Workspace, args: &str, no_color: bool) -> String {
    let mut cmd = Command::new("script");
    cmd.args([
        "-qec",
        &format!("{} {args}", env!("CARGO_BIN_EXE_natsup")),
        "/dev/null",
    ])
    .current_dir(ws.path())
    .env("NATSUP_STATE_DIR", ws.state_dir())
    .env("TERM", "xterm-256color")
    .env_remove("NATS_URL")
    .env_remove("NATS_PASSWORD");
    if no_color {
        cmd.env("NO_COLOR", "1");
    } else {
        cmd.env_remove("NO_COLOR");
    }
    let out = cmd
        .output()
        .expect("script (util-linux) runs natsup on a pty");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_terminal_gets_a_spinner_and_colors_unless_no_color() {
    let ws = Workspace::new("pty");
    ws.init_local("pty");
    let screen = on_a_terminal(&ws, "up --local", false);
    // The spinner redraws its line ("\r" + clear line) with the step name and elapsed time.
    assert!(
        screen.contains("\r\u{1b}[2K"),
        "no spinner redraws:\n{screen:?}"
    );
    assert!(screen.contains("inspecting the server (0s)"), "{screen:?}");
    assert!(
        screen.contains("\u{1b}[36m"),
        "no color on a color terminal"
    );
    // The finished steps stay as plain lines.
    assert!(
        screen.contains("inspecting the server: plan: start"),
        "{screen:?}"
    );
    assert!(screen.contains("checks OK"));

    let screen = on_a_terminal(&ws, "up --local", true);
    assert!(
        screen.contains("\r\u{1b}[2K"),
        "NO_COLOR should keep the spinner"
    );
    assert!(
        !screen.contains("\u{1b}[36m"),
        "NO_COLOR=1 but colors:\n{screen:?}"
    );
}

#[test]
fn completions_and_the_man_page() {
    let ws = Workspace::new("compl");
    for shell in ["bash", "zsh", "fish"] {
        let out = ws.ok(&["completions", shell]);
        let script = stdout(&out);
        for word in ["rotate-passwords", "renew-cert", "accept-new-host-key"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let out = ws.ok(&["man"]);
    let roff = stdout(&out);
    assert!(
        roff.starts_with(".ie") || roff.starts_with(".TH"),
        "{}",
        &roff[..80]
    );
    assert!(roff.contains("natsup"));
}
