# shellcheck shell=sh
# Shared by natsup's remote scripts: output protocol and Docker discovery.
# natsup runs each script as `sh -c HEADER+common.sh+SCRIPT` (src/remote/script.rs): POSIX sh,
# which on some servers is BusyBox ash. The header sets the UPPERCASE parameters.
# Every line natsup reads is `natsup.KEY=VALUE`; anything else is noise and ignored.
say() { printf 'natsup.%s=%s\n' "$1" "$2"; }
b64() { base64 | tr -d '\n'; }

# Finds how this user runs Docker and Compose (DOCKER, COMPOSE, SUDO): 0 found, 1 missing or
# denied (said as natsup.docker), 2 a call ran out of its bound (said as natsup.timeout).
find_docker() {
  DOCKER=""
  if ! command -v docker >/dev/null 2>&1; then
    say docker missing
    return 1
  fi
  # Each call is bounded: a Docker daemon that accepts the connection and never answers
  # hangs its CLI, and the scripts (apply.sh ignores the hang-up) would wait for it forever.
  DOCKER="docker"
  v=$(bounded "$STEP_TIMEOUT" docker version --format '{{.Server.Version}}' 2>/dev/null)
  rc=$?
  if [ $rc != 0 ] && [ $rc != 124 ] && command -v sudo >/dev/null 2>&1; then
    DOCKER="sudo -n docker"
    v=$(bounded "$STEP_TIMEOUT" sudo -n docker version --format '{{.Server.Version}}' 2>/dev/null)
    rc=$?
  fi
  if [ $rc = 124 ]; then
    timed_out "$DOCKER version" "$STEP_TIMEOUT"
    DOCKER=""
    return 2
  elif [ $rc != 0 ]; then
    say docker denied
    DOCKER=""
    return 1
  fi
  say docker "$DOCKER"
  say docker_version "$v"
  SUDO=""
  [ "$DOCKER" = "docker" ] || SUDO="sudo -n "
  # Compose v2 is a docker CLI plugin (`docker compose`); v1 is the separate Python
  # `docker-compose` (Debian 12 still ships 1.29). Either may be the only one installed.
  docker_within "$STEP_TIMEOUT" compose version >/dev/null 2>&1
  rc=$?
  if [ $rc = 124 ]; then
    timed_out "$DOCKER compose version" "$STEP_TIMEOUT"
    return 2
  elif [ $rc = 0 ]; then
    COMPOSE="$DOCKER compose"
  elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE="${SUDO}docker-compose"
  else
    COMPOSE=""
  fi
  say compose "${COMPOSE:-missing}"
}

# Enters the deployment directory $1 by its physical path. Compose v1 labels a container with
# the physical path of its project folder and v2 with the path it was run from, so through a
# symlink the two would differ; from here on $PWD is the physical path for both, and
# LOGICAL_DIR the path as given, to find containers an earlier run made from it.
enter_dir() {
  cd "$1" || return
  LOGICAL_DIR=$PWD
  cd -P . || return
}

