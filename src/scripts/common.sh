# Shared by natsup's remote scripts: output protocol and Docker discovery.
# Every line natsup reads is `natsup.KEY=VALUE`; anything else is noise and ignored.
say() { printf 'natsup.%s=%s\n' "$1" "$2"; }
b64() { base64 | tr -d '\n'; }

find_docker() {
  DOCKER=""
  if ! command -v docker >/dev/null 2>&1; then
    say docker missing
    return 1
  fi
  if v=$(docker version --format '{{.Server.Version}}' 2>/dev/null); then
    DOCKER="docker"
  elif command -v sudo >/dev/null 2>&1 && v=$(sudo -n docker version --format '{{.Server.Version}}' 2>/dev/null); then
    DOCKER="sudo -n docker"
  else
    say docker denied
    return 1
  fi
  say docker "$DOCKER"
  say docker_version "$v"
  SUDO=""
  [ "$DOCKER" = "docker" ] || SUDO="sudo -n "
  # Compose v2 is a docker CLI plugin (`docker compose`); v1 is the separate Python
  # `docker-compose` (Debian 12 still ships 1.29). Either may be the only one installed.
  if $DOCKER compose version >/dev/null 2>&1; then
    COMPOSE="$DOCKER compose"
  elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE="${SUDO}docker-compose"
  else
    COMPOSE=""
  fi
  say compose "${COMPOSE:-missing}"
}

# The nats container of the compose project in $PWD. Compose labels every container with its
# project's working directory, under v1 and v2 alike, so this needs no project-name guess and
# no (slow) compose call.
find_container() {
  $DOCKER ps -aq --no-trunc \
    --filter "label=com.docker.compose.project.working_dir=$PWD" \
    --filter "label=com.docker.compose.service=nats" | head -n 1
}
