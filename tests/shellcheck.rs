//! Every shell script of the repository passes shellcheck (Debian's `shellcheck`, installed by
//! ./scripts/setup-test-deps.sh), at its default severity: anything it reports fails the test,
//! with its report. A warning that is intended is silenced in the script, on that command, by a
//! `# shellcheck disable=SCxxxx` that says why.
//!
//! The remote scripts (src/scripts/*.sh) have no shebang: natsup joins a header of variables,
//! common.sh and one of them, and runs the result with `sh -c` on the server
//! (src/remote/script.rs). That `sh` is dash on Debian and BusyBox ash on some hosts, so they
//! are checked as POSIX sh (`--shell=sh`). Every other script names its shell in its shebang.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

const HINT: &str = "run ./scripts/setup-test-deps.sh, which installs shellcheck";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `path` is a shell script: a `.sh` file, or a file whose shebang runs a shell.
fn is_shell_script(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "sh") {
        return true;
    }
    let mut head = [0u8; 128];
    let Ok(n) = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) else {
        return false;
    };
    let first = head[..n].split(|b| *b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    first.starts_with("#!")
        && ["sh", "bash", "dash", "ash"]
            .iter()
            .any(|shell| first.split(['/', ' ']).any(|word| word.trim() == *shell))
}

/// Every shell script under the repository's root, except build output and git's own files.
fn scripts() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap_or_default();
            if name == "target" || name == ".git" {
                continue;
            }
            if path.is_dir() {
                walk(&path, found);
            } else if is_shell_script(&path) {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(root(), &mut found);
    found.sort();
    found
}

fn remote_dir() -> PathBuf {
    root().join("src/scripts")
}

/// shellcheck on `files`; panics with its report if it reports anything.
fn shellcheck(files: &[PathBuf], args: &[&str]) {
    let out = Command::new("shellcheck")
        .current_dir(root())
        .args(["--color=never"])
        .args(args)
        .args(files.iter().map(|f| f.strip_prefix(root()).unwrap_or(f)))
        .output()
        .unwrap_or_else(|e| panic!("cannot run shellcheck ({e}): {HINT}"));
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "shellcheck {args:?} reported (exit {}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shellcheck_reports_what_it_should() {
    // A shellcheck that reports nothing for anything would pass every script: an unquoted
    // parameter must be reported.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.sh");
    std::fs::write(&bad, "rm $1\n").unwrap();
    let out = Command::new("shellcheck")
        .args(["--shell=sh", "--format=gcc"])
        .arg(&bad)
        .output()
        .unwrap_or_else(|e| panic!("cannot run shellcheck ({e}): {HINT}"));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && report.contains("SC2086"),
        "{report}"
    );
}

#[test]
fn the_remote_scripts_pass_shellcheck_as_posix_sh() {
    let remote: Vec<PathBuf> = scripts()
        .into_iter()
        .filter(|p| p.starts_with(remote_dir()))
        .collect();
    for name in ["acme.sh", "apply.sh", "common.sh", "observe.sh"] {
        assert!(
            remote.contains(&remote_dir().join(name)),
            "src/scripts/{name} was not found among {remote:?}"
        );
    }
    shellcheck(&remote, &["--shell=sh"]);
}

#[test]
fn every_other_shell_script_passes_shellcheck() {
    let others: Vec<PathBuf> = scripts()
        .into_iter()
        .filter(|p| !p.starts_with(remote_dir()))
        .collect();
    for name in [
        "scripts/setup-test-deps.sh",
        "scripts/test.sh",
        "scripts/bench.sh",
    ] {
        assert!(
            others.contains(&root().join(name)),
            "{name} was not found among {others:?}"
        );
    }
    shellcheck(&others, &[]);
}
