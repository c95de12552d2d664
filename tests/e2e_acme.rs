//! `tls.issuer: acme` against a real ACME CA: Debian's pebble (Let's Encrypt's test CA) with
//! its validation on, and pebble-challtestsrv answering its DNS (issue 13). natsup runs over the
//! test sshd; the http-01 responder runs in the real Docker engine. Never PEBBLE_VA_ALWAYS_VALID;
//! pebble's random bad-nonce rejections stay on.
//!
//! Pebble resolves the test name through challtestsrv, but natsup's own checks and the test's
//! clients use the system resolver: each test adds `127.0.0.1 NAME` to /etc/hosts with a name
//! no one else uses, and removes it when it ends.

use natsup_dev_support as support;

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use support::load::{self, Crowd};
use support::workspace::{Login, Workspace, runtime, text};
use support::*;

const HINT: &str = "run ./scripts/setup-test-deps.sh and source target/test-deps/env";

/// The standalone responder's image, built locally by setup-test-deps.sh.
fn responder_image() -> String {
    let image = std::env::var("NATSUP_TEST_ACME_IMAGE")
        .unwrap_or_else(|_| panic!("NATSUP_TEST_ACME_IMAGE is not set: {HINT}"));
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .output()
        .expect("run docker");
    assert!(out.status.success(), "image {image} is missing: {HINT}");
    image
}

/// pebble + pebble-challtestsrv on free ports, killed when dropped.
struct Pebble {
    dir: tempfile::TempDir,
    pebble: Option<Child>,
    challtestsrv: Child,
    acme_port: u16,
    mgmt_port: u16,
    challtest_mgmt: u16,
    /// Where pebble's validation connects (`acme.http01.port`).
    http_port: u16,
}

impl Pebble {
    /// `validity`: pebble's certificate lifetime in seconds (its default is 5 years). No
    /// authorization reuse: every order is validated again.
    fn start(validity: Option<u64>) -> Pebble {
        Pebble::start_reusing(validity, 0)
    }

