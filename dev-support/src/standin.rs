//! Stand-in images: a `nats-server` built from a C file in tests/assets and put in an image of
//! its own, to make the real server's failures on demand (one that passes `-t` and then exits,
//! one whose config check refuses). Shared by the files that drive `up --image` into them.

use std::process::Command;

use super::{run, unique_name};

/// An image whose nats-server is a stand-in built from tests/assets/`source`: crashy.c passes
/// `-t` and then exits 1; refuses.c refuses every config at `-t`; hang.c never exits. On Drop it removes every
/// container made from it, by id, and then itself.
pub struct StandInImage(pub String);

impl StandInImage {
    pub fn build(source: &str) -> StandInImage {
        let dir = tempfile::tempdir().unwrap();
        let src = super::repo_root().join("tests/assets").join(source);
        run(Command::new("gcc")
            .args(["-static", "-O2", "-o"])
            .arg(dir.path().join("nats-server"))
            .arg(src));
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY nats-server /nats-server\nENTRYPOINT [\"/nats-server\"]\n",
        )
        .unwrap();
        let tag = format!("natsup-test/standin:{}", unique_name("c"));
        run(Command::new("docker")
            .args(["build", "-q", "-t", &tag])
            .arg(dir.path()));
        StandInImage(tag)
    }

    /// Every container made from this image, by id.
    pub fn containers(&self) -> Vec<String> {
        let out = run(Command::new("docker").args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("ancestor={}", self.0),
        ]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for StandInImage {
    fn drop(&mut self) {
        for id in self.containers() {
            let _ = Command::new("docker").args(["rm", "-f", &id]).output();
        }
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", &self.0])
            .output();
    }
}
