//! Issue 18: every stop of a server goes through lame duck. One server, over the real sshd,
//! Docker and nats-server, its image upgraded from 2.10.26 to 2.11.11 by `up`: a connected
//! async-nats client hears `Event::LameDuckMode` before it is disconnected, reconnects by
//! itself, and its JetStream data is kept; natsup proves the version from the server; the
//! window in which a new connect fails is measured and bounded. Then an
//! operator's plain `docker stop` goes through lame duck too (the rendered compose file's
//! `stop_signal`).

use natsup_dev_support as support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::load::{ConnectLoop, Heard, Listening};
use support::workspace::{Workspace, runtime, text};
use support::{Sshd, test_image, upgrade_image};

/// A short grace, so the test waits seconds, not the default 10 (the duration cannot go under
/// nats-server's 30 s minimum, and needs not: nats-server closes at most one client a second
/// after the grace, and exits once none is left).
const GRACE_SECS: u64 = 3;

#[test]
fn one_server_is_recreated_through_lame_duck_and_its_clients_hear_it_first() {
    let sshd = Sshd::start();
    let ws = Workspace::new("ldm1");
    ws.init_ssh("ldm1", &sshd);
    ws.set_config(&format!(
        "{}lame_duck:\n  grace_secs: {GRACE_SECS}\n  duration_secs: 30\n",
        ws.config()
    ));
    let out = ws.ok(&["up"]);
    assert!(
        text(&out).contains("the server runs nats-server 2.10.26"),
        "{}",
        text(&out)
    );
    let rt = runtime();
    let login = ws.login("matchmaker");
    let url: async_nats::ServerAddr = login.url().parse().unwrap();
    let listener = rt.block_on(Listening::connect(&login, vec![url.clone()]));
    // JetStream data written before the upgrade.
    rt.block_on(async {
        let js = async_nats::jetstream::new(listener.client.clone());
        let kv = js
            .create_key_value(async_nats::jetstream::kv::Config {
                bucket: "kept".into(),
                ..Default::default()
            })
            .await
            .expect("a KV bucket");
        kv.put("before", "upgrade".into()).await.expect("a put");
    });

    // `plan` names the version change; `up` recreates the container through lame duck.
    ws.edit_config(&test_image(), &upgrade_image());
    let plan = text(&ws.ok(&["plan"]));
    assert!(plan.contains("nats-server 2.10.26 → 2.11.11"), "{plan}");
    let old_id = ws.project.container_id();
    // 20 more clients: nats-server closes them one by one over the rest of the 30 s duration,
    // so it is still in lame duck when natsup ends it, at the grace + 2 s. It ignores SIGTERM
    // then; ended with SIGTERM, it was SIGKILLed 10 s later, and the window below was 10 s
    // longer.
    let crowd: Vec<async_nats::Client> = (0..20)
        .map(|_| rt.block_on(login.connect()).expect("a crowd client"))
        .collect();
    // A client connecting in a loop all through the upgrade: new connects fail from lame duck
    // (the server closes its listener) until the new container is ready.
    let probe = ConnectLoop::start(&rt, &login);
    let t = Instant::now();
    let out = ws.ok(&["up"]);
    let took = t.elapsed();
    let said = text(&out);
    assert!(
        said.contains("stopping the server through lame duck") || said.contains("recreated"),
        "{said}"
    );
    // natsup asked the server itself which version it runs.
    assert!(
        said.contains("the server runs nats-server 2.11.11"),
        "{said}"
    );
    let id_after = ws.project.container_id();
    assert_ne!(id_after, old_id, "the container was recreated");

    // The client heard the notice, then was disconnected (at the end of the grace, not at
    // once), then came back by itself.
    let warned = listener
        .warned_before_disconnect()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        warned >= Duration::from_secs(GRACE_SECS - 1),
        "disconnected {warned:?} after the notice, before the {GRACE_SECS} s grace"
    );
    let heard = listener.heard();
    let dropped = heard
        .iter()
        .find(|(_, h)| *h == Heard::Disconnected)
        .unwrap()
        .0;
    let back = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((at, _)) = listener
                .heard()
                .into_iter()
                .find(|(at, h)| *h == Heard::Connected && *at >= dropped)
            {
                return at;
            }
            assert!(
                Instant::now() < deadline,
                "the client did not come back: {:?}",
                listener.heard()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let window = probe.stop(&rt);
    // The window: lame duck's grace and natsup's 2 s margin, the stop, the new container's
    // start (about 5 s here).
    assert!(
        window.failures > 0,
        "no connect failed during the upgrade ({} attempts): the probe did not watch it",
        window.attempts
    );
    assert!(
        window.failed_for < Duration::from_secs(GRACE_SECS + 10),
        "new connects failed for {:?}",
        window.failed_for
    );
    drop(crowd);
    let version = listener.client.server_info().version;
    assert_eq!(version, "2.11.11", "the client's server after the upgrade");
    // The data written before is there.
    rt.block_on(async {
        let js = async_nats::jetstream::new(listener.client.clone());
        let kv = js.get_key_value("kept").await.expect("the bucket is kept");
        let value = kv
            .get("before")
            .await
            .expect("a get")
            .expect("the key is kept");
        assert_eq!(&value[..], b"upgrade");
    });
    eprintln!(
        "one-server upgrade through lame duck: `up` took {:.1}s; notice {:.1}s before the \
         disconnect; the client was away {:.2}s; new connects failed for {:.2}s ({} of {} \
         attempts)",
        took.as_secs_f64(),
        warned.as_secs_f64(),
        back.duration_since(dropped).as_secs_f64(),
        window.failed_for.as_secs_f64(),
        window.failures,
        window.attempts
    );

    // Back across JetStream's storage format (2.10 wrote what only 2.9.22 and later read):
    // refused before anything changes (no such image is needed: nothing is pulled).
    let upgraded = ws.config();
    ws.edit_config(&upgrade_image(), "natsup-test/nats:2.9.21");
    let out = ws.run(&["up"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("refusing to change image"), "{said}");
    assert!(said.contains("storage format"), "{said}");
    assert_eq!(
        ws.project.container_id(),
        id_after,
        "the refused change touched the container"
    );
    ws.set_config(&upgraded);

    // An operator's own stop (what `docker compose down` and a reboot do to the container):
    // Docker sends the rendered `stop_signal`, and the client hears lame duck first.
    let listener = rt.block_on(Listening::connect(&login, vec![url]));
    let id = ws.project.container_id();
    let t = Instant::now();
    let stop = support::run(Command::new("docker").args(["stop", &id]));
    assert!(stop.status.success(), "docker stop: {}", text(&stop));
    let stopped_in = t.elapsed();
    let warned = listener
        .warned_before_disconnect()
        .unwrap_or_else(|e| panic!("docker stop: {e}"));
    assert!(
        warned >= Duration::from_secs(GRACE_SECS - 1),
        "docker stop: disconnected {warned:?} after the notice"
    );
    // nats-server left by itself, well within the stop_grace_period (Docker kills at 45 s).
    assert!(
        stopped_in < Duration::from_secs(30),
        "docker stop took {stopped_in:?}"
    );
    eprintln!(
        "docker stop through lame duck: {:.1}s",
        stopped_in.as_secs_f64()
    );
    // `up` starts it again.
    let out = ws.ok(&["up"]);
    assert!(text(&out).contains("started"), "{}", text(&out));

    // The version is the server's word, not the tag's: an image whose tag names 2.11.99 but
    // runs 2.11.11 is caught once the container runs it.
    let mislabeled = format!("natsup-test/nats:2.11.99-{}", support::unique_name("label"));
    support::run(Command::new("docker").args(["tag", &upgrade_image(), &mislabeled]));
    ws.edit_config(&upgrade_image(), &mislabeled);
    let out = ws.run(&["up"]);
    let _ = Command::new("docker").args(["rmi", &mislabeled]).output();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("the server runs nats-server 2.11.11, not the 2.11.99 its image"),
        "{said}"
    );
}