    /// `authz_reuse`: the percentage of new orders for which pebble reuses an authorization
    /// still valid from an earlier order of the account (`PEBBLE_AUTHZREUSE`), as Let's
    /// Encrypt does for up to 30 days: such an order has no challenge to serve.
    fn start_reusing(validity: Option<u64>, authz_reuse: u8) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        // Pebble's own HTTPS certificate, from a CA of its own (acme.directory_ca).
        let now = time::OffsetDateTime::now_utc();
        let ca = natsup::pki::new_ca("pebble-https", now).unwrap();
        let cert =
            natsup::pki::issue_server_cert(&ca, &["127.0.0.1".into(), "localhost".into()], 2, now)
                .unwrap();
        std::fs::write(dir.path().join("https-ca.pem"), ca.cert_pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.cert_pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), cert.key_pem().expose()).unwrap();
        let [
            acme_port,
            mgmt_port,
            http_port,
            tls_port,
            dns_port,
            challtest_mgmt,
        ] = free_ports();
        let validity = validity
            .map(|s| format!(", \"certificateValidityPeriod\": {s}"))
            .unwrap_or_default();
        std::fs::write(
            dir.path().join("pebble.json"),
            format!(
                r#"{{"pebble": {{"listenAddress": "127.0.0.1:{acme_port}",
                "managementListenAddress": "127.0.0.1:{mgmt_port}",
                "certificate": "{cert}", "privateKey": "{key}",
                "httpPort": {http_port}, "tlsPort": {tls_port}, "ocspResponderURL": "",
                "externalAccountBindingRequired": false{validity}}}}}"#,
                cert = dir.path().join("cert.pem").display(),
                key = dir.path().join("key.pem").display(),
            ),
        )
        .unwrap();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-management", &format!("127.0.0.1:{challtest_mgmt}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("pebble-challtestsrv: {e}: {HINT}"));
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            // Random validation delays off; validation itself stays on.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_AUTHZREUSE", authz_reuse.to_string())
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .unwrap_or_else(|e| panic!("pebble: {e}: {HINT}"));
        let p = Pebble {
            dir,
            pebble: Some(pebble),
            challtestsrv,
            acme_port,
            mgmt_port,
            challtest_mgmt,
            http_port,
        };
        assert!(
            wait_for_port(acme_port, Duration::from_secs(10))
                && wait_for_port(mgmt_port, Duration::from_secs(10))
                && wait_for_port(challtest_mgmt, Duration::from_secs(10)),
            "pebble did not start:\n{}",
            p.log()
        );
        p
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    fn https_ca(&self) -> PathBuf {
        self.dir.path().join("https-ca.pem")
    }

    /// Pebble's issuing root, from its management endpoint, in a file: what clients trust.
    fn root_file(&self) -> PathBuf {
        let path = self.dir.path().join("root.pem");
        if !path.exists() {
            let out = run(Command::new("curl")
                .args(["-sS", "--fail", "--cacert"])
                .arg(self.https_ca())
                .arg(format!("https://127.0.0.1:{}/roots/0", self.mgmt_port)));
            std::fs::write(&path, &out.stdout).unwrap();
        }
        path
    }

    fn root_pem(&self) -> String {
        std::fs::read_to_string(self.root_file()).unwrap()
    }

    /// Where challtestsrv's DNS sends pebble for every name.
    fn set_default_ipv4(&self, ip: &str) {
        run(Command::new("curl")
            .args(["-sS", "--fail", "-X", "POST", "-d"])
            .arg(format!(r#"{{"ip": "{ip}"}}"#))
            .arg(format!(
                "http://127.0.0.1:{}/set-default-ipv4",
                self.challtest_mgmt
            )));
    }

    fn stop_pebble(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        ["pebble.log", "pebble.err", "challtestsrv.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop_pebble();
        let _ = self.challtestsrv.kill();
        let _ = self.challtestsrv.wait();
    }
}

/// `127.0.0.1 NAME` in /etc/hosts for as long as it lives.
struct HostsEntry {
    name: String,
}

/// /etc/hosts, open for reading and writing, under an exclusive flock: the ACME tests run in
/// processes of their own at the same time, and one that removes its line reads the file and
/// writes it back, which without the lock would drop a line another test added in between.
fn locked_hosts() -> std::fs::File {
    let hosts = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/etc/hosts")
        .expect("the ACME tests add their test name to /etc/hosts (run as root)");
    hosts.lock().expect("flock /etc/hosts");
    hosts
}

impl HostsEntry {
    fn add(prefix: &str) -> HostsEntry {
        HostsEntry::add_at(prefix, "127.0.0.1")
    }

    /// A name of this test's own that resolves to `addr` (a cluster node's address).
    fn add_at(prefix: &str, addr: &str) -> HostsEntry {
        let name = format!("{}.natsup-acme.test", unique_name(prefix));
        let mut hosts = locked_hosts();
        hosts.seek(SeekFrom::End(0)).unwrap();
        writeln!(hosts, "{addr} {name}").unwrap();
        HostsEntry { name }
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        let mut hosts = locked_hosts();
        let mut text = String::new();
        let _ = hosts.read_to_string(&mut text);
        let kept: String = text
            .lines()
            .filter(|l| !l.split_whitespace().any(|w| w == self.name))
            .map(|l| format!("{l}\n"))
            .collect();
        // In place: /etc/hosts may be a bind mount that a rename would not replace. Written
        // over from the start and then cut to length, not emptied first: another test's
        // lookup reads the file without a lock, and must never find it empty.
        let _ = hosts
            .seek(SeekFrom::Start(0))
            .and_then(|_| hosts.write_all(kept.as_bytes()))
            .and_then(|()| hosts.set_len(kept.len() as u64));
    }
}

/// A deployment over the test sshd named `host`; `up` not run yet.
fn workspace(prefix: &str, sshd: &Sshd, host: &str) -> Workspace {
    let ws = Workspace::new(prefix);
    ws.init_ssh(&unique_name(prefix), sshd);
    ws.edit_config("host: 127.0.0.1", &format!("host: {host}"));
    ws
}

fn acme_yaml(pebble: &Pebble, http01: &str) -> String {
    format!(
        "tls:\n  issuer: acme\nacme:\n  directory: {}\n  email: ops@example.com\n  directory_ca: {}\n  http01:\n    port: {}\n{http01}",
        pebble.directory(),
        pebble.https_ca().display(),
        pebble.http_port,
    )
}

fn standalone(pebble: &Pebble) -> String {
    acme_yaml(pebble, &format!("    image: {}\n", responder_image()))
}

/// natsup in the workspace, trusting pebble's root as the system's (SSL_CERT_FILE), as a
/// machine trusting Let's Encrypt's root would.
fn natsup(ws: &Workspace, pebble: &Pebble, args: &[&str]) -> Output {
    ws.natsup()
        .env("SSL_CERT_FILE", pebble.root_file())
        .args(args)
        .output()
        .expect("run natsup")
}

fn natsup_ok(ws: &Workspace, pebble: &Pebble, args: &[&str]) -> Output {
    let out = natsup(ws, pebble, args);
    assert!(
        out.status.success(),
        "natsup {args:?} failed ({}):\n{}\npebble:\n{}",
        out.status,
        text(&out),
        pebble.log()
    );
    out
}

/// A user's login over the test name, trusting `ca_pem` only.
fn login(ws: &Workspace, pebble: &Pebble, user: &str, ca_pem: &str) -> Login {
    let out = natsup_ok(ws, pebble, &["env", user, "--format", "json"]);
    let env: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Login {
        user: user.into(),
        password: env["NATS_PASSWORD"].as_str().unwrap().into(),
        ca_pem: ca_pem.into(),
        port: ws.port,
    }
}

/// Connects as `login` to `tls://HOST:PORT`, trusting only its CA PEM; the error if refused.
fn connect_by_name(host: &str, login: &Login) -> Result<(), String> {
    let rt = runtime();
    rt.block_on(async {
        let client = login
            .options()
            .connect(format!("tls://{host}:{}", login.port))
            .await
            .map_err(|e| support::workspace::error_chain(&e))?;
        client
            .flush()
            .await
            .map_err(|e| support::workspace::error_chain(&e))?;
        Ok(())
    })
}

/// The certificate the server presents: (issuer, serial).
fn served(ws: &Workspace, host: &str) -> (String, String) {
    let rt = runtime();
    let probe = rt
        .block_on(natsup::tls_probe::probe(
            &format!("127.0.0.1:{}", ws.port),
            host,
            Duration::from_secs(5),
        ))
        .expect("probe");
    let info = natsup::pki::inspect_der(&probe.chain[0]).unwrap();
    (info.issuer, info.serial)
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The standalone responder containers of this test's deployment, running or not: none once
/// an order is over. natsup names one server's responder `natsup-acme-<deployment name>` (a
/// cluster node's adds `-<node name>`; src/acme.rs) and labels it `natsup.acme=responder`
/// (src/scripts/acme.sh), and each test's deployment name is its own (`unique_name`), so
/// another test's responder, up at the same moment, is not seen here.
fn responder_containers(ws: &Workspace) -> Vec<String> {
    let own = format!("natsup-acme-{}", ws_name(ws));
    // Docker's name filter matches substrings: the exact name is checked below.
    let out = run(Command::new("docker").args([
        "ps",
        "-a",
        "--filter",
        "label=natsup.acme=responder",
        "--filter",
        &format!("name={own}"),
        "--format",
        "{{.Names}}",
    ]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|name| *name == own)
        .map(str::to_string)
        .collect()
}

#[test]
fn bootstrap_with_issuer_acme_serves_pebbles_certificate() {
    let pebble = Pebble::start(None);
    let hosts = HostsEntry::add("boot");
    let sshd = Sshd::start();
    let ws = workspace("acmeboot", &sshd, &hosts.name);
    ws.set_config(&format!("{}{}", ws.config(), standalone(&pebble)));

    let out = natsup_ok(&ws, &pebble, &["up"]);
    let said = text(&out);
    assert!(said.contains("created an ACME account"), "{said}");
    assert!(
        said.contains("the ACME order leaves out localhost, ::1, nats"),
        "{said}"
    );
    assert!(said.contains("the ACME CA issued certificate"), "{said}");
    assert!(said.contains("OK: 15 of 15 checks OK"), "{said}");
    // One connection for the order and the deployment, shown once.
    let connected = said
        .lines()
        .filter(|l| l.starts_with("connecting to") && !l.ends_with("..."))
        .count();
    assert_eq!(connected, 1, "{said}");

    // Every user connects trusting only pebble's root, by name.
    for user in ["matchmaker", "matchmaker_httpd", "gameserver", "webhook"] {
        let login = login(&ws, &pebble, user, &pebble.root_pem());
        connect_by_name(&hosts.name, &login).unwrap_or_else(|e| panic!("{user}: {e}"));
    }
    // ... and natsup's own CA is not what it is served with.
    let ca =
        std::fs::read_to_string(ws.state_dir().join(ws_name(&ws)).join("ca/rootCA.pem")).unwrap();
    let login_ca = login(&ws, &pebble, "matchmaker", &ca);
    assert!(connect_by_name(&hosts.name, &login_ca).is_err());

    let (issuer, serial) = served(&ws, &hosts.name);
    assert!(issuer.contains("Pebble Intermediate CA"), "{issuer}");

    // The account and the key stay private; the responder is gone, its folder too.
    let acme_dir = ws.state_dir().join(ws_name(&ws)).join("acme");
    let account = std::fs::read_dir(&acme_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("account-")
        })
        .expect("an account file");
    assert_eq!(mode(&account), 0o600);
    assert_eq!(mode(&acme_dir.join("key.pem")), 0o600);
    assert_eq!(responder_containers(&ws), Vec::<String>::new());
    assert!(!ws.remote_dir.join(".natsup-acme-www").exists());

    // Clients are handed no CA: bevygap's connect then uses the system's roots.
    let out = natsup_ok(&ws, &pebble, &["env", "gameserver", "--format", "json"]);
    let env: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(env.get("NATS_CA").is_none(), "{env}");
    assert!(env.get("NATS_HOST").is_some(), "{env}");
    let out = natsup_ok(&ws, &pebble, &["env", "gameserver", "--ca-arg"]);
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert!(
        text(&out).contains("no CA is needed: the server's certificate is publicly trusted"),
        "{}",
        text(&out)
    );
    let bundle = ws.path().join("bundle");
    natsup_ok(&ws, &pebble, &["bundle", "gameserver", "--out", "bundle"]);
    assert!(!bundle.join("rootCA.pem").exists());
    let env_file = std::fs::read_to_string(bundle.join("nats.env")).unwrap();
    assert!(!env_file.contains("NATS_CA"), "{env_file}");
    natsup_ok(&ws, &pebble, &["context", "--user", "matchmaker"]);
    let context: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            ws.path()
                .join(format!("xdg/nats/context/{}-matchmaker.json", ws_name(&ws))),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(context["ca"], "", "{context}");

    // verify checks the chain against the system's roots (here: pebble's) and says whose.
    let out = natsup_ok(&ws, &pebble, &untimed(&["verify"]));
    assert!(
        text(&out).contains("publicly trusted, issued by CN=Pebble Intermediate CA"),
        "{}",
        text(&out)
    );
    // The CI smoke check of a publicly trusted server: no config, no state, no CA.
    let password = login(&ws, &pebble, "gameserver", "").password;
    let smoke = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_natsup"))
        .current_dir(smoke.path())
        .env("SSL_CERT_FILE", pebble.root_file())
        .env("NATSUP_STATE_DIR", smoke.path().join("state"))
        .env("NATS_PASSWORD", password)
        .args(untimed(&[
            "verify",
            "--url",
            &format!("tls://{}:{}", hosts.name, ws.port),
            "--user",
            "gameserver",
            "--system-roots",
        ]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("publicly trusted, issued by"),
        "{}",
        text(&out)
    );
    let natsup_ca = ws.state_dir().join(ws_name(&ws)).join("ca/rootCA.pem");
    let out = natsup(
        &ws,
        &pebble,
        &untimed(&["verify", "--ca", natsup_ca.to_str().unwrap()]),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // natsup's CA signs nothing served: rotating it is refused, with nothing made.
    let out = natsup(&ws, &pebble, &["rotate-ca", "--begin"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("nothing to rotate"), "{}", text(&out));
    assert!(
        !ws.state_dir()
            .join(ws_name(&ws))
            .join("ca/next-rootCA.pem")
            .exists()
    );

    // Again: nothing to do, same certificate, no new order.
    let out = natsup_ok(&ws, &pebble, &["up"]);
    assert!(text(&out).contains("plan: nothing"), "{}", text(&out));
    assert!(!text(&out).contains("ACME"), "{}", text(&out));
    assert_eq!(served(&ws, &hosts.name).1, serial);
}

/// The deployment name `workspace` gave (natsup.yaml's `name:`).
fn ws_name(ws: &Workspace) -> String {
    ws.config()
        .lines()
        .find_map(|l| l.strip_prefix("name: "))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn webroot_mode_writes_the_token_where_a_web_server_serves_it() {
    let pebble = Pebble::start(None);
    let hosts = HostsEntry::add("webroot");
    let sshd = Sshd::start();
    let ws = workspace("acmewebroot", &sshd, &hosts.name);
    // A real small web server on the validation port, serving a folder.
    let webroot = ws.path().join("www");
    std::fs::create_dir_all(&webroot).unwrap();
    std::fs::write(webroot.join("index.html"), "hello").unwrap();
    let mut httpd = Command::new("busybox")
        .args(["httpd", "-f", "-p"])
        .arg(format!("127.0.0.1:{}", pebble.http_port))
        .arg("-h")
        .arg(&webroot)
        .spawn()
        .expect("busybox httpd");
    assert!(wait_for_port(pebble.http_port, Duration::from_secs(5)));
    ws.set_config(&format!(
        "{}{}",
        ws.config(),
        acme_yaml(
            &pebble,
            &format!("    mode: webroot\n    webroot: {}\n", webroot.display())
        )
    ));

    let out = natsup(&ws, &pebble, &["up"]);
    let _ = httpd.kill();
    let _ = httpd.wait();
    assert!(out.status.success(), "{}\n{}", text(&out), pebble.log());
    let (issuer, _) = served(&ws, &hosts.name);
    assert!(issuer.contains("Pebble Intermediate CA"), "{issuer}");
    // Only natsup's token went, and only it: the site's own file stays.
    assert!(!webroot.join(".well-known").exists());
    assert!(webroot.join("index.html").exists());
    assert_eq!(responder_containers(&ws), Vec::<String>::new());
}

#[test]
fn a_taken_port_is_refused_at_preflight_naming_its_owner() {
    let pebble = Pebble::start(None);
    let hosts = HostsEntry::add("taken");
    let sshd = Sshd::start();
    let ws = workspace("acmetaken", &sshd, &hosts.name);
    ws.set_config(&format!("{}{}", ws.config(), standalone(&pebble)));
    // On loopback: pre-flight asks `ss` for any listener on the port, whatever its address.
    let _squatter = TcpListener::bind(("127.0.0.1", pebble.http_port)).unwrap();

    let out = natsup(&ws, &pebble, &["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("pre-flight check"), "{said}");
    assert!(
        said.contains(&format!("port {} is taken by e2e_acme", pebble.http_port)),
        "{said}"
    );
    assert!(said.contains("acme.http01.mode: webroot"), "{said}");
    // Nothing was ordered and nothing deployed.
    assert!(!said.contains("ordering a certificate for"), "{said}");
    assert!(!ws.remote_dir.join("docker-compose.yaml").exists());
    assert_eq!(responder_containers(&ws), Vec::<String>::new());
}

#[test]
fn acme_failures_leave_a_running_server_unchanged() {
    let mut pebble = Pebble::start(None);
    let hosts = HostsEntry::add("fail");
    let sshd = Sshd::start();
    let ws = workspace("acmefail", &sshd, &hosts.name);
    // A server on natsup's own CA first.
    natsup_ok(&ws, &pebble, &["up"]);
    let conf = ws.live_conf();
    let id = ws.project.container_id();
    let started = ws.project.started_at(&id);
    let (_, serial) = served(&ws, &hosts.name);
    ws.set_config(&format!("{}{}", ws.config(), standalone(&pebble)));

    // The name resolves elsewhere for the CA: validation fails, and pebble's detail is quoted.
    pebble.set_default_ipv4("192.0.2.1");
    let out = natsup(&ws, &pebble, &["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("the ACME CA could not validate the http-01 challenge"),
        "{said}"
    );
    assert!(
        said.contains("192.0.2.1"),
        "pebble's detail names the address: {said}"
    );
    assert!(said.contains("the server was not changed"), "{said}");
    assert_eq!(ws.live_conf(), conf);
    assert_eq!(ws.project.started_at(&id), started);
    assert_eq!(served(&ws, &hosts.name).1, serial);
    assert_eq!(responder_containers(&ws), Vec::<String>::new());

    // The CA is down: one sentence, and again nothing changed.
    pebble.stop_pebble();
    let out = natsup(&ws, &pebble, &["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!(
            "cannot reach the ACME directory {}",
            pebble.directory()
        )),
        "{said}"
    );
    assert!(said.contains("hint: check acme.directory"), "{said}");
    assert_eq!(ws.live_conf(), conf);
    assert_eq!(ws.project.started_at(&id), started);
    assert_eq!(served(&ws, &hosts.name).1, serial);
    assert_eq!(responder_containers(&ws), Vec::<String>::new());
}

#[test]
fn renewal_orders_again_when_a_third_of_the_lifetime_is_left() {
    // 45 s certificates: renewal is due after 30 s.
    let pebble = Pebble::start(Some(45));
    let hosts = HostsEntry::add("renew");
    let sshd = Sshd::start();
    let ws = workspace("acmerenew", &sshd, &hosts.name);
    ws.set_config(&format!("{}{}", ws.config(), standalone(&pebble)));
    natsup(&ws, &pebble, &["up"]);
    let (_, first) = served(&ws, &hosts.name);
    let out = natsup_ok(&ws, &pebble, &["renew-cert"]);
    assert!(text(&out).contains("no renewal needed"), "{}", text(&out));

    std::thread::sleep(Duration::from_secs(31));
    // `verify` grades a certificate with 0 days left CRITICAL, as it should: a 45-second one
    // always is. Every other check must pass.
    let out = natsup(&ws, &pebble, &["up"]);
    let said = text(&out);
    let critical: Vec<&str> = said
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("CRITICAL"))
        .collect();
    assert!(
        critical.len() == 1 && critical[0].contains("tls_certificate"),
        "{said}"
    );
    assert!(
        said.contains("ordering a certificate from the ACME CA: it expires"),
        "{said}"
    );
    let (issuer, second) = served(&ws, &hosts.name);
    assert_ne!(second, first);
    assert!(issuer.contains("Pebble Intermediate CA"), "{issuer}");

    // `renew-cert --force` orders again too, and proves the served serial.
    let out = natsup_ok(&ws, &pebble, &["renew-cert", "--force"]);
    let (_, third) = served(&ws, &hosts.name);
    assert_ne!(third, second);
    assert!(
        text(&out).contains(&format!(
            "the server presents certificate {third} from CN=Pebble Intermediate CA"
        )),
        "{}",
        text(&out)
    );
}

#[test]
fn switching_ca_acme_ca_disconnects_nobody() {
    let pebble = Pebble::start(None);
    let hosts = HostsEntry::add("switch");
    let sshd = Sshd::start();
    let ws = workspace("acmeswitch", &sshd, &hosts.name);
    // The crowd dials 127.0.0.1: natsup's certificate names it too. (A connected client is not
    // asked for the certificate again; new connections below go by name.)
    ws.edit_config("extra_sans:\n", "extra_sans:\n- 127.0.0.1\n");
    natsup_ok(&ws, &pebble, &["up"]);
    let ca =
        std::fs::read_to_string(ws.state_dir().join(ws_name(&ws)).join("ca/rootCA.pem")).unwrap();
    let both = format!("{ca}{}", pebble.root_pem());
    let rt = runtime();
    let logins: Vec<Login> = ["matchmaker", "gameserver", "webhook"]
        .iter()
        .map(|u| login(&ws, &pebble, u, &both))
        .collect();
    load::create_stream(&rt, &logins[0]);
    let crowd = Crowd::start(&rt, &logins, 20);
    std::thread::sleep(Duration::from_millis(500));

    let plain = ws.config();
    ws.set_config(&format!("{plain}{}", standalone(&pebble)));
    let out = natsup_ok(&ws, &pebble, &["up"]);
    assert!(text(&out).contains("plan: reload"), "{}", text(&out));
    let (issuer, _) = served(&ws, &hosts.name);
    assert!(issuer.contains("Pebble Intermediate CA"), "{issuer}");
    let by_name = login(&ws, &pebble, "gameserver", &pebble.root_pem());
    connect_by_name(&hosts.name, &by_name).unwrap();

    ws.set_config(&plain);
    let out = natsup_ok(&ws, &pebble, &["up"]);
    assert!(text(&out).contains("plan: reload"), "{}", text(&out));
    let (issuer, _) = served(&ws, &hosts.name);
    assert!(issuer.contains("natsup CA"), "{issuer}");
    connect_by_name(&hosts.name, &login(&ws, &pebble, "gameserver", &ca)).unwrap();

    std::thread::sleep(Duration::from_millis(500));
    let report = crowd.stop(&rt);
    assert_eq!(report.disconnects, 0, "clients were disconnected");
    assert_eq!(report.errors, 0, "publishes or reads failed");
    assert!(
        report.acked > 50,
        "the crowd barely worked: {}",
        report.acked
    );
}

/// `tls.issuer: acme` on a 3-node cluster: each node's certificate is ordered for its own
/// public name, its http-01 token served on that node (one after the other: the standalone
/// responders share this machine's port), and a client that trusts only pebble's root
/// connects to every node by name.
#[test]
fn a_cluster_gets_a_certificate_per_node_from_the_acme_ca() {
    const ADDRS: [&str; 3] = ["127.0.0.51", "127.0.0.52", "127.0.0.53"];
    let pebble = Pebble::start(None);
    let names: Vec<HostsEntry> = ADDRS
        .iter()
        .enumerate()
        .map(|(i, a)| HostsEntry::add_at(&format!("acl{}", i + 1), a))
        .collect();
    let sshd: Vec<Sshd> = ADDRS.iter().map(|a| Sshd::start_at(a, "")).collect();
    let ws = Workspace::new("acmecl");
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|i| {
            ws.path()
                .join("server")
                .join(unique_name(&format!("acl-n{i}")))
        })
        .collect();
    let projects: Vec<ComposeProject> = dirs.iter().map(|d| ComposeProject::new(d)).collect();
    let nodes: String = (0..3)
        .map(|i| {
            let s = &sshd[i];
            format!(
                "- name: n{n}\n  host: {host}\n  ssh: {user}@{a}\n  ssh_port: {p}\n  identity: {id}\n  known_hosts: {kh}\n  bind: {a}\n  remote_dir: {dir}\n",
                n = i + 1,
                host = names[i].name,
                a = ADDRS[i],
                user = s.user(),
                p = s.port(),
                id = s.identity().display(),
                kh = s.known_hosts().display(),
                dir = dirs[i].display(),
            )
        })
        .collect();
    ws.set_config(&format!(
        "name: {name}\nimage: {image}\nport: {port}\nnetwork: host\ncluster:\n  port: {route}\nnodes:\n{nodes}{acme}",
        name = unique_name("acmecl"),
        image = test_image(),
        port = ws.port,
        route = free_port_on(&ADDRS),
        acme = standalone(&pebble),
    ));
    let out = natsup_ok(&ws, &pebble, &["up"]);
    let said = text(&out);
    for n in ["n1", "n2", "n3"] {
        assert!(
            said.contains(&format!("node {n}: the ACME CA issued certificate")),
            "{said}"
        );
    }
    assert!(projects.iter().all(|p| p.container_ids().len() == 1));
    // Each node presents pebble's certificate for its own name, and a client trusting only
    // pebble's root connects to it by that name.
    let root = pebble.root_pem();
    let gameserver = login(&ws, &pebble, "gameserver", &root);
    let rt = runtime();
    for (i, entry) in names.iter().enumerate() {
        let probe = rt
            .block_on(natsup::tls_probe::probe(
                &format!("{}:{}", ADDRS[i], ws.port),
                &entry.name,
                Duration::from_secs(5),
            ))
            .expect("probe");
        let info = natsup::pki::inspect_der(&probe.chain[0]).unwrap();
        assert!(
            info.issuer.contains("Pebble"),
            "n{}: {}",
            i + 1,
            info.issuer
        );
        assert!(info.sans.contains(&entry.name), "{:?}", info.sans);
        connect_by_name(&entry.name, &gameserver)
            .unwrap_or_else(|e| panic!("n{} refused a client trusting pebble: {e}", i + 1));
    }
    // status names the issuer on every row; a second `up` orders nothing.
    let status = text(&natsup_ok(&ws, &pebble, &["status"]));
    assert_eq!(status.matches("Pebble").count(), 3, "{status}");
    let again = text(&natsup_ok(&ws, &pebble, &["up"]));
    assert!(!again.contains("ordering a certificate"), "{again}");
    assert!(again.contains("nothing to do"), "{again}");
    drop(projects);
}

/// natsup run with a failpoint (`NATSUP_FAILPOINT`: it exits 99 there, as if killed), trusting
/// pebble's root as [`natsup`] does.
fn natsup_stopped_at(ws: &Workspace, pebble: &Pebble, point: &str, args: &[&str]) -> Output {
    let out = ws
        .natsup()
        .env("SSL_CERT_FILE", pebble.root_file())
        .env("NATSUP_FAILPOINT", point)
        .args(args)
        .output()
        .expect("run natsup");
    assert_eq!(
        out.status.code(),
        Some(99),
        "{point} was not reached:\n{}\npebble:\n{}",
        text(&out),
        pebble.log()
    );
    out
}

/// Let's Encrypt reuses an authorization still valid for up to 30 days (pebble: always, with
/// PEBBLE_AUTHZREUSE=100): a second order for the same name comes back with nothing to
/// validate, so there is no token to serve. `renew-cert --force` soon after `up`, and the run
/// after one that stopped between validation and finalizing, meet exactly that (issue 17, 2).
#[test]
fn orders_whose_authorizations_are_reused_need_no_responder() {
    let pebble = Pebble::start_reusing(None, 100);
    let hosts = HostsEntry::add("reuse");
    let sshd = Sshd::start();
    let ws = workspace("acmereuse", &sshd, &hosts.name);
    ws.set_config(&format!("{}{}", ws.config(), standalone(&pebble)));

    // The first order of the account validates (nothing to reuse yet).
    let out = natsup_ok(&ws, &pebble, &["up"]);
    assert!(!text(&out).contains("no token to serve"), "{}", text(&out));
    let (issuer, first) = served(&ws, &hosts.name);
    assert!(issuer.contains("Pebble Intermediate CA"), "{issuer}");

    // The second reuses it: ordered and issued with no responder at all.
    let out = natsup_ok(&ws, &pebble, &["renew-cert", "--force"]);
    assert!(text(&out).contains("no token to serve"), "{}", text(&out));
    let (issuer, second) = served(&ws, &hosts.name);
    assert!(issuer.contains("Pebble Intermediate CA"), "{issuer}");
    assert_ne!(second, first);
    assert_eq!(responder_containers(&ws), Vec::<String>::new());

    // A run that stops after the order is ready and before it is finalized: nothing served
    // changes, and the next run's new order (its authorization reused again) goes through.
    natsup_stopped_at(&ws, &pebble, "acme:validated", &["renew-cert", "--force"]);
    assert_eq!(served(&ws, &hosts.name).1, second);
    let out = natsup_ok(&ws, &pebble, &["renew-cert", "--force"]);
    assert!(text(&out).contains("no token to serve"), "{}", text(&out));
    let (issuer, third) = served(&ws, &hosts.name);
    assert!(issuer.contains("Pebble Intermediate CA"), "{issuer}");
    assert_ne!(third, second);
    assert_eq!(responder_containers(&ws), Vec::<String>::new());
    assert!(!ws.remote_dir.join(".natsup-acme-www").exists());
}

/// The issuer of the certificate the server presents must stay the ACME CA's (issue 17, 1).
fn assert_served_by_pebble(ws: &Workspace, host: &str, serial: &str) {
    let (issuer, now) = served(ws, host);
    assert!(issuer.contains("Pebble"), "natsup's CA is served: {issuer}");
    assert_eq!(now, serial);
}

/// With `tls.issuer: acme`, a node whose stored ACME certificate no longer fits (a public name
/// added; a key beside another key's certificate, as a run that died between the two writes
/// leaves) holds only natsup's CA's certificate. `rotate-passwords` orders nothing: it must
/// refuse, before a new password is made, rather than deploy that certificate, which its own
/// check (trusting natsup's CA) would pass and every client trusting the system's roots
/// would refuse (issue 17, 1).
#[test]
fn rotate_passwords_never_deploys_natsups_ca_where_the_acme_ca_is_configured() {
    let pebble = Pebble::start(None);
    let hosts = HostsEntry::add("rotnames");
    let added = HostsEntry::add("rotnames-added");
    let sshd = Sshd::start();
    let ws = workspace("acmerot", &sshd, &hosts.name);
    ws.set_config(&format!("{}{}", ws.config(), standalone(&pebble)));
    natsup_ok(&ws, &pebble, &["up"]);
    let (_, serial) = served(&ws, &hosts.name);
    let name = ws_name(&ws);
    let conf = ws.live_conf();
    let password = ws.stored(&name, "matchmaker");
    let plain = ws.config();

    // A public name added.
    ws.edit_config("extra_sans:\n", &format!("extra_sans:\n- {}\n", added.name));
    let out = natsup(&ws, &pebble, &["rotate-passwords"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("must present the ACME CA's certificate (tls.issuer: acme)"),
        "{said}"
    );
    assert!(said.contains("run `natsup up`"), "{said}");
    assert_served_by_pebble(&ws, &hosts.name, &serial);
    assert_eq!(ws.live_conf(), conf);
    assert_eq!(
        ws.stored(&name, "matchmaker"),
        password,
        "a password was made"
    );
    // `render` (a bundle for a server by hand) refuses it too.
    let out = natsup(&ws, &pebble, &["render", "--out", "bundle"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!ws.path().join("bundle").exists());

    // A new key beside the ACME certificate.
    ws.set_config(&plain);
    let state = ws.state_dir().join(&name);
    std::fs::copy(
        state.join("server/nats-server-key.pem"),
        state.join("acme/key.pem"),
    )
    .unwrap();
    let out = natsup(&ws, &pebble, &["rotate-passwords"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("its key does not match it"),
        "{}",
        text(&out)
    );
    assert_served_by_pebble(&ws, &hosts.name, &serial);
    assert_eq!(ws.live_conf(), conf);

    // `up` orders it again; then the rotation goes through, served by the ACME CA's.
    let out = natsup_ok(&ws, &pebble, &["up"]);
    assert!(
        text(&out).contains("the ACME CA issued certificate"),
        "{}",
        text(&out)
    );
    let (_, serial) = served(&ws, &hosts.name);
    natsup_ok(&ws, &pebble, &["rotate-passwords"]);
    assert_served_by_pebble(&ws, &hosts.name, &serial);
    assert_ne!(ws.stored(&name, "matchmaker"), password);
}

/// A hostile ACME directory on a free port, over HTTPS with a CA of its own (what
/// `acme.directory_ca` is told to trust, as for pebble): it answers what an order needs up to
/// reading its authorization, whose http-01 token is `token`. Every request's path is kept in
/// `seen`: a challenge or a finalize asked of it means natsup went on with the token.
struct HostileAcme {
    dir: tempfile::TempDir,
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

impl HostileAcme {
    fn start(token: &str, name: &str) -> HostileAcme {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let ca = natsup::pki::new_ca("hostile-acme", now).unwrap();
        let cert = natsup::pki::issue_server_cert(&ca, &["127.0.0.1".into()], 2, now).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            CertificateDer::pem_slice_iter(cert.cert_pem().as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap(),
            PrivateKeyDer::from_pem_slice(cert.key_pem().expose().as_bytes()).unwrap(),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let base = format!("https://127.0.0.1:{port}");
        let (token, name, log) = (token.to_string(), name.to_string(), seen.clone());
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, base, token, name, log) = (
                    acceptor.clone(),
                    base.clone(),
                    token.clone(),
                    name.clone(),
                    log.clone(),
                );
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = serve_acme(tls, &base, &token, &name, &log).await;
                    }
                });
            }
        });
        HostileAcme {
            dir,
            port,
            seen,
            _runtime: runtime,
        }
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Answers the HTTP/1.1 requests of one connection, keeping it open between them as the ACME
/// client does.
async fn serve_acme(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    base: &str,
    token: &str,
    name: &str,
    seen: &std::sync::Mutex<Vec<String>>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut nonce = 0u32;
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tls.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let n = tls.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..head_end + length);
        let mut words = head.split_whitespace();
        let (method, path) = (
            words.next().unwrap_or("").to_string(),
            words.next().unwrap_or("").to_string(),
        );
        seen.lock().unwrap().push(format!("{method} {path}"));
        let (status, location, body) = match path.as_str() {
            "/dir" => (
                "200 OK",
                None,
                serde_json::json!({
                    "newNonce": format!("{base}/nonce"),
                    "newAccount": format!("{base}/account"),
                    "newOrder": format!("{base}/order"),
                    "revokeCert": format!("{base}/revoke"),
                    "keyChange": format!("{base}/key-change"),
                })
                .to_string(),
            ),
            "/nonce" => ("200 OK", None, String::new()),
            "/account" => (
                "201 Created",
                Some(format!("{base}/account/1")),
                serde_json::json!({"status": "valid", "orders": format!("{base}/orders")})
                    .to_string(),
            ),
            "/order" | "/order/1" => (
                "201 Created",
                Some(format!("{base}/order/1")),
                serde_json::json!({
                    "status": "pending",
                    "expires": "2099-01-01T00:00:00Z",
                    "identifiers": [{"type": "dns", "value": name}],
                    "authorizations": [format!("{base}/authz/1")],
                    "finalize": format!("{base}/finalize/1"),
                })
                .to_string(),
            ),
            "/authz/1" => (
                "200 OK",
                None,
                serde_json::json!({
                    "status": "pending",
                    "expires": "2099-01-01T00:00:00Z",
                    "identifier": {"type": "dns", "value": name},
                    "challenges": [{
                        "type": "http-01",
                        "url": format!("{base}/challenge/1"),
                        "token": token,
                        "status": "pending",
                    }],
                })
                .to_string(),
            ),
            _ => (
                "400 Bad Request",
                None,
                serde_json::json!({
                    "type": "urn:ietf:params:acme:error:malformed",
                    "detail": "the hostile test directory answers nothing past the authorization",
                })
                .to_string(),
            ),
        };
        nonce += 1;
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nReplay-Nonce: hostile-{nonce}\r\nCache-Control: no-store\r\nContent-Length: {}\r\n",
            if method == "HEAD" { 0 } else { body.len() }
        );
        if let Some(location) = location {
            response.push_str(&format!("Location: {location}\r\n"));
        }
        response.push_str("\r\n");
        if method != "HEAD" {
            response.push_str(&body);
        }
        tls.write_all(response.as_bytes()).await?;
        tls.flush().await?;
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// RFC 8555 (8.3) allows an http-01 token only base64url characters. One from a hostile or
/// broken directory that is a path (`../`, `/`) or a glob (`*`) is refused when the order is
/// read, before the server is asked anything, and nothing is written anywhere (issue 17, 3).
#[test]
fn a_token_that_is_not_base64url_is_refused_and_nothing_is_written() {
    let sshd = Sshd::start();
    let name = format!("{}.natsup-acme.test", unique_name("hostile"));
    let ws = workspace("acmehostile", &sshd, &name);
    // The web root a real web server would serve, inside the workspace: a token that climbs
    // out of `.well-known/acme-challenge/` would land in the workspace.
    let webroot = ws.path().join("site").join("www");
    std::fs::create_dir_all(&webroot).unwrap();
    std::fs::write(webroot.join("index.html"), "hello").unwrap();
    let plain = ws.config();

    for token in ["../../../x", "a/b", "*"] {
        let stub = HostileAcme::start(token, &name);
        ws.set_config(&format!(
            "{plain}tls:\n  issuer: acme\nacme:\n  directory: {}\n  directory_ca: {}\n  http01:\n    mode: webroot\n    webroot: {}\n",
            stub.directory(),
            stub.dir.path().join("ca.pem").display(),
            webroot.display(),
        ));
        let out = ws.natsup().args(["up"]).output().unwrap();
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{token}: {said}");
        assert!(said.contains("that is not base64url"), "{token}: {said}");
        assert!(
            said.contains("nothing was written on the server"),
            "{token}: {said}"
        );
        // natsup read the authorization and asked nothing more of the directory.
        let seen = stub.seen();
        assert!(
            seen.iter().any(|r| r == "POST /authz/1"),
            "the order was not read: {seen:?}"
        );
        assert!(
            !seen
                .iter()
                .any(|r| r.contains("/challenge/") || r.contains("/finalize/")),
            "{token}: natsup went on with the token: {seen:?}"
        );
        // No file anywhere: not in the web root, not above it, not on the server's side.
        assert_eq!(
            files_under(&ws.path().join("site")),
            vec![webroot.join("index.html")],
            "{token}: a file was written"
        );
        assert_eq!(
            files_under(&ws.path().join("server")),
            Vec::<PathBuf>::new(),
            "{token}"
        );
        let strays: Vec<PathBuf> = files_under(ws.path())
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n == "x" || n == "b" || n == "*")
            })
            .collect();
        assert_eq!(strays, Vec::<PathBuf>::new(), "{token}");
        assert!(!webroot.join(".well-known").exists(), "{token}");
        assert!(
            !ws.remote_dir.join("docker-compose.yaml").exists(),
            "{token}"
        );
    }
}

/// A `docker` first on the SSH user's PATH (sshd's SetEnv) that stands in for a responder
/// start that hangs, as a `docker run -d` still pulling over a slow link does: on the
/// responder's `run` it notes it was called, ignores SIGTERM and sleeps `hang` seconds before
/// running the real docker (with `only_first`, only the first time). Everything else goes
/// straight to the real one.
struct HangingDocker {
    dir: tempfile::TempDir,
}

impl HangingDocker {
    fn new(hang: u64, only_first: bool) -> HangingDocker {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real =
            String::from_utf8(run(Command::new("sh").args(["-c", "command -v docker"])).stdout)
                .unwrap()
                .trim()
                .to_string();
        let wrapper = dir.path().join("docker");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\ncase \" $* \" in\n*' run '*natsup.acme=responder*)\n  if [ {only_first} = false ] || [ ! -e {called} ]; then\n    touch {called}\n    trap '' TERM\n    sleep {hang}\n  fi\n  ;;\nesac\nexec {real} \"$@\"\n",
                called = dir.path().join("called").display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        HangingDocker { dir }
    }

    /// The sshd_config line that puts it first on the PATH.
    fn sshd_config(&self) -> String {
        format!(
            "SetEnv PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
            self.dir.path().display()
        )
    }

    fn called(&self) -> bool {
        self.dir.path().join("called").exists()
    }
}

/// Removes this test's own responder container (by its exact name) when dropped, so a test
/// that fails with one left does not leave it holding the port.
struct OwnResponder(String);

impl Drop for OwnResponder {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A responder start that hangs ends within its bound (`up --timeout`), the run says so, and
/// no responder is left to hold the port afterwards, not even once the hung start would have
/// gone through (issue 17, 8).
#[test]
fn a_responder_start_that_hangs_is_bounded_and_leaves_no_responder() {
    const HANG: u64 = 25;
    let pebble = Pebble::start(None);
    let hosts = HostsEntry::add("hang");
    let docker = HangingDocker::new(HANG, false);
    let sshd = Sshd::start_with(&docker.sshd_config());
    let ws = workspace("acmehang", &sshd, &hosts.name);
    let _own = OwnResponder(format!("natsup-acme-{}", ws_name(&ws)));
    ws.set_config(&format!("{}{}", ws.config(), standalone(&pebble)));

    let started = std::time::Instant::now();
    let out = natsup(&ws, &pebble, &["up", "--timeout", "3"]);
    let took = started.elapsed();
    let said = text(&out);
    assert!(docker.called(), "the hanging docker was not used: {said}");
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("the responder container did not start within 3s"),
        "{said}"
    );
    // 3 s, then SIGKILL 5 s after the ignored SIGTERM, and the order's other steps.
    assert!(
        took < Duration::from_secs(HANG - 5),
        "took {took:?}: {said}"
    );
    assert!(!ws.remote_dir.join("docker-compose.yaml").exists());

    // Past the moment the hung start would have gone through: nothing came up.
    std::thread::sleep(Duration::from_secs(HANG + 3).saturating_sub(started.elapsed()));
    assert_eq!(responder_containers(&ws), Vec::<String>::new());
    TcpListener::bind(("127.0.0.1", pebble.http_port))
        .unwrap_or_else(|e| panic!("port {} is still held: {e}", pebble.http_port));
    assert!(!ws.remote_dir.join(".natsup-acme-www").exists());
}

/// natsup gives up on an order while its responder is still starting (here it is killed, as a
/// lost connection or Ctrl-C would leave it; the start goes on on the server). The next run's
/// removal of the responder comes only after that start has ended, so the start cannot bring a
/// responder up after it and hold the port (issue 17, 8).
#[test]
fn a_responder_start_left_running_is_removed_after_it_ends() {
    const HANG: u64 = 15;
    let pebble = Pebble::start(None);
    let hosts = HostsEntry::add("left");
    let docker = HangingDocker::new(HANG, true);
    let sshd = Sshd::start_with(&docker.sshd_config());
    let ws = workspace("acmeleft", &sshd, &hosts.name);
    let _own = OwnResponder(format!("natsup-acme-{}", ws_name(&ws)));
    ws.set_config(&format!("{}{}", ws.config(), standalone(&pebble)));

    // The start is within its bound (30 s), and natsup is killed while it hangs.
    let started = std::time::Instant::now();
    let mut first = ws
        .natsup()
        .env("SSL_CERT_FILE", pebble.root_file())
        .args(["up", "--timeout", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !docker.called() {
        assert!(
            first.try_wait().unwrap().is_none(),
            "natsup ended before the responder started"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no responder start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    first.kill().unwrap();
    first.wait().unwrap();

    // The next run orders while the first start still hangs on the server.
    let out = natsup_ok(&ws, &pebble, &["up"]);
    let (issuer, _) = served(&ws, &hosts.name);
    assert!(
        issuer.contains("Pebble Intermediate CA"),
        "{issuer}: {}",
        text(&out)
    );

    // Past the moment the hung start went through: no responder holds the port.
    std::thread::sleep(Duration::from_secs(HANG + 5).saturating_sub(started.elapsed()));
    assert_eq!(responder_containers(&ws), Vec::<String>::new());
    TcpListener::bind(("127.0.0.1", pebble.http_port))
        .unwrap_or_else(|e| panic!("port {} is still held: {e}", pebble.http_port));
}