# Refuses a deployment folder ($1: absolute, or relative to $PWD) that another user of the
# server could change. Whoever can write in it, or rename a folder on the way to it, can swap
# docker-compose.yaml or a staged file between natsup's sha256 check and `compose up`, and
# Compose runs what that file says as root. So every folder from / down to it, both on the
# path as given and on the physical path its symlinks lead to, must be owned by this user or
# root and writable by neither group nor others, unless it has the sticky bit (then others
# cannot rename or remove what they do not own: /tmp); and the folder itself and everything
# in it must be this user's or root's and writable by no one else, sticky or not.
# nats-data's contents are not looked at: JetStream's files there belong to the container's
# user (root in the official image, another uid in some), and natsup never reads them.
# Says natsup.unsafe_dir=WHY|MODE|UID|OWNER|THIS_USER|PATH (WHY: owner or writable) for the
# first that is not, and
# returns 1; 0 when all are. Uses only `stat -c`, `find` with POSIX tests, `id`: BusyBox too.
check_dir_safe() {
  ME=$(id -u)
  case $1 in /*) path=$1 ;; *) path=$PWD/$1 ;; esac
  # `//x` must become `/x`: BusyBox's `dirname //` is `//`, which would never reach `/`.
  path=$(printf '%s' "$path" | tr -s /)
  while [ "$path" != / ] && [ "${path%/}" != "$path" ]; do path=${path%/}; done
  deepest=""
  p=$path
  while :; do
    if [ -e "$p" ] || [ -L "$p" ]; then
      [ -n "$deepest" ] || deepest=$p
      if [ "$p" = "$path" ]; then unsafe_entry "$p" in && return 1; else unsafe_entry "$p" above && return 1; fi
    fi
    up=$(dirname "$p")
    [ "$p" = / ] || [ "$up" = "$p" ] && break
    p=$up
  done
  phys=$(cd "$deepest" 2>/dev/null && pwd -P) || return 0
  kind=above
  [ "$deepest" = "$path" ] && kind=in
  p=$phys
  while :; do
    unsafe_entry "$p" $kind && return 1
    up=$(dirname "$p")
    [ "$p" = / ] || [ "$up" = "$p" ] && break
    p=$up
    kind=above
  done
  [ "$deepest" = "$path" ] && [ -d "$phys" ] || return 0
  hit=$(cd "$phys" && find . -path ./nats-data -prune -o \
    \( ! -user "$ME" ! -user 0 \) -print -o ! -type l \( -perm -020 -o -perm -002 \) -print 2>/dev/null | head -n 1)
  if [ -n "$hit" ]; then
    unsafe_entry "$phys/${hit#./}" in
    return 1
  fi
  ! { [ -e "$phys/nats-data" ] && unsafe_entry "$phys/nats-data" in; }
}
# Whether $1 is a way in for another user (said as natsup.unsafe_dir): owned by someone else
# than this user or root, or (not being a symlink, whose own mode means nothing) writable by
# group or others, which the sticky bit makes safe only for a folder `above` the deployment.
unsafe_entry() {
  # A path that exists but cannot be looked at (no `stat -c`, or it vanished) is not safe:
  # nothing is known about who can write it.
  info=$(stat -c '%u|%a|%U' "$1" 2>/dev/null) || {
    [ -e "$1" ] || [ -L "$1" ] || return 1
    say unsafe_dir "unchecked|?|?|?|$(id -un)|$1"
    return 0
  }
  uid=${info%%|*}; rest=${info#*|}; mode=${rest%%|*}; owner=${rest#*|}
  if [ "$uid" != "$ME" ] && [ "$uid" != 0 ]; then
    why=owner
  elif [ ! -L "$1" ] && [ $((0$mode & 022)) != 0 ] && { [ "$2" = in ] || [ $((0$mode & 01000)) = 0 ]; }; then
    why=writable
  else
    return 1
  fi
  say unsafe_dir "$why|$mode|$uid|$owner|$(id -un)|$1"
  return 0
}

# Sets PROJECT, the Compose project of the deployment in $PWD, which every compose call names.
# Compose would name it after the folder, so two deployments in folders of one name (two
# users' ~/nats-bits) were one project and the second `up` replaced the first one's server.
# natsup's own name (OWN_PROJECT) is the deployment's name and a hash of the physical path.
# A nats container made here under the folder's name (by natsup before it named projects) is
# adopted as it stands, with no restart; the next recreate, a restart anyway, moves it.
# DIR_CONTAINERS keeps what one `docker ps` said about the containers made from this folder.
# Returns 124 when `docker ps` ran out of its bound: a project guessed from no answer would
# start a second server beside the one there.
set_project() {
  OWN_PROJECT="$PROJECT_PREFIX-$(printf '%s' "$PWD" | sha256sum | cut -c 1-8)"
  DIR_CONTAINERS=$(dir_containers)
  [ $? = 124 ] && return 124
  PROJECT=$(printf '%s\n' "$DIR_CONTAINERS" | OWN="$OWN_PROJECT" awk -F '|' '
    $3 == "nats" && $2 == ENVIRON["OWN"] { own = $2 }
    $3 == "nats" && first == "" { first = $2 }
    END { print (own != "" ? own : (first != "" ? first : ENVIRON["OWN"])) }')
}

# `ID|PROJECT|SERVICE|FOLDER` of each Compose container made from this folder, by any project,
# newest first; 124 when `docker ps` ran out of its bound.
dir_containers() {
  all=$(docker_within "$STEP_TIMEOUT" ps -a --no-trunc --filter label=com.docker.compose.project.working_dir \
    --format '{{.ID}}|{{.Label "com.docker.compose.project"}}|{{.Label "com.docker.compose.service"}}|{{.Label "com.docker.compose.project.working_dir"}}')
  [ $? = 124 ] && return 124
  printf '%s\n' "$all" | HERE="$PWD" GIVEN="$LOGICAL_DIR" awk -F '|' '$4 == ENVIRON["HERE"] || $4 == ENVIRON["GIVEN"]'
}

# The nats container of $PROJECT (labels, under v1 and v2 alike: no slow compose call); 124
# when `docker ps` ran out of its bound.
find_container() {
  ids=$(docker_within "$STEP_TIMEOUT" ps -aq --no-trunc \
    --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=nats")
  [ $? = 124 ] && return 124
  printf '%s\n' "$ids" | head -n 1
}

# The arguments of every compose call: natsup's project name, and `-f docker-compose.yaml`,
# without which Compose v2 would read a compose.yaml someone left beside it first. An operator's
# COMPOSE_FILE on the server (e.g. natsup's file plus an override that sets a log driver) is
# honoured instead of `-f`, except under sudo, whose env_reset drops the variable. PROJECT has
# no spaces (the deployment's [a-z0-9_-] name and hex), so the unquoted expansion splits only
# between words.
compose_args() {
  if [ -n "${COMPOSE_FILE:-}" ] && [ -z "$SUDO" ]; then
    echo "-p $PROJECT"
  else
    echo "-p $PROJECT -f docker-compose.yaml"
  fi
}

# Runs "$@" for at most $1 seconds (coreutils' or BusyBox's `timeout`); 124 when it ran out.
# SIGKILL follows SIGTERM: an attached `docker run` passes SIGTERM on to its container instead
# of exiting. The two `timeout`s exit differently when they kill (124, 137, 143), so running
# out is told by the clock. The child does not get fd 9, apply's lock: only that script holds it.
bounded() {
  s=$1; shift
  if command -v timeout >/dev/null 2>&1; then
    t0=$(date +%s)
    timeout -k 5 "$s" "$@" 9>&-
    rc=$?
    [ $rc -ne 0 ] && [ $(($(date +%s) - t0)) -ge "$s" ] && rc=124
    return $rc
  else
    "$@" 9>&-
  fi
}
# Says that the call $1 ran out of its $2 seconds (`bounded` returned 124), as natsup.timeout,
# which natsup shows as the reason the run stopped. A caller says it where the call ran, not
# inside the call's $(...), whose output is captured.
timed_out() { say timeout "\`$1\` did not answer within ${2}s"; }

# Docker, or Compose on this deployment's project, for at most $1 seconds (`bounded`: these run
# under `timeout`, which runs programs, not shell functions). DOCKER and COMPOSE each hold a
# command with its options ("sudo -n docker", "docker compose") and compose_args prints
# options: they are expanded unquoted on purpose, to split into words (no word in them holds a
# space or a glob character).
docker_within() {
  docker_limit=$1; shift
  # shellcheck disable=SC2086 # DOCKER splits into words on purpose (above)
  bounded "$docker_limit" $DOCKER "$@"
}
compose_within() {
  compose_limit=$1; shift
  # shellcheck disable=SC2046,SC2086 # COMPOSE and compose_args split into words on purpose (above)
  bounded "$compose_limit" $COMPOSE $(compose_args) "$@"
}

running() { [ "$(docker_within "$STEP_TIMEOUT" inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }

# Waits up to $2 seconds for container $1, whose nats-server is in lame duck mode, to exit by
# itself, then ends it: SIGINT, and SIGKILL if it still runs 10 s later. Not SIGTERM: in lame
# duck mode nats-server ignores SIGTERM (its handler shuts down on SIGTERM only when no lame
# duck is under way), so SIGTERM only ever led to the SIGKILL, 10 s later, of a server that had
# not flushed its JetStream files. On SIGINT it shuts down cleanly at any time.
end_lame_duck() {
  exited_within "$1" "$2" && return 0
  docker_within "$STEP_TIMEOUT" kill -s INT "$1" >/dev/null 2>&1
  exited_within "$1" 10 && return 0
  docker_within "$STEP_TIMEOUT" kill "$1" >/dev/null 2>&1
  return 0
}

# Whether container $1 stops running within $2 seconds.
exited_within() {
  exit_deadline=$(($(date +%s) + $2))
  while running "$1"; do
    [ "$(date +%s)" -lt "$exit_deadline" ] || return 1
    sleep 0.2
  done
}

# A quick Docker call's bound where the script sets none (observe).
STEP_TIMEOUT=${STEP_TIMEOUT:-30}
