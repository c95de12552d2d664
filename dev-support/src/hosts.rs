//! The host matrix: real local Unix users reached over the test sshd, each one a kind of
//! server natsup's users deploy to (a docker-group user, a sudo user, a user with neither, and
//! a BusyBox host), on Compose v1 (Debian's docker-compose, the machine's default) or v2 (the
//! CLI plugin in the user's `~/.docker/cli-plugins`, so both run on one machine).
//!
//! A [`Host`] is one sshd for a test; [`Host::user`] makes a [`HostUser`], a guard that
//! removes the account, its home, its sudoers file and every container of its compose projects
//! on Drop, so a test leaves nothing behind and passes when run again.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{HINT, Sshd, run};

/// What the user may do with Docker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// In the `docker` group (the socket is `root:docker` 0660).
    DockerGroup,
    /// Not in the docker group; passwordless sudo for docker (and docker-compose) only.
    Sudo,
    /// Neither: cannot use Docker at all.
    Neither,
    /// Like `DockerGroup`, with BusyBox `sh` as login shell and BusyBox's tools first on PATH.
    BusyBox,
}

/// Which Compose the user's `docker compose` / `docker-compose` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compose {
    /// Debian bookworm's docker-compose 1.29 (the machine's own).
    V1,
    /// The CLI plugin from Debian trixie's docker-compose 2.26 (setup-test-deps.sh fetches it).
    V2,
}

impl Compose {
    /// The major version in the `com.docker.compose.version` label Compose puts on a container.
    pub fn label_major(self) -> &'static str {
        match self {
            Compose::V1 => "1.",
            Compose::V2 => "2.",
        }
    }
}

/// Where Debian's busybox-static puts its binary.
const BUSYBOX: &str = "/bin/busybox";
/// What a BusyBox user's PATH holds after BusyBox's own folder: docker, sudo and
/// docker-compose live there, and so do the tools Debian's BusyBox 1.35 lacks (`ss`, and
/// `flock`: apply.sh uses only the `flock -n FD` that BusyBox's flock has too).
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The sshd of one test, set up for its users: each finds the test key in its own
/// `~/.ssh/authorized_keys`, and a BusyBox user gets BusyBox's folder first on PATH.
pub struct Host {
    pub sshd: Sshd,
    /// Every user of this host is named `PREFIX` + a kind letter + a counter.
    prefix: String,
    /// `busybox --install -s` output: one symlink per applet, and `sh`.
    busybox: tempfile::TempDir,
    counter: AtomicU32,
}

impl Host {
    pub fn start() -> Host {
        for tool in ["useradd", "userdel", "usermod", "visudo", "sudo", BUSYBOX] {
            let found = Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {tool}"))
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(found, "{tool} is missing: {HINT}");
        }
        // useradd caps names at 32 characters; "nsup" + 8 random hex digits stays far below,
        // and no one else on the machine would pick it.
        let prefix = format!("nsup{}", random_hex());
        let busybox = tempfile::Builder::new()
            .prefix("natsup-busybox")
            .tempdir()
            .expect("tempdir");
        // The users must reach it: tempdir makes it 0700.
        std::fs::set_permissions(busybox.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod busybox dir");
        run(Command::new(BUSYBOX)
            .arg("--install")
            .arg("-s")
            .arg(busybox.path()));
        assert!(
            busybox.path().join("sh").exists(),
            "busybox installed no sh"
        );
        // The global AuthorizedKeysFile is in sshd's own (root-only) folder: a Match block
        // overrides it for this host's users with their own file. SetEnv overrides the PATH
        // sshd gives a session, so every command of a BusyBox user meets BusyBox tools first.
        let extra = format!(
            "Match User {prefix}*\n  AuthorizedKeysFile .ssh/authorized_keys\n\
             Match User {prefix}b*\n  SetEnv PATH={}:{SYSTEM_PATH}\n",
            busybox.path().display()
        );
        Host {
            sshd: Sshd::start_with(&extra),
            prefix,
            busybox,
            counter: AtomicU32::new(0),
        }
    }

    /// The folder of BusyBox's applets (a BusyBox user's login shell is `sh` in it).
    pub fn busybox_dir(&self) -> &Path {
        self.busybox.path()
    }

    /// Creates a user of `kind` with `compose`, reachable over this host's sshd.
    pub fn user(&self, kind: Kind, compose: Compose) -> HostUser {
        let letter = match kind {
            Kind::DockerGroup => 'd',
            Kind::Sudo => 's',
            Kind::Neither => 'n',
            Kind::BusyBox => 'b',
        };
        let name = format!(
            "{}{letter}{}",
            self.prefix,
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        assert!(name.len() <= 32, "{name} is too long for useradd");
        HostUser::create(self, name, kind, compose)
    }
}

fn random_hex() -> String {
    use std::io::Read;
    let mut rnd = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut rnd))
        .expect("read /dev/urandom");
    format!("{:08x}", u32::from_le_bytes(rnd))
}

