//! Local state survives crashes (issue 11, 4.5): a run that dies between writing a key and its
//! certificate leaves a half-state on disk; the next `natsup render` repairs it and renders a
//! bundle nats-server loads (`nats-server -t` checks that the key is the certificate's).
//! Each half-state is made the way a crash makes it: by the real binary stopped at a
//! failpoint between the two writes, or written by hand where no natsup run makes it any more.

use natsup_dev_support as support;

use std::path::{Path, PathBuf};

use natsup::pki::{self, ServerCert};
use natsup::secret::Secret;
use support::nats_server_check_config;
use support::workspace::{Workspace, text};

const HOST: &str = "203.0.113.7";

fn init(ws: &Workspace, name: &str) -> PathBuf {
    ws.ok(&["init", "--name", name, "--host", HOST]);
    ws.state_dir().join(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn pair_matches(cert: &Path, key: &Path) -> bool {
    ServerCert::from_pem(read(cert), Secret::new(read(key)))
        .unwrap()
        .key_matches()
        .unwrap()
}

/// `natsup render` succeeds, and what it rendered works: the state's and the bundle's key are
/// their certificate's, the certificate chains to the state's CA for HOST, and nats-server
/// loads the bundle. Returns what natsup said.
fn render_works(ws: &Workspace, state: &Path) -> String {
    let out = ws.run(&["render"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let server = state.join("server");
    assert!(
        pair_matches(
            &server.join("nats-server-cert.pem"),
            &server.join("nats-server-key.pem")
        ),
        "the state's server key is not its certificate's\n{said}"
    );
    assert!(
        !server.join("next-pair.pem").exists(),
        "the journal was left behind"
    );
    let config = ws.path().join("natsup-out/nats-config");
    let cert = config.join("nats-server-cert.pem");
    let key = config.join("nats-server-key.pem");
    assert!(
        pair_matches(&cert, &key),
        "the bundle's key is not its certificate's"
    );
    let chain = pki::pem_certs(&read(&cert)).unwrap();
    pki::verify_server_chain(&read(&state.join("ca/rootCA.pem")), &chain, HOST)
        .unwrap_or_else(|e| panic!("the certificate does not chain to the CA: {e}"));
    // The rendered config names the files where the container sees them (/config/...).
    let conf = read(&config.join("nats-server.conf"))
        .replace("/config/", &format!("{}/", config.display()));
    let checked = ws.path().join("checked.conf");
    std::fs::write(&checked, conf).unwrap();
    nats_server_check_config(&checked)
        .unwrap_or_else(|e| panic!("nats-server refused the bundle:\n{e}"));
    said
}

#[test]
fn a_crash_between_the_server_key_and_its_certificate_is_finished_by_the_next_run() {
    let ws = Workspace::new("pair");
    let state = init(&ws, "pair");
    render_works(&ws, &state);
    let server = state.join("server");

    // A new name makes the next run issue a new pair; it dies after writing the key.
    ws.edit_config("- nats\n", "- nats\n- nats.internal\n");
    ws.crash_at("state:server-key-written", &["render"]);
    assert!(
        !pair_matches(
            &server.join("nats-server-cert.pem"),
            &server.join("nats-server-key.pem")
        ),
        "the crash was expected to leave a new key beside the old certificate"
    );
    assert!(server.join("next-pair.pem").exists());

    let said = render_works(&ws, &state);
    assert!(
        said.contains("finished writing the server certificate"),
        "{said}"
    );
    let cert = pki::inspect(&read(&server.join("nats-server-cert.pem"))).unwrap();
    assert!(cert.sans.iter().any(|s| s == "nats.internal"), "{cert:?}");
}

#[test]
fn a_mismatched_server_pair_found_anyway_gets_a_new_certificate() {
    let ws = Workspace::new("mismatch");
    let state = init(&ws, "mismatch");
    render_works(&ws, &state);
    let server = state.join("server");
    // What an older natsup (no journal) left when it died between the two writes: a key that
    // belongs to another certificate.
    let other = Workspace::new("other");
    let other_state = init(&other, "other");
    other.ok(&["render"]);
    let key = server.join("nats-server-key.pem");
    std::fs::remove_file(&key).unwrap();
    std::fs::copy(other_state.join("server/nats-server-key.pem"), &key).unwrap();

    let said = render_works(&ws, &state);
    assert!(
        said.contains("issued a server certificate") && said.contains("was not the key of"),
        "{said}"
    );
}

#[test]
fn a_server_key_without_its_certificate_gets_a_new_pair() {
    let ws = Workspace::new("half");
    let state = init(&ws, "half");
    render_works(&ws, &state);
    for gone in ["nats-server-cert.pem", "nats-server-key.pem"] {
        std::fs::remove_file(state.join("server").join(gone)).unwrap();
        let said = render_works(&ws, &state);
        assert!(
            said.contains("issued a server certificate") && said.contains("was there without"),
            "{gone}: {said}"
        );
    }
}

#[test]
fn a_crash_while_creating_the_ca_is_repaired_not_reported_corrupt() {
    // Key written, certificate not: the real binary stopped between the two.
    let ws = Workspace::new("ca-key");
    let state = init(&ws, "cakey");
    ws.crash_at("state:ca-key-written", &["render"]);
    assert!(state.join("ca/rootCA-key.pem").exists());
    assert!(!state.join("ca/rootCA.pem").exists());
    let said = render_works(&ws, &state);
    assert!(
        said.contains("a run stopped while creating the CA") && said.contains("created a new CA"),
        "{said}"
    );
    let ca = pki::inspect(&read(&state.join("ca/rootCA.pem"))).unwrap();
    assert!(ca.is_ca);

    // The reverse (certificate without key), as a run that wrote them in the other order
    // would leave it.
    let ws = Workspace::new("ca-cert");
    let state = init(&ws, "cacert");
    render_works(&ws, &state);
    std::fs::remove_dir_all(state.join("server")).unwrap();
    std::fs::remove_file(state.join("ca/rootCA-key.pem")).unwrap();
    let said = render_works(&ws, &state);
    assert!(
        said.contains("a run stopped while creating the CA"),
        "{said}"
    );
}

#[test]
fn a_ca_a_server_certificate_came_from_is_never_made_again() {
    let ws = Workspace::new("ca-used");
    let state = init(&ws, "caused");
    render_works(&ws, &state);
    let cert = read(&state.join("ca/rootCA.pem"));
    std::fs::remove_file(state.join("ca/rootCA-key.pem")).unwrap();
    let out = ws.run(&["render"]);
    // Still reported as corrupt (exit 1): a new CA would cut off every client of this one.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is missing"), "{}", text(&out));
    assert_eq!(
        read(&state.join("ca/rootCA.pem")),
        cert,
        "the CA clients trust was replaced"
    );
}

#[test]
fn a_crash_while_creating_the_next_ca_drops_it() {
    let ws = Workspace::new("next-ca");
    let state = init(&ws, "nextca");
    render_works(&ws, &state);
    // `rotate-ca --begin` died after writing the next CA's key: write that key by hand (the
    // command also needs a server, which this test has none of).
    let next = pki::new_ca("nextca", time::OffsetDateTime::now_utc()).unwrap();
    let next_key = state.join("ca/next-rootCA-key.pem");
    std::fs::write(&next_key, next.key_pem().expose()).unwrap();
    let trust = read(&state.join("ca/rootCA.pem"));

    let said = render_works(&ws, &state);
    assert!(said.contains("created the next CA"), "{said}");
    assert!(!next_key.exists());
    assert_eq!(read(&state.join("ca/rootCA.pem")), trust);
}

/// Every rename into the state directory is followed by an fsync of that directory: until the
/// directory is on disk, a power cut can bring back the old file after natsup acted on the new
/// one. A power cut cannot be simulated here, so the system calls are watched instead.
#[test]
fn each_rename_in_the_state_is_followed_by_a_directory_fsync() {
    let ws = Workspace::new("fsync");
    let state = init(&ws, "fsync");
    let log = ws.path().join("strace.log");
    let out = std::process::Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=openat,rename,renameat,renameat2,fsync,close",
            "-o",
        ])
        .arg(&log)
        .arg(ws.natsup().get_program())
        .arg("render")
        .current_dir(ws.path())
        .envs(
            ws.natsup()
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k, v))),
        )
        .output()
        .expect("run strace (scripts/setup-test-deps.sh installs it)");
    assert!(out.status.success(), "{}", text(&out));
    let calls: Vec<String> = read(&log)
        .lines()
        // `-f` puts the thread id first.
        .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest))
        // strace pads results into a column.
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let state = state.display().to_string();
    let mut renames = 0;
    for (i, call) in calls.iter().enumerate() {
        if !call.starts_with("rename") || !call.contains(&state) {
            continue;
        }
        renames += 1;
        let target = call.rsplit('"').nth(1).unwrap();
        let dir = Path::new(target).parent().unwrap().display().to_string();
        // openat(AT_FDCWD, "DIR", O_RDONLY|O_CLOEXEC) = FD, then fsync(FD), before the next rename.
        let rest = &calls[i + 1..];
        let until = rest
            .iter()
            .position(|c| c.starts_with("rename"))
            .unwrap_or(rest.len());
        let synced = rest[..until].iter().any(|c| {
            c.contains(&format!("\"{dir}\""))
                && c.starts_with("openat")
                && c.rsplit("= ").next().is_some_and(|fd| {
                    rest[..until]
                        .iter()
                        .any(|f| f == &format!("fsync({}) = 0", fd.trim()))
                })
        });
        assert!(synced, "no fsync of {dir} after {call}");
    }
    assert!(renames >= 5, "the first render wrote {renames} state files");
}

