//! Every way natsup.yaml can be wrong, and the one sentence natsup says about it: the file,
//! the field path, what is wrong and what would be right (issue 2's table).

use std::path::Path;

use natsup::config::Config;

const BASE: &str = "name: t\nhost: nats.example.com\nusers:\n- name: matchmaker\n- name: gameserver\n- name: webhook\n";

fn error(yaml: &str) -> String {
    match Config::parse(yaml, Path::new("natsup.yaml")) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// BASE with `from` replaced by `to`, or with `to` appended when `from` is empty.
fn variant(from: &str, to: &str) -> String {
    if from.is_empty() {
        format!("{BASE}{to}")
    } else {
        assert!(BASE.contains(from));
        BASE.replacen(from, to, 1)
    }
}

#[test]
fn the_table() {
    let table: &[(&str, &str, &str)] = &[
        (
            "",
            "colour: blue\n",
            "natsup.yaml: colour: unknown field `colour`, expected one of `name`, `id`, `host`, `ssh`, \
             `remote_dir`, `image`, `port`, `bind`, `extra_sans`, `users`, `jetstream`, `cert`, `auth`, \
             `nodes`, `cluster`, `network`, `tls`, `acme`, `lame_duck`",
        ),
        (
            "name: t\n",
            "name: t\nssh:\n  destination: u@h\n  colour: 1\n",
            "natsup.yaml: ssh.colour: unknown field `colour`, expected one of `destination`, \
             `port`, `identity`, `known_hosts`, `host_key_policy`",
        ),
        (
            "name: t\n",
            "name: t\nid: staging copy\n",
            "natsup.yaml: id: \"staging copy\" is not a valid deployment id (1-64 letters, \
             digits, _ and -; `natsup init` writes a random one)",
        ),
        (
            "name: t\n",
            "name: t\nid: ''\n",
            "natsup.yaml: id: \"\" is not a valid deployment id (1-64 letters, digits, _ and -; \
             `natsup init` writes a random one)",
        ),
        (
            "name: t\n",
            "name: t\nid: [a]\n",
            "natsup.yaml: id: invalid type: sequence, expected a string",
        ),
        (
            "nats.example.com",
            "nats example.com",
            "natsup.yaml: host: \"nats example.com\" is not a valid hostname or IP address",
        ),
        (
            "webhook",
            "game server",
            "natsup.yaml: users[2].name: \"game server\" is not a valid NATS user name \
             (letters, digits, _ and - only)",
        ),
        (
            "webhook",
            "gameserver",
            "natsup.yaml: users[2].name: \"gameserver\" is already users[1]; user names must be \
             unique",
        ),
        (
            "webhook",
            "natsup_sys",
            "natsup.yaml: users[2].name: \"natsup_sys\" is natsup's own system-account user \
             (nats-server refuses a user name twice); pick another name",
        ),
        (
            "users:\n- name: matchmaker\n- name: gameserver\n- name: webhook\n",
            "users: []\n",
            "natsup.yaml: users: at least one user is needed (leave `users` out for the \
             tutorial's four)",
        ),
        (
            "",
            "port: 0\n",
            "natsup.yaml: port: 0 is not a valid port (1-65535)",
        ),
        (
            "",
            "port: 70000\n",
            "natsup.yaml: port: 70000 is not a valid port (1-65535)",
        ),
        (
            "",
            "port: abc\n",
            "natsup.yaml: port: abc is not a valid port (1-65535)",
        ),
        (
            "",
            "cert:\n  lifetime_days: 0\n",
            "natsup.yaml: cert.lifetime_days: 0 is out of range: a certificate lives 1 to 825 \
             days (825 is the most Apple's TLS clients accept)",
        ),
        (
            "",
            "cert:\n  lifetime_days: 826\n",
            "natsup.yaml: cert.lifetime_days: 826 is out of range: a certificate lives 1 to 825 \
             days (825 is the most Apple's TLS clients accept)",
        ),
        (
            "",
            "lame_duck:\n  duration_secs: 29\n",
            "natsup.yaml: lame_duck.duration_secs: 29 is too short: nats-server refuses a \
             lame_duck_duration under 30 seconds",
        ),
        (
            "",
            "lame_duck:\n  grace_secs: 30\n",
            "natsup.yaml: lame_duck.grace_secs: 30 is out of range: 1 or more, and less than \
             lame_duck.duration_secs (30), as nats-server requires (0 would make it take its own \
             default of 10)",
        ),
        (
            "",
            "lame_duck:\n  grace_secs: 0\n  duration_secs: 60\n",
            "natsup.yaml: lame_duck.grace_secs: 0 is out of range: 1 or more, and less than \
             lame_duck.duration_secs (60), as nats-server requires (0 would make it take its own \
             default of 10)",
        ),
        (
            "",
            "auth:\n  bcrypt_cost: 3\n",
            "natsup.yaml: auth.bcrypt_cost: 3 is out of range: nats-server's bcrypt accepts \
             costs 4 to 31 (natsup's default, 4, suits its random passwords)",
        ),
        (
            "",
            "auth:\n  rotation_grace: soon\n",
            "natsup.yaml: auth.rotation_grace: \"soon\" is not a duration like 90s, 30m or 24h \
             (expected number at 0)",
        ),
        (
            "",
            "auth:\n  rotation_grace: 400d\n",
            "natsup.yaml: auth.rotation_grace: \"400d\" is too long: a grace period is at most 366 \
             days (the old password stays valid all that time)",
        ),
        (
            "",
            "auth:\n  bcrypt_cost: 32\n",
            "natsup.yaml: auth.bcrypt_cost: 32 is out of range: nats-server's bcrypt accepts \
             costs 4 to 31 (natsup's default, 4, suits its random passwords)",
        ),
        (
            "",
            "bind: 300.1.1.1\n",
            "natsup.yaml: bind: not an IP address (0.0.0.0 for every interface, 127.0.0.1 for \
             this machine only)",
        ),
        (
            "name: t\n",
            "name: t\nssh:\n  destination: u@h\n  host_key_policy: yolo\n",
            "natsup.yaml: ssh.host_key_policy: unknown variant `yolo`, expected `strict` or \
             `accept-new`",
        ),
        (
            "name: t\n",
            "name: t\nssh:\n  destination: \"\"\n",
            "natsup.yaml: ssh.destination: \"\" is not an SSH destination (user@host, an \
             ~/.ssh/config alias, or ssh://user@host:port)",
        ),
        (
            "name: t\n",
            "name: \"\"\n",
            "natsup.yaml: name: \"\" is not a valid deployment name (1-64 letters, digits, _ and \
             -, not starting with -)",
        ),
        (
            "",
            "jetstream:\n  max_memory_store: lots\n",
            "natsup.yaml: jetstream.max_memory_store: invalid type: string \"lots\", expected a \
             whole number",
        ),
        (
            "- name: webhook\n",
            "- name: webhook\n  permissions:\n    publish: foo\n",
            "natsup.yaml: users[2].permissions.publish: invalid type: string \"foo\", expected a \
             map with `allow` and/or `deny` lists of subjects",
        ),
        (
            "- name: webhook\n",
            "- name: webhook\n  permissions:\n    publish:\n      allow: [\"foo.>.bar\"]\n",
            "natsup.yaml: users[2].permissions.publish.allow[0]: \"foo.>.bar\" is not a NATS \
             subject (dot-separated tokens, no spaces, `>` only at the end)",
        ),
        (
            "",
            "extra_sans: [\"bad name!\"]\n",
            "natsup.yaml: extra_sans[0]: \"bad name!\" is not a valid hostname or IP address",
        ),
        (
            "",
            "remote_dir: \"\"\n",
            "natsup.yaml: remote_dir: \"\" is not a usable directory (a path relative to the SSH \
             user's home, or absolute; no `.`, `..` or `//`)",
        ),
        // Issue 17, item 6: one folder under several names, or one everyone shares.
        (
            "",
            "remote_dir: ./.\n",
            "natsup.yaml: remote_dir: \"./.\" is not a usable directory (a path relative to the \
             SSH user's home, or absolute; no `.`, `..` or `//`)",
        ),
        (
            "",
            "remote_dir: /.\n",
            "natsup.yaml: remote_dir: \"/.\" is not a usable directory (a path relative to the \
             SSH user's home, or absolute; no `.`, `..` or `//`)",
        ),
        (
            "",
            "remote_dir: /srv/./nats\n",
            "natsup.yaml: remote_dir: \"/srv/./nats\" is not a usable directory (a path relative \
             to the SSH user's home, or absolute; no `.`, `..` or `//`)",
        ),
        (
            "",
            "remote_dir: //srv/nats\n",
            "natsup.yaml: remote_dir: \"//srv/nats\" is not a usable directory (a path relative \
             to the SSH user's home, or absolute; no `.`, `..` or `//`)",
        ),
        (
            "",
            "remote_dir: /tmp/\n",
            "natsup.yaml: remote_dir: \"/tmp/\" is a folder the system or every user of the server \
             shares; natsup needs a folder of its own, like nats-bits in the SSH user's home (the \
             default) or /srv/nats",
        ),
        (
            "",
            "remote_dir: /dev/shm/nats\n",
            "natsup.yaml: remote_dir: \"/dev/shm/nats\" is a folder the system or every user of \
             the server shares; natsup needs a folder of its own, like nats-bits in the SSH \
             user's home (the default) or /srv/nats",
        ),
        (
            "",
            "remote_dir: \"nats-bits \"\n",
            "natsup.yaml: remote_dir: \"nats-bits \" starts or ends with a space; write the \
             folder's name without it",
        ),
        (
            "",
            "tls:\n  issuer: letsencrypt\n",
            "natsup.yaml: tls.issuer: unknown variant `letsencrypt`, expected `ca` or `acme`",
        ),
        (
            "",
            "tls:\n  issuer: acme\nacme:\n  directory: http://acme.example.com/dir\n",
            "natsup.yaml: acme.directory: \"http://acme.example.com/dir\" is not an ACME \
             directory (letsencrypt, letsencrypt-staging, or an https:// URL)",
        ),
        (
            "",
            "tls:\n  issuer: acme\nacme:\n  email: ops\n",
            "natsup.yaml: acme.email: \"ops\" is not an email address",
        ),
        (
            "",
            "tls:\n  issuer: acme\nacme:\n  challenge: dns-01\n",
            "natsup.yaml: acme.challenge: \"dns-01\" is not supported (only http-01)",
        ),
        (
            "",
            "tls:\n  issuer: acme\nacme:\n  http01:\n    mode: webroot\n",
            "natsup.yaml: acme.http01.webroot: webroot mode needs the folder your web server \
             serves (like /var/www/html)",
        ),
        (
            "",
            "tls:\n  issuer: acme\nacme:\n  http01:\n    mode: webroot\n    webroot: www\n",
            "natsup.yaml: acme.http01.webroot: \"www\" is not an absolute folder on the server \
             (no `..`)",
        ),
        (
            "",
            "tls:\n  issuer: acme\nacme:\n  http01:\n    mode: proxy\n",
            "natsup.yaml: acme.http01.mode: unknown variant `proxy`, expected `standalone` or \
             `webroot`",
        ),
        (
            "",
            "tls:\n  issuer: acme\nacme:\n  http01:\n    port: 0\n",
            "natsup.yaml: acme.http01.port: 0 is not a valid port (1-65535)",
        ),
        (
            "",
            "tls:\n  issuer: acme\nacme:\n  directory_ca: /nonexistent/pebble.pem\n",
            "natsup.yaml: acme.directory_ca: /nonexistent/pebble.pem is not a file",
        ),
        (
            "name: t\n",
            "name: t\nssh:\n  destination: ssh://-oProxyCommand=touch${IFS}/tmp/x\n",
            "natsup.yaml: ssh.destination: \"ssh://-oProxyCommand=touch${IFS}/tmp/x\" is not an \
             SSH destination (user@host, an ~/.ssh/config alias, or ssh://user@host:port)",
        ),
        (
            "name: t\n",
            "name: t\nssh:\n  destination: ssh://u@-oProxyCommand=x:22\n",
            "natsup.yaml: ssh.destination: \"ssh://u@-oProxyCommand=x:22\" is not an SSH \
             destination (user@host, an ~/.ssh/config alias, or ssh://user@host:port)",
        ),
        (
            "name: t\n",
            "name: t\nssh:\n  destination: -oProxyCommand=x\n",
            "natsup.yaml: ssh.destination: \"-oProxyCommand=x\" is not an SSH destination \
             (user@host, an ~/.ssh/config alias, or ssh://user@host:port)",
        ),
        (
            "",
            "remote_dir: \"-\"\n",
            "natsup.yaml: remote_dir: \"-\" starts with `-`, which cd and mkdir read as an \
             option; name the folder with a letter or digit first, like nats-bits",
        ),
        (
            "",
            "remote_dir: ~/x\n",
            "natsup.yaml: remote_dir: \"~/x\": `~` is not expanded here; write \"x\" (a \
             relative path is already relative to the SSH user's home)",
        ),
        (
            "",
            "remote_dir: ~other/x\n",
            "natsup.yaml: remote_dir: \"~other/x\": `~` is not expanded here; write the path \
             relative to the SSH user's home, or absolute (a relative path is already relative \
             to the SSH user's home)",
        ),
        (
            "",
            "remote_dir: \"nats:bits\"\n",
            "natsup.yaml: remote_dir: \"nats:bits\" contains `:`, which Docker reads as the end \
             of a bind mount's path; choose a folder without one",
        ),
        (
            "nats.example.com",
            "nats.example.com.",
            "natsup.yaml: host: \"nats.example.com.\" ends with a dot; write \
             \"nats.example.com\" (a certificate cannot name a host with its trailing dot)",
        ),
        (
            "",
            "extra_sans: [\"nats.internal.\"]\n",
            "natsup.yaml: extra_sans[0]: \"nats.internal.\" ends with a dot; write \
             \"nats.internal\" (a certificate cannot name a host with its trailing dot)",
        ),
        (
            "",
            "image: \"--privileged\"\n",
            "natsup.yaml: image: \"--privileged\" is not a Docker image reference (like \
             nats:2.10.21)",
        ),
        ("name: t\n", "", "natsup.yaml: missing field `name`"),
        (
            "host: nats.example.com\n",
            "",
            "natsup.yaml: missing field `host`",
        ),
    ];
    let mut wrong = Vec::new();
    for (from, to, expected) in table {
        let got = error(&variant(from, to));
        if got != *expected {
            wrong.push(format!(
                "for {to:?}\n  expected: {expected}\n  got:      {got}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

const CLUSTER: &str = "name: t\nnodes:\n- name: n1\n  host: n1.example.com\n  ssh: deploy@n1\n- name: n2\n  host: n2.example.com\n  ssh: deploy@n2\n";

/// Issue 12: every mistake in `nodes` names its path.
#[test]
fn the_cluster_table() {
    let table: &[(&str, &str, &str)] = &[
        (
            "name: n2",
            "name: n1",
            "natsup.yaml: nodes[1].name: \"n1\" is already nodes[0]; node names must be unique",
        ),
        (
            "  host: n2.example.com\n",
            "",
            "natsup.yaml: nodes[1]: missing field `host`",
        ),
        (
            "n2.example.com",
            "n2 example.com",
            "natsup.yaml: nodes[1].host: \"n2 example.com\" is not a valid hostname or IP address",
        ),
        (
            "name: t\n",
            "name: t\nhost: h\n",
            "natsup.yaml: host: a cluster has no top-level host: each of `nodes` has its own \
             (remove one of them)",
        ),
        (
            "name: t\n",
            "name: t\nssh:\n  destination: u@h\n",
            "natsup.yaml: ssh: a cluster has no top-level ssh: each of `nodes` has its own \
             (remove one of them)",
        ),
        (
            "name: n2",
            "name: n 2",
            "natsup.yaml: nodes[1].name: \"n 2\" is not a valid node name (1-64 letters, digits, \
             _ and -)",
        ),
        (
            "ssh: deploy@n2",
            "ssh: -oProxyCommand=x",
            "natsup.yaml: nodes[1].ssh: \"-oProxyCommand=x\" is not an SSH destination \
             (user@host, an ~/.ssh/config alias, or ssh://user@host:port)",
        ),
        (
            "ssh: deploy@n2",
            "ssh: deploy@n2\n  port: 0",
            "natsup.yaml: nodes[1].port: 0 is not a valid port (1-65535)",
        ),
        (
            "ssh: deploy@n2",
            "ssh: deploy@n2\n  colour: 1",
            "natsup.yaml: nodes[1].colour: unknown field `colour`, expected one of `name`, \
             `host`, `ssh`, `identity`, `known_hosts`, `ssh_port`, `host_key_policy`, \
             `remote_dir`, `bind`, `port`",
        ),
        (
            "ssh: deploy@n2",
            "ssh: deploy@n1",
            "natsup.yaml: nodes[1].remote_dir: nodes[0] already uses \"nats-bits\" on the same \
             server; give each node on one server its own remote_dir",
        ),
        (
            "name: t\n",
            "name: t\ncluster:\n  port: 0\n",
            "natsup.yaml: cluster.port: 0 is not a valid port (1-65535)",
        ),
        (
            // Each node's certificate is ordered for its own public name.
            "  host: n2.example.com\n  ssh: deploy@n2\n",
            "  host: 203.0.113.2\n  ssh: deploy@n2\ntls:\n  issuer: acme\n",
            "natsup.yaml: nodes[1].host: an ACME CA only issues for public DNS names, and none of \
             203.0.113.2, localhost, ::1, nats is one (IP addresses, localhost and single labels \
             are left out)",
        ),
        // Issue 17, item 9: the route port is a port of its own, on every node of a server.
        (
            "name: t\n",
            "name: t\nport: 6222\n",
            "natsup.yaml: cluster.port: 6222 is both the client `port` and the route port \
             (`cluster.port`): nats-server listens on each for a different thing; give one of \
             them another port (the defaults are 4222 and 6222)",
        ),
        (
            "  ssh: deploy@n2\n",
            "  ssh: deploy@n2\n  port: 6222\n",
            "natsup.yaml: nodes[1].port: 6222 is both nodes[1]'s `port` and the route port \
             (`cluster.port`): nats-server listens on each for a different thing; give one of \
             them another port (the defaults are 4222 and 6222)",
        ),
        (
            "  ssh: deploy@n2\n",
            "  ssh: ops@N1\n  remote_dir: nats-2\n",
            "natsup.yaml: nodes[1].bind: nodes[1] (n2) and nodes[0] (n1) are on the same server \
             and would both listen on 0.0.0.0:4222, nodes[1]'s client port (a bind of 0.0.0.0 \
             is every address); give each node on one server its own `bind` address, or its \
             own `port`",
        ),
        (
            "  ssh: deploy@n2\n",
            "  ssh: ssh://ops@n1:22\n  remote_dir: nats-2\n  bind: 10.0.0.2\n  port: 4333\n",
            "natsup.yaml: nodes[1].bind: nodes[1] (n2) and nodes[0] (n1) are on the same server \
             and would both listen on 10.0.0.2:6222, nodes[1]'s route port (a bind of 0.0.0.0 \
             is every address); give each node on one server its own `bind` address: the route \
             port (`cluster.port`) is the same on every node",
        ),
        (
            "  ssh: deploy@n2\n",
            "  ssh: deploy@n1\n  remote_dir: nats-2\n  port: 4333\nbind: 10.0.0.1\n",
            "natsup.yaml: nodes[1].bind: nodes[1] (n2) and nodes[0] (n1) are on the same server \
             and would both listen on 10.0.0.1:6222, nodes[1]'s route port; give each node on \
             one server its own `bind` address: the route port (`cluster.port`) is the same on \
             every node",
        ),
        (
            "name: t\n",
            "name: t\nnetwork: overlay\n",
            "natsup.yaml: network: unknown variant `overlay`, expected `bridge` or `host`",
        ),
    ];
    let mut wrong = Vec::new();
    for (from, to, expected) in table {
        assert!(CLUSTER.contains(from), "{from:?}");
        let got = error(&CLUSTER.replacen(from, to, 1));
        if got != *expected {
            wrong.push(format!(
                "for {to:?}\n  expected: {expected}\n  got:      {got}"
            ));
        }
    }
    let ten: String = (0..10)
        .map(|i| format!("- name: n{i}\n  host: n{i}.example.com\n  ssh: deploy@n{i}\n"))
        .collect();
    let got = error(&format!("name: t\nnodes:\n{ten}"));
    if got != "natsup.yaml: nodes: 10 nodes is too many: a cluster has 1 to 9" {
        wrong.push(format!("for ten nodes: {got}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_cluster_config_loads_and_round_trips() {
    let config = Config::parse(CLUSTER, Path::new("natsup.yaml")).unwrap();
    assert!(config.is_cluster());
    assert_eq!(config.host, None);
    assert_eq!(config.cluster.port, 6222);
    assert_eq!(
        config.client_urls(),
        ["tls://n1.example.com:4222", "tls://n2.example.com:4222"]
    );
    let n2 = &config.nodes()[1];
    assert_eq!(n2.host, "n2.example.com");
    assert_eq!(n2.ssh.as_ref().unwrap().destination, "deploy@n2");
    assert_eq!(config.sans(n2)[0], "n2.example.com");
    let again = Config::parse(&config.to_yaml(), Path::new("natsup.yaml")).unwrap();
    assert_eq!(again, config);
    assert!(
        !config.to_yaml().contains("host: ''"),
        "{}",
        config.to_yaml()
    );
}

#[test]
fn acme_needs_a_public_name() {
    let e = error(&format!(
        "{}tls:\n  issuer: acme\nextra_sans: [localhost, \"::1\", nats]\n",
        BASE.replace("nats.example.com", "203.0.113.7")
    ));
    assert_eq!(
        e,
        "natsup.yaml: tls.issuer: an ACME CA only issues for public DNS names, and none of \
         203.0.113.7, localhost, ::1, nats is one (IP addresses, localhost and single labels \
         are left out)"
    );
    let config = Config::parse(
        &format!("{BASE}tls:\n  issuer: acme\n"),
        Path::new("natsup.yaml"),
    )
    .unwrap();
    assert_eq!(
        config.public_names(&config.nodes()[0]),
        (
            vec!["nats.example.com".to_string()],
            vec!["localhost".into(), "::1".into(), "nats".into()]
        )
    );
    let acme = config.acme().expect("issuer acme");
    assert_eq!(
        acme.directory_url(),
        "https://acme-v02.api.letsencrypt.org/directory"
    );
    assert_eq!(acme.http01.port, 80);
    assert!(
        Config::parse(BASE, Path::new("natsup.yaml"))
            .unwrap()
            .acme()
            .is_none()
    );
    // The default issuer is not written out: an existing natsup.yaml round-trips unchanged.
    assert!(
        !Config::parse(BASE, Path::new("natsup.yaml"))
            .unwrap()
            .to_yaml()
            .contains("tls")
    );
}

#[test]
fn a_config_that_loads_is_valid_and_round_trips() {
    let config = Config::parse(BASE, Path::new("natsup.yaml")).unwrap();
    assert_eq!(config.port, 4222);
    assert_eq!(config.remote_dir, "nats-bits");
    assert_eq!(config.image, "nats:2.10.21");
    assert_eq!(config.cert.lifetime_days, 365);
    assert_eq!(config.jetstream.max_memory_store, 100 * 1024 * 1024);
    assert_eq!(config.jetstream.max_file_store, 100 * 1024 * 1024);
    assert_eq!(
        config.sans(&config.nodes()[0]),
        ["nats.example.com", "localhost", "::1", "nats"],
        "the host comes first: the tutorial's SAN list lacks it"
    );
    let again = Config::parse(&config.to_yaml(), Path::new("natsup.yaml")).unwrap();
    assert_eq!(again.to_yaml(), config.to_yaml());
}

#[test]
fn the_users_default_to_the_tutorials_four() {
    let config = Config::parse("name: t\nhost: 203.0.113.7\n", Path::new("natsup.yaml")).unwrap();
    let names: Vec<_> = config.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(
        names,
        ["matchmaker", "matchmaker_httpd", "gameserver", "webhook"]
    );
}

#[test]
fn the_file_name_is_the_one_given() {
    let e = Config::parse("name: t\nhost: h\nport: 0\n", Path::new("deploy/prod.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("deploy/prod.yaml: port: "), "{e}");
}

/// Issue 17, item 9: nodes that share a server load when each has its own address.
#[test]
fn nodes_on_one_server_with_their_own_addresses_load() {
    let yaml = CLUSTER.replacen(
        "  ssh: deploy@n2\n",
        "  ssh: deploy@n1\n  remote_dir: nats-2\n  bind: 10.0.0.2\n",
        1,
    ) + "bind: 10.0.0.1\n";
    let config = Config::parse(&yaml, Path::new("natsup.yaml")).unwrap();
    let binds: Vec<String> = config.nodes().iter().map(|n| n.bind.to_string()).collect();
    assert_eq!(binds, ["10.0.0.1", "10.0.0.2"]);
}