/// A real Unix user for one test, removed with everything it made on Drop.
pub struct HostUser {
    pub name: String,
    pub kind: Kind,
    pub compose: Compose,
    pub home: PathBuf,
    port: u16,
    identity: PathBuf,
    known_hosts: PathBuf,
    sudoers: Option<PathBuf>,
}

impl HostUser {
    fn create(host: &Host, name: String, kind: Kind, compose: Compose) -> HostUser {
        let home = PathBuf::from("/home").join(&name);
        let shell = match kind {
            Kind::BusyBox => host.busybox_dir().join("sh"),
            _ => PathBuf::from("/bin/sh"),
        };
        let mut useradd = Command::new("useradd");
        useradd
            .args(["--create-home", "--home-dir"])
            .arg(&home)
            .arg("--shell")
            .arg(&shell);
        if matches!(kind, Kind::DockerGroup | Kind::BusyBox) {
            useradd.args(["--groups", "docker"]);
        }
        run(useradd.arg(&name));
        // From here on Drop cleans up, whatever fails next.
        let mut user = HostUser {
            name,
            kind,
            compose,
            home,
            port: host.sshd.port(),
            identity: host.sshd.identity(),
            known_hosts: host.sshd.known_hosts(),
            sudoers: None,
        };
        // useradd leaves the account locked ("!" in shadow), and sshd refuses every key of a
        // locked account; "*" unlocks it with no password that could ever match.
        run(Command::new("usermod").args(["-p", "*", &user.name]));
        user.install_key(&host.sshd);
        if compose == Compose::V2 {
            user.install_compose_v2();
        }
        if kind == Kind::Sudo {
            user.sudoers = Some(allow_sudo_docker(&user.name));
        }
        user
    }

    fn chown(&self, path: &Path) {
        run(Command::new("chown")
            .arg("-R")
            .arg(format!("{0}:{0}", self.name))
            .arg(path));
    }

    fn install_key(&self, sshd: &Sshd) {
        let ssh = self.home.join(".ssh");
        std::fs::create_dir_all(&ssh).expect("mkdir ~/.ssh");
        let key = std::fs::read_to_string(sshd.identity().with_extension("pub"))
            .expect("read the test key");
        std::fs::write(ssh.join("authorized_keys"), key).expect("authorized_keys");
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        self.chown(&ssh);
    }

    /// Gives this user Compose v2 from now on: the plugin in `~/.docker/cli-plugins`, which
    /// `docker compose` finds before natsup falls back to v1's `docker-compose`.
    pub fn switch_to_compose_v2(&mut self) {
        self.install_compose_v2();
        self.compose = Compose::V2;
    }

    /// Takes Compose v2 away from this user: `docker compose` fails, and `docker-compose` (v1)
    /// is what is left.
    pub fn switch_to_compose_v1(&mut self) {
        let plugin = self.home.join(".docker/cli-plugins/docker-compose");
        std::fs::remove_file(&plugin)
            .unwrap_or_else(|e| panic!("remove {}: {e}", plugin.display()));
        self.compose = Compose::V1;
    }

