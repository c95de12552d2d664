# shellcheck shell=sh
# natsup observe: read-only. Reports what natsup needs to plan a change:
# Docker and Compose, the deployment directory, the files there, the container, the port.
set -u
cd "$HOME" 2>/dev/null || cd /
# A Docker call that ran out of its bound has said which (natsup.timeout): the report would
# miss what it should have told, and the next call would wait as long. natsup refuses it.
stop() { timed_out "$1" "$STEP_TIMEOUT"; exit 1; }
find_docker
[ $? = 2 ] && exit 1

# Before anything else reads the folder: whether another user could change it.
check_dir_safe "$DIR"

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
  set_project || stop "$DOCKER ps"
  say project "$PROJECT"
  say project_own "$OWN_PROJECT"
  for p in $(printf '%s\n' "$DIR_CONTAINERS" | cut -d '|' -f 2 | sort -u); do
    [ "$p" = "$PROJECT" ] || say "dir_project:$p" yes
  done
  ID=$(printf '%s\n' "$DIR_CONTAINERS" | PROJECT="$PROJECT" awk -F '|' \
    '$2 == ENVIRON["PROJECT"] && $3 == "nats" { print $1; exit }')
  if [ -n "$ID" ]; then
    say container_id "$ID"
    info=$(docker_within "$STEP_TIMEOUT" inspect -f '{{.State.Status}}|{{.State.StartedAt}}|{{.Config.Image}}|{{.RestartCount}}' "$ID")
    [ $? = 124 ] && stop "$DOCKER inspect"
    say container "$info"
  fi
fi

# Whether address $1 (as ss or Docker print it) is one a listener on BIND would share: any
# address when BIND is unset (one server: any listener on the port takes it) or a wildcard.
# A cluster node (BIND set) shares the machine with listeners on other addresses: only its
# own address or a wildcard one takes its port.
clashes() {
  case "${BIND:-}|$1" in
    "|"* | "0.0.0.0|"* | "::|"* | *"|0.0.0.0" | *"|" | *"|*" | *"|[::]" | *"|::") return 0 ;;
  esac
  [ "$1" = "$BIND" ] || [ "$1" = "[$BIND]" ]
}

# Each port the node listens on (the client port, and a cluster node's route port): free,
# ours, or taken by another container or process, said as natsup.port_taken:ROLE:PORT=HOLDER.
# shellcheck disable=SC2153 # PORT is the header's, not a misspelt `port`
for role_port in "client:$PORT" ${ROUTE_PORT:+"route:$ROUTE_PORT"}; do
  role=${role_port%%:*}; port=${role_port#*:}
  if [ -n "$DOCKER" ]; then
    published=$(docker_within "$STEP_TIMEOUT" ps -q --no-trunc --filter "publish=$port")
    [ $? = 124 ] && stop "$DOCKER ps --filter publish=$port"
    for other in $(printf '%s\n' "$published" | grep -v "^${ID:-none}"); do
      # Docker's publish filter matches the port on any address: the container's own
      # bindings say whether it takes this node's.
      # shellcheck disable=SC2016 # a Go template for docker, not shell
      seen=$(docker_within "$STEP_TIMEOUT" inspect -f \
        '{{.Name}} {{range $p, $c := .NetworkSettings.Ports}}{{range $c}}{{.HostIp}}|{{.HostPort}} {{end}}{{end}}' "$other")
      [ $? = 124 ] && stop "$DOCKER inspect"
      name=${seen%% *}
      for b in ${seen#* }; do
        if [ "${b#*|}" = "$port" ] && clashes "${b%|*}"; then
          say "port_taken:$role:$port" "container ${name#/}"
          break 2
        fi
      done
    done
  fi
  if [ -z "$ID" ] && command -v ss >/dev/null 2>&1; then
    # -p names the process when this user may see it (its own, or any for root).
    listener=$(ss -Hltnp "sport = :$port" 2>/dev/null | while read -r _ _ _ addr _ rest; do
      if clashes "${addr%:*}"; then printf '%s\n' "$rest"; break; fi
    done)
    if [ -n "$listener" ]; then
      case "$listener" in
        *'users:(("'*) holder=${listener#*users:((\"}; pid=${holder#*pid=}
          say "port_taken:$role:$port" "process ${holder%%\"*} (pid ${pid%%,*}) listening on $port" ;;
        *) say "port_taken:$role:$port" "a process listening on $port" ;;
      esac
    fi
  fi
done
say observed ok
