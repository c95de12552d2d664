//! Two deployments with one `name` never share a state (issue 17, item 4). The state directory
//! is `<state-dir>/<name>/`, so a copy of natsup.yaml for staging would find prod's CA and
//! passwords: its `deployment.yaml` records the `id` and the servers of the deployment it
//! belongs to, and every command that loads the state refuses it to another deployment,
//! changing nothing of it. Runs the real binary; no server is needed: each refusal comes
//! before any connection.

use natsup_dev_support as support;

use support::workspace::{Workspace, text};

const PROD_HOST: &str = "nats.example.com";
const STAGING_HOST: &str = "staging.example.com";

/// natsup.yaml of deployment `shared` on `host`, reached over SSH at the same name; `id` as
/// written, or none (a copy of examples/bevygap.natsup.yaml has none).
fn config(ws: &Workspace, host: &str, id: Option<&str>) -> String {
    ws.ok(&[
        "init",
        "--force",
        "--name",
        "shared",
        "--host",
        host,
        "--ssh",
        &format!("deploy@{host}"),
    ]);
    let yaml = ws.config();
    let kept: Vec<&str> = yaml.lines().filter(|l| !l.starts_with("id: ")).collect();
    let mut yaml = kept.join("\n") + "\n";
    if let Some(id) = id {
        yaml = yaml.replacen("name: shared\n", &format!("name: shared\nid: {id}\n"), 1);
    }
    yaml
}

/// Every command that loads the state, as the staging copy (`-c staging.yaml`) runs them.
fn state_commands(ws: &Workspace) -> Vec<Vec<String>> {
    let ca = natsup::pki::new_ca("imported", time::OffsetDateTime::now_utc()).unwrap();
    std::fs::write(ws.path().join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(ws.path().join("ca-key.pem"), ca.key_pem().expose()).unwrap();
    [
        &["render"][..],
        &["plan"],
        &["up"],
        &["status"],
        &["verify"],
        &["env", "matchmaker"],
        &["context"],
        &["bundle", "matchmaker", "--out", "bundle"],
        &["ca", "path"],
        &["ca", "show"],
        &[
            "ca",
            "import",
            "--force",
            "--cert",
            "ca.pem",
            "--key",
            "ca-key.pem",
        ],
        &["rotate-passwords"],
        &["renew-cert"],
        &["rotate-ca", "--begin"],
    ]
    .iter()
    .map(|args| {
        ["-c", "staging.yaml"]
            .iter()
            .chain(args.iter())
            .map(|s| s.to_string())
            .collect()
    })
    .collect()
}

/// Prod renders its state; the staging config (`staging`) is refused it by every command, with
/// `says` in the error, and prod's state stays byte for byte what it was.
fn refused(prod: Option<&str>, staging: (&str, Option<&str>), says: &str) {
    refused_as(prod, staging, |yaml| yaml, says)
}

/// As [`refused`], with the staging copy edited by `edit` after `init` made it.
fn refused_as(
    prod: Option<&str>,
    staging: (&str, Option<&str>),
    edit: impl Fn(String) -> String,
    says: &str,
) {
    let ws = Workspace::new("owner");
    let prod_yaml = config(&ws, PROD_HOST, prod);
    let staging_yaml = edit(config(&ws, staging.0, staging.1));
    ws.set_config(&prod_yaml);
    std::fs::write(ws.path().join("staging.yaml"), &staging_yaml).unwrap();
    ws.ok(&["render"]);
    let state = ws.state_dir().join("shared");
    let record = state.join(natsup::state::OWNER_FILE);
    assert!(record.exists(), "render recorded no owner");
    let before = support::files_under(&state);

    for args in state_commands(&ws) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ws.run(&args);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains(says), "{args:?}: {said}");
        // Both files are named: the config that was refused, and the record that refused it.
        assert!(
            said.contains(&ws.path().join("staging.yaml").display().to_string()),
            "{args:?}: {said}"
        );
        assert!(
            said.contains(&record.display().to_string()),
            "{args:?}: {said}"
        );
        assert!(said.contains("hint:"), "{args:?}: {said}");
        assert_eq!(
            support::files_under(&state),
            before,
            "{args:?} changed the state of the other deployment"
        );
    }
    // Prod's own runs are unaffected.
    ws.ok(&["render"]);
    assert_eq!(support::files_under(&state), before);

    // Kept apart by its own name, staging gets a state of its own: another CA and other
    // passwords.
    std::fs::write(
        ws.path().join("staging.yaml"),
        staging_yaml.replacen("name: shared\n", "name: shared-staging\n", 1),
    )
    .unwrap();
    ws.ok(&["-c", "staging.yaml", "render"]);
    let other = ws.state_dir().join("shared-staging");
    assert_ne!(
        std::fs::read(other.join("ca/rootCA.pem")).unwrap(),
        std::fs::read(state.join("ca/rootCA.pem")).unwrap()
    );
    assert_ne!(
        std::fs::read(other.join("secrets.yaml")).unwrap(),
        std::fs::read(state.join("secrets.yaml")).unwrap()
    );
    assert_eq!(support::files_under(&state), before);
}

