//! The test components themselves work: if one of these fails, every real-component test
//! would fail for a reason that is not natsup's.

use natsup_dev_support as support;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::Command;

use support::*;

fn ssh(
    sshd: &Sshd,
    identity: &std::path::Path,
    known_hosts: &std::path::Path,
) -> std::process::Output {
    // -F /dev/null: only what the test sets, not the ssh config of whoever runs the suite.
    Command::new("ssh")
        .args(["-F", "/dev/null"])
        .arg("-i")
        .arg(identity)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-p")
        .arg(sshd.port().to_string())
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .arg("echo ok")
        .output()
        .expect("run ssh")
}

#[test]
fn sshd_accepts_the_user_key_and_checks_host_keys() {
    let sshd = Sshd::start();
    let out = ssh(&sshd, &sshd.identity(), &sshd.known_hosts());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "{}",
        sshd.log()
    );

    let out = ssh(&sshd, &sshd.other_identity(), &sshd.known_hosts());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));

    let out = ssh(&sshd, &sshd.identity(), &sshd.wrong_known_hosts());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"));
}

#[test]
fn nats_server_runs_and_checks_configs() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("ok.conf");
    std::fs::write(&conf, format!("listen: \"127.0.0.1:{port}\"\n")).unwrap();
    nats_server_check_config(&conf).unwrap();
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "listen: [\n").unwrap();
    assert!(nats_server_check_config(&bad).is_err());

    let server = NatsServer::start(&conf, port);
    let mut line = String::new();
    BufReader::new(TcpStream::connect(("127.0.0.1", port)).unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("INFO "), "{line}\n{}", server.log());
}

#[test]
fn the_test_image_runs_nats_server() {
    let out = run(Command::new("docker").args(["run", "--rm", &test_image(), "--version"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("v2.10.26"));
}
