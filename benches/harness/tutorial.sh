#!/usr/bin/env bash
# The tutorial's manual steps (../shared/TUTORIAL.md), typed out as a plain script: the
# baseline the benchmarks measure natsup against. It does what a careful reader would do, in
# the tutorial's order, and nothing cleverer: mkcert for the CA and certificate, the two files
# written by hand, `scp -r` of the folder, then `docker-compose up -d` over ssh. Day-2 changes
# are the tutorial's only tool for them: edit, copy, `docker-compose restart`.
#
#   tutorial.sh bootstrap         first deployment
#   tutorial.sh rerun             the same steps again (what a re-run of the tutorial is)
#   tutorial.sh change-config     add a user, copy the config, restart
#   tutorial.sh rotate-password   new password for gameserver, copy, restart
#   tutorial.sh rotate-webhook-password   the same for webhook
#   tutorial.sh renew-cert        new server certificate from the same CA, copy, restart
#
# Environment: WORK (local folder), SSH_DEST (user@127.0.0.1), SSH_PORT, SSH_KEY,
# KNOWN_HOSTS, REMOTE_DIR (absolute, on the server), IMAGE, PORT (published on 127.0.0.1),
# PASSWORD_PREFIX (passwords are PREFIX-user; the tutorial uses the user name itself).
set -euo pipefail

ssh_opts=(-o BatchMode=yes -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$KNOWN_HOSTS"
  -i "$SSH_KEY")
# The local folder has the remote one's name, so `scp -r` lands it in place (the tutorial's
# nats-bits; the benchmark gives each deployment its own name so Compose projects differ).
bits=$WORK/$(basename "$REMOTE_DIR")
export CAROOT=$WORK/mkcert

certificate() {
  mkcert -cert-file "$bits/nats-config/nats-server-cert.pem" \
    -key-file "$bits/nats-config/nats-server-key.pem" localhost ::1 nats 127.0.0.1 2>/dev/null
}

config() {
  local gameserver_password=$1 extra_user=${2:-}
  local webhook_password=${3:-$PASSWORD_PREFIX-webhook}
  cat >"$bits/nats-config/nats-server.conf" <<CONF
listen: 0.0.0.0:4222

authorization: {
    users: [
        {user: "matchmaker", password: "$PASSWORD_PREFIX-matchmaker"},
        {user: "matchmaker_httpd", password: "$PASSWORD_PREFIX-matchmaker_httpd"},
        {user: "gameserver", password: "$gameserver_password"},
        {user: "webhook",    password: "$webhook_password"},
        $extra_user
    ]
}

tls {
  cert_file: "/config/nats-server-cert.pem"
  key_file:  "/config/nats-server-key.pem"
}

jetstream {
    store_dir: /data
    max_memory_store: 104857600
    max_file_store: 104857600
}
CONF
}

compose() {
  cat >"$bits/docker-compose.yaml" <<YAML
version: "3.5"
services:
  nats:
    ports:
      - "127.0.0.1:$PORT:4222"
    image: $IMAGE
    restart: unless-stopped
    command: "--config /config/nats-server.conf"
    volumes:
      - ./nats-config:/config
      - ./nats-data:/data
YAML
}

upload() { scp -q -r -P "$SSH_PORT" "${ssh_opts[@]}" "$@"; }
remote() { ssh -p "$SSH_PORT" "${ssh_opts[@]}" "$SSH_DEST" "$@"; }
# Older installs have docker-compose, newer `docker compose` (the tutorial says: try both).
compose_cmd='if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi'

case $1 in
  bootstrap | rerun)
    mkdir -p "$bits/nats-config"
    certificate
    config "$PASSWORD_PREFIX-gameserver"
    compose
    upload "$bits" "$SSH_DEST:$(dirname "$REMOTE_DIR")/"
    remote "cd '$REMOTE_DIR' && sh -c '$compose_cmd' compose up -d"
    ;;
  change-config)
    config "$PASSWORD_PREFIX-gameserver" '{user: "analytics", password: "analytics"},'
    upload "$bits/nats-config/nats-server.conf" "$SSH_DEST:$REMOTE_DIR/nats-config/"
    remote "cd '$REMOTE_DIR' && sh -c '$compose_cmd' compose restart"
    ;;
  rotate-password)
    config "$PASSWORD_PREFIX-gameserver-2"
    upload "$bits/nats-config/nats-server.conf" "$SSH_DEST:$REMOTE_DIR/nats-config/"
    remote "cd '$REMOTE_DIR' && sh -c '$compose_cmd' compose restart"
    ;;
  rotate-webhook-password)
    config "$PASSWORD_PREFIX-gameserver" "" "$PASSWORD_PREFIX-webhook-2"
    upload "$bits/nats-config/nats-server.conf" "$SSH_DEST:$REMOTE_DIR/nats-config/"
    remote "cd '$REMOTE_DIR' && sh -c '$compose_cmd' compose restart"
    ;;
  upgrade)
    # The tutorial's way to a new nats-server: the image edited in docker-compose.yaml (IMAGE),
    # the file copied, `docker compose up -d`, which stops the old container with Docker's
    # default SIGTERM and starts the new one.
    compose
    upload "$bits/docker-compose.yaml" "$SSH_DEST:$REMOTE_DIR/"
    remote "cd '$REMOTE_DIR' && sh -c '$compose_cmd' compose up -d"
    ;;
  renew-cert)
    certificate
    upload "$bits/nats-config/nats-server-cert.pem" "$bits/nats-config/nats-server-key.pem" \
      "$SSH_DEST:$REMOTE_DIR/nats-config/"
    remote "cd '$REMOTE_DIR' && sh -c '$compose_cmd' compose restart"
    ;;
  *)
    echo "usage: $0 bootstrap|rerun|change-config|rotate-password|rotate-webhook-password|upgrade|renew-cert" >&2
    exit 2
    ;;
esac