#[test]
fn a_copied_example_for_other_hosts_is_refused_the_state() {
    // examples/bevygap.natsup.yaml has no id: copied for staging, only its servers differ.
    refused(None, (STAGING_HOST, None), "names none of those servers");
}

#[test]
fn a_copy_on_the_same_machine_with_its_own_folder_and_port_is_refused_the_state() {
    // Staging beside prod on one VPS: one `host`, but another remote_dir and client port, so
    // another server.
    refused_as(
        None,
        (PROD_HOST, None),
        |yaml| {
            let kept: Vec<&str> = yaml
                .lines()
                .filter(|l| !l.starts_with("remote_dir:") && !l.starts_with("port:"))
                .collect();
            kept.join("\n") + "\nremote_dir: nats-staging\nport: 4223\n"
        },
        "names none of those servers",
    );
}

#[test]
fn a_copy_that_kept_the_id_for_other_hosts_is_refused_the_state() {
    refused(
        Some("prod1"),
        (STAGING_HOST, Some("prod1")),
        "names none of those servers",
    );
}

#[test]
fn another_id_is_refused_the_state_even_on_the_same_hosts() {
    refused(
        Some("prod1"),
        (PROD_HOST, Some("staging1")),
        "belongs to the deployment with id `prod1`",
    );
}

#[test]
fn a_config_without_the_id_is_told_the_id_to_add() {
    refused(Some("prod1"), (PROD_HOST, None), "add `id: prod1`");
}

#[test]
fn init_writes_a_random_id() {
    let ws = Workspace::new("init-id");
    let ids: Vec<String> = (0..2)
        .map(|_| {
            ws.ok(&["init", "--force", "--name", "n", "--host", PROD_HOST]);
            let yaml = ws.config();
            let line = yaml
                .lines()
                .find(|l| l.starts_with("id: "))
                .unwrap_or_else(|| panic!("no id in:\n{yaml}"));
            line["id: ".len()..].to_string()
        })
        .collect();
    for id in &ids {
        assert_eq!(id.len(), 16, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
    }
    assert_ne!(ids[0], ids[1]);
    // What init wrote loads, and its state records the id.
    ws.ok(&["render"]);
    let record =
        std::fs::read_to_string(ws.state_dir().join("n").join(natsup::state::OWNER_FILE)).unwrap();
    assert!(record.contains(&format!("id: {}", ids[1])), "{record}");
}

/// A state made by a natsup without the record, for a config without an id, keeps working
/// with no action: the first run records its servers (and nothing else changes); later an
/// id added to the config is adopted, and a changed name of one server keeps the state.
#[test]
fn an_old_state_without_a_record_keeps_working() {
    let ws = Workspace::new("old");
    ws.set_config(&config(&ws, PROD_HOST, None));
    ws.ok(&["render"]);
    let state = ws.state_dir().join("shared");
    let record = state.join(natsup::state::OWNER_FILE);
    std::fs::remove_file(&record).unwrap();
    let old = support::files_under(&state);

    // A read-only command works and writes nothing.
    ws.ok(&["env", "matchmaker"]);
    assert_eq!(support::files_under(&state), old);

    let out = ws.ok(&["render"]);
    assert!(
        !text(&out).contains("issued") && !text(&out).contains("created"),
        "{}",
        text(&out)
    );
    let mut now = support::files_under(&state);
    let written = now
        .remove(&record)
        .expect("the first run records the owner");
    assert_eq!(now, old, "the first run changed more than the record");
    let written = String::from_utf8(written).unwrap();
    assert!(written.contains(PROD_HOST), "{written}");
    assert!(!written.contains("id:"), "{written}");

    // An id added later is adopted.
    ws.edit_config("name: shared\n", "name: shared\nid: prod1\n");
    ws.ok(&["render"]);
    assert!(
        std::fs::read_to_string(&record)
            .unwrap()
            .contains("id: prod1")
    );

    // A new DNS name for the same machine (same ssh destination and remote dir): same
    // deployment, a certificate for the new name.
    ws.edit_config(&format!("host: {PROD_HOST}"), "host: nats2.example.com");
    let out = ws.ok(&["render"]);
    assert!(
        text(&out).contains("issued a server certificate"),
        "{}",
        text(&out)
    );

    // Moved to other servers altogether: refused until the record is removed, as the hint says.
    ws.edit_config(
        &format!("destination: deploy@{PROD_HOST}"),
        "destination: deploy@elsewhere.example.com",
    );
    ws.edit_config("host: nats2.example.com", "host: elsewhere.example.com");
    let out = ws.run(&["render"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("remove {}", record.display())),
        "{}",
        text(&out)
    );
    std::fs::remove_file(&record).unwrap();
    ws.ok(&["render"]);
    assert!(
        std::fs::read_to_string(&record)
            .unwrap()
            .contains("elsewhere.example.com")
    );
}
