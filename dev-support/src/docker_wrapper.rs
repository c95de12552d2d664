//! A `docker` placed first on the PATH of the test sshd's sessions: it runs the real docker,
//! except for the subcommands a test gives a rule, where it hangs like a Docker daemon that
//! accepts the connection and never answers, or first runs a test's shell command (something
//! another user of the server does between two of natsup's calls). natsup's remote scripts
//! find it by PATH, as they find the real one.
//!
//! sshd's `SetEnv PATH=...` overrides the PATH it gives a session (OpenSSH applies SetEnv after
//! setting its default PATH), so only the sessions of this wrapper's [`Sshd`] see it.

use std::path::PathBuf;
use std::process::Command;

use super::{HINT, Sshd};

pub struct DockerWrapper {
    dir: tempfile::TempDir,
}

/// How long a hung call sleeps: past every bound natsup sets on one Docker call (30 s), and
/// short enough that one a killed run leaves behind ends soon by itself.
const HANG_SECS: u32 = 120;

impl DockerWrapper {
    pub fn new() -> DockerWrapper {
        let out = Command::new("sh")
            .arg("-c")
            .arg("command -v docker")
            .output()
            .expect("sh");
        let real = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!real.is_empty(), "docker is missing: {HINT}");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        std::fs::create_dir(dir.path().join("bin")).expect("bin dir");
        // Rules: `SUB.rule` holds `hang N` or `hook N`: the first N calls of `docker SUB` pass;
        // from then on each hangs (`hang`), or the call number N runs `SUB.hook` first
        // (`hook`). `SUB.count` counts the calls.
        let script = format!(
            "#!/bin/sh\n\
             d='{d}'\n\
             sub=${{1:-}}\n\
             if [ -f \"$d/$sub.rule\" ]; then\n\
             \x20 n=$(cat \"$d/$sub.count\" 2>/dev/null || echo 0)\n\
             \x20 echo $((n + 1)) > \"$d/$sub.count\"\n\
             \x20 read -r action after < \"$d/$sub.rule\"\n\
             \x20 if [ \"$action\" = hang ] && [ \"$n\" -ge \"$after\" ]; then exec sleep {HANG_SECS}; fi\n\
             \x20 if [ \"$action\" = hook ] && [ \"$n\" = \"$after\" ]; then sh \"$d/$sub.hook\" >&2; fi\n\
             fi\n\
             exec '{real}' \"$@\"\n"
        );
        let path = dir.path().join("bin/docker");
        std::fs::write(&path, script).expect("write the docker wrapper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        DockerWrapper { dir }
    }

    /// An sshd whose sessions find this wrapper first on PATH.
    pub fn sshd(&self) -> Sshd {
        Sshd::start_with(&format!(
            "SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin\n",
            self.dir.path().join("bin").display()
        ))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `docker SUB` hangs from its call number `after` + 1 on (counting from now).
    pub fn hang(&self, sub: &str, after: u32) {
        self.clear(sub);
        std::fs::write(self.file(&format!("{sub}.rule")), format!("hang {after}\n")).unwrap();
    }

    /// `docker SUB`'s call number `after` + 1 (counting from now) runs `script` with `sh` first.
    pub fn hook(&self, sub: &str, after: u32, script: &str) {
        self.clear(sub);
        std::fs::write(self.file(&format!("{sub}.hook")), script).unwrap();
        std::fs::write(self.file(&format!("{sub}.rule")), format!("hook {after}\n")).unwrap();
    }

    /// `docker SUB` is the real one again.
    pub fn clear(&self, sub: &str) {
        for ext in ["rule", "count", "hook"] {
            let _ = std::fs::remove_file(self.file(&format!("{sub}.{ext}")));
        }
    }
}

impl Default for DockerWrapper {
    fn default() -> Self {
        DockerWrapper::new()
    }
}