    fn install_compose_v2(&self) {
        let plugin = std::env::var_os("NATSUP_TEST_COMPOSE_V2")
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("NATSUP_TEST_COMPOSE_V2 is not set: {HINT}"));
        assert!(plugin.is_file(), "{} is missing: {HINT}", plugin.display());
        let dir = self.home.join(".docker/cli-plugins");
        std::fs::create_dir_all(&dir).expect("mkdir ~/.docker/cli-plugins");
        let target = dir.join("docker-compose");
        std::fs::copy(&plugin, &target).expect("copy the Compose v2 plugin");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        self.chown(&self.home.join(".docker"));
    }

    /// `ssh://NAME@127.0.0.1:PORT`
    pub fn destination(&self) -> String {
        format!("ssh://{}@127.0.0.1:{}", self.name, self.port)
    }

    /// Runs `command` over SSH as this user (through its login shell, as natsup's commands go),
    /// and returns its trimmed stdout; panics if it fails.
    pub fn ssh(&self, command: &str) -> String {
        let out = run(Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
            ])
            .args(["-o", "StrictHostKeyChecking=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg("-i")
            .arg(&self.identity)
            .args(["-p", &self.port.to_string()])
            .arg(format!("{}@127.0.0.1", self.name))
            .arg(command));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Every container of a compose project under this user's home (Compose labels each with
    /// its project's absolute working directory, v1 and v2 alike).
    pub fn container_ids(&self) -> Vec<String> {
        let out = run(Command::new("docker").args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            "label=com.docker.compose.project.working_dir",
            "--format",
            "{{.ID}} {{.Label \"com.docker.compose.project.working_dir\"}}",
        ]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, dir)| Path::new(dir).starts_with(&self.home))
            .map(|(id, _)| id.to_string())
            .collect()
    }
}

/// Debian's `Defaults secure_path` in /etc/sudoers.
const SUDO_SECURE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A sudoers file of the user's own that lets it run docker (and Compose v1's docker-compose,
/// which talks to the same socket) as root with no password, and nothing else. visudo checks
/// it before it goes live: a broken file in /etc/sudoers.d breaks sudo for everyone.
fn allow_sudo_docker(name: &str) -> PathBuf {
    // sudo skips files in sudoers.d whose names contain a dot or end in `~`.
    let path = PathBuf::from("/etc/sudoers.d").join(format!("natsup-test-{name}"));
    let staged = std::env::temp_dir().join(format!("natsup-test-sudoers-{name}"));
    // sudo finds `docker` along its secure_path, not the user's PATH (this machine has a
    // /usr/local/bin/docker besides Debian's /usr/bin/docker): allow each one there is.
    let commands: Vec<String> = SUDO_SECURE_PATH
        .split(':')
        .flat_map(|dir| ["docker", "docker-compose"].map(|tool| Path::new(dir).join(tool)))
        .filter(|path| path.is_file())
        .map(|path| path.display().to_string())
        .collect();
    assert!(!commands.is_empty(), "docker is not installed: {HINT}");
    std::fs::write(
        &staged,
        format!("{name} ALL=(root) NOPASSWD: {}\n", commands.join(", ")),
    )
    .expect("write sudoers");
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o440)).expect("chmod");
    let check = run(Command::new("visudo").arg("-cf").arg(&staged));
    assert!(check.status.success());
    // A copy, then a rename within /etc/sudoers.d: sudo never reads half a file.
    let tmp = path.with_file_name(format!("natsup-test-{name}-tmp"));
    std::fs::copy(&staged, &tmp).expect("copy sudoers");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o440)).expect("chmod");
    std::fs::rename(&tmp, &path).expect("install sudoers");
    let _ = std::fs::remove_file(&staged);
    path
}

impl Drop for HostUser {
    fn drop(&mut self) {
        if let Some(sudoers) = &self.sudoers {
            let _ = std::fs::remove_file(sudoers);
        }
        super::remove_containers(&self.container_ids());
        // --force: a session sshd still runs for it (a master natsup left open) must not keep
        // the account alive. --remove takes the home, with the deployment's files.
        let out = Command::new("userdel")
            .args(["--force", "--remove", &self.name])
            .output();
        if let Ok(out) = out
            && !out.status.success()
            && !std::thread::panicking()
        {
            panic!(
                "userdel {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