/// natsup.yaml of deployment `name` as a `nodes` list of one, named `node`, on HOST, with the
/// id `init` gave the workspace's config.
fn one_node(ws: &Workspace, name: &str, node: &str) -> String {
    let config = ws.config();
    let id = config
        .lines()
        .find(|l| l.starts_with("id: "))
        .expect("init writes an id");
    format!("name: {name}\n{id}\nnodes:\n- name: {node}\n  host: {HOST}\n  ssh: deploy@{HOST}\n")
}

/// `render` refuses the state as corrupt (exit 1), saying `says`, and changes none of it:
/// the CA key stays, no new CA or certificate is made.
fn refused_as_corrupt(ws: &Workspace, state: &Path, says: &str) {
    let before = support::files_under(state);
    let out = ws.run(&["render"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains(says), "{said}");
    assert!(!said.contains("created a new CA"), "{said}");
    let mut after = support::files_under(state);
    // The owner record is written before the state is read; it is no part of the CA.
    after.remove(&state.join(natsup::state::OWNER_FILE));
    let mut before = before;
    before.remove(&state.join(natsup::state::OWNER_FILE));
    assert_eq!(after, before, "the refused run changed the state");
}

/// Issue 17, item 7a: with `ca/rootCA.pem` gone, the CA key is kept and the state reported
/// corrupt whenever any node's certificate exists, also where the config no longer looks:
/// `server/` of a file that since lists `nodes`, the folder of a node since renamed, and a
/// file of any name in a dropped node's folder.
#[test]
fn a_ca_without_its_certificate_is_never_made_again_while_any_node_file_exists() {
    // One server, then the same server as a `nodes` list of one: its certificate stays in
    // server/, the node's folder is new and empty.
    let ws = Workspace::new("ca-server");
    let state = init(&ws, "caserver");
    render_works(&ws, &state);
    ws.set_config(&one_node(&ws, "caserver", "n1"));
    std::fs::remove_file(state.join("ca/rootCA.pem")).unwrap();
    refused_as_corrupt(&ws, &state, "is missing");

    // A node renamed: its certificate is in the old name's folder.
    let ws = Workspace::new("ca-renamed");
    ws.ok(&["init", "--name", "carenamed", "--host", HOST]);
    let state = ws.state_dir().join("carenamed");
    ws.set_config(&one_node(&ws, "carenamed", "old"));
    ws.ok(&["render"]);
    assert!(state.join("nodes/old/nats-server-cert.pem").exists());
    ws.set_config(&one_node(&ws, "carenamed", "new"));
    std::fs::remove_file(state.join("ca/rootCA.pem")).unwrap();
    refused_as_corrupt(&ws, &state, "is missing");

    // A dropped node's folder that holds only a copy the operator made.
    let ws = Workspace::new("ca-copy");
    ws.ok(&["init", "--name", "cacopy", "--host", HOST]);
    let state = ws.state_dir().join("cacopy");
    ws.set_config(&one_node(&ws, "cacopy", "old"));
    ws.ok(&["render"]);
    let old = state.join("nodes/old");
    std::fs::rename(
        old.join("nats-server-cert.pem"),
        old.join("nats-server-cert.pem.bak"),
    )
    .unwrap();
    std::fs::remove_file(old.join("nats-server-key.pem")).unwrap();
    ws.set_config(&one_node(&ws, "cacopy", "new"));
    std::fs::remove_file(state.join("ca/rootCA.pem")).unwrap();
    refused_as_corrupt(&ws, &state, "is missing");
}

/// Issue 17, item 7a: a state whose `ca/` is gone altogether while node certificates from it
/// remain is corrupt: a new CA would cut off every client, and `up` would deploy it.
#[test]
fn a_lost_ca_with_node_certificates_is_corrupt_not_made_again() {
    let ws = Workspace::new("ca-lost");
    let state = init(&ws, "calost");
    render_works(&ws, &state);
    std::fs::remove_dir_all(state.join("ca")).unwrap();
    refused_as_corrupt(&ws, &state, "holds no CA");
    assert!(!state.join("ca/rootCA-key.pem").exists());

    // Moving the certificates away too, as the error says, starts over with a new CA.
    std::fs::rename(state.join("server"), ws.path().join("server-moved")).unwrap();
    let said = render_works(&ws, &state);
    assert!(said.contains("created a new CA"), "{said}");
}

/// Issue 17, item 7b: `ca import --force` writes the new key, then the new certificate; one
/// that died in between leaves the new key beside the old certificate. Every later run
/// reports it, naming both files, and issues nothing from the mismatched pair; the same
/// import again finishes it.
#[test]
fn an_interrupted_ca_import_is_reported_and_the_same_import_finishes_it() {
    let ws = Workspace::new("ca-import");
    let state = init(&ws, "caimport");
    render_works(&ws, &state);
    let ca = pki::new_ca("imported", time::OffsetDateTime::now_utc()).unwrap();
    std::fs::write(ws.path().join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(ws.path().join("ca-key.pem"), ca.key_pem().expose()).unwrap();
    let import = [
        "ca",
        "import",
        "--force",
        "--cert",
        "ca.pem",
        "--key",
        "ca-key.pem",
    ];
    ws.crash_at("state:ca-key-written", &import);
    assert_eq!(
        read(&state.join("ca/rootCA-key.pem")),
        ca.key_pem().expose()
    );
    assert_ne!(read(&state.join("ca/rootCA.pem")), ca.cert_pem());

    let key = state.join("ca/rootCA-key.pem").display().to_string();
    let cert = state.join("ca/rootCA.pem").display().to_string();
    for args in [
        &["render"][..],
        &["env", "matchmaker"],
        &["renew-cert", "--local"],
    ] {
        let out = ws.run(args);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(
            said.contains(&format!(
                "{key}: is not the key of the CA certificate {cert}"
            )) && said.contains("ca import --force"),
            "{args:?}: {said}"
        );
    }

    ws.ok(&import);
    let said = render_works(&ws, &state);
    assert!(said.contains("issued by another CA"), "{said}");
    let served = pki::inspect(&read(&state.join("server/nats-server-cert.pem"))).unwrap();
    assert_eq!(served.issuer, ca.info().subject);
}
