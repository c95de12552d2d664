# shellcheck shell=sh
# natsup observe: read-only. Reports what natsup needs to plan a change:
# Docker and Compose, the deployment directory, the files there, the container, the port.
set -u
cd "$HOME" 2>/dev/null || cd /
find_docker || true

INDIR=""
if [ -d "$DIR" ]; then
  if [ -w "$DIR" ]; then say dir writable; else say dir readonly; fi
  enter_dir "$DIR" && INDIR=yes
  say dir_abs "$PWD"
  # natsup's own mark: apply.sh makes .natsup/ before anything else in a deployment.
  [ -d .natsup ] && say marker yes
  for f in compose.yaml compose.yml docker-compose.yml; do
    [ -f "$f" ] && say compose_file "$f"
  done
  for f in docker-compose.yaml nats-config/nats-server.conf \
           .natsup/applied/docker-compose.yaml .natsup/applied/nats-server.conf; do
    [ -f "$f" ] && say "content:$f" "$(b64 < "$f")"
  done
  for f in nats-config/*.pem; do
    [ -f "$f" ] && say "sha256:$f" "$(sha256sum < "$f" | cut -d ' ' -f 1)"
  done
  [ -d .natsup/staging ] && say staging leftover
else
  # The first existing ancestor decides whether `mkdir -p` will work.
  p="$DIR"
  while [ ! -d "$p" ]; do p=$(dirname "$p"); done
  if [ -w "$p" ]; then say dir absent; else say dir unwritable; fi
fi

ID=""
# $DIR may be relative to $HOME; we are inside it already when INDIR is set.
if [ -n "$DOCKER" ] && [ -n "$INDIR" ]; then
  set_project
  say project "$PROJECT"
  say project_own "$OWN_PROJECT"
  for p in $(printf '%s\n' "$DIR_CONTAINERS" | cut -d '|' -f 2 | sort -u); do
    [ "$p" = "$PROJECT" ] || say "dir_project:$p" yes
  done
  ID=$(printf '%s\n' "$DIR_CONTAINERS" | PROJECT="$PROJECT" awk -F '|' \
    '$2 == ENVIRON["PROJECT"] && $3 == "nats" { print $1; exit }')
  if [ -n "$ID" ]; then
    say container_id "$ID"
    say container "$($DOCKER inspect -f '{{.State.Status}}|{{.State.StartedAt}}|{{.Config.Image}}|{{.RestartCount}}' "$ID")"
  fi
fi

# Port: free, ours, or taken by another container or process.
if [ -n "$DOCKER" ]; then
  others=$($DOCKER ps -q --no-trunc --filter "publish=$PORT" | grep -v "^${ID:-none}" | head -n 1)
  if [ -n "$others" ]; then
    say port_taken "container $($DOCKER inspect -f '{{.Name}}' "$others" | sed 's#^/##')"
  fi
fi
if [ -z "$ID" ] && command -v ss >/dev/null 2>&1; then
  # A cluster node on the host's network (BIND set) shares the machine with other listeners
  # on the same port but other addresses; only its own address or a wildcard takes it.
  listener=$(ss -Hltn "sport = :$PORT" 2>/dev/null | awk -v bind="${BIND:-}" -v port="$PORT" '
    { a = $4; sub(":" port "$", "", a)
      if (bind == "" || bind == "0.0.0.0" || bind == "::" || a == bind || a == "[" bind "]" ||
          a == "0.0.0.0" || a == "*" || a == "[::]") { print; exit } }')
  [ -n "$listener" ] && say port_taken "a process listening on $PORT"
fi
say observed ok
