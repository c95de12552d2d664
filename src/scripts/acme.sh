# shellcheck shell=sh
# natsup acme: the http-01 responder on the server, for one ACME order.
#   STEP=preflight  checks that the token can be served: the port is free (standalone) or the
#                   web root is writable (webroot). Changes nothing.
#   STEP=publish    serves the tokens read on stdin (`TOKEN KEY_AUTHORIZATION` lines): in
#                   standalone mode a container of $IMAGE running `busybox httpd` on $PORT
#                   (host network), in webroot mode files under $WEBROOT/.well-known/.
#   STEP=remove     removes everything publish made: the container, the token files.
# MODE is standalone or webroot; NAME is the container's name; TOKENS the tokens to remove,
# one a line. Every Docker call is bounded (`docker_within`, common.sh): STEP_TIMEOUT for a
# quick call, PULL_TIMEOUT for pulling the image, START_TIMEOUT for starting the responder,
# READY_TIMEOUT for it to serve the first token; LIFETIME is how long the responder container
# may live at all.
set -u
cd "$HOME" 2>/dev/null || cd /
CHALLENGE_DIR=.well-known/acme-challenge

if [ "$MODE" = standalone ]; then
  find_docker >/dev/null || { say error "Docker is not usable on the server"; exit 2; }
  # The token folder goes inside the deployment folder: the same check as apply.sh's, before
  # and after it is made, so a folder another user made or can write is never written into.
  check_dir_safe "$DIR" || { say error "the deployment folder $DIR, or one above it, is another user's or writable by others: run natsup up, whose pre-flight names which and how to fix it"; exit 2; }
  mkdir -p "$DIR" 2>/dev/null
  check_dir_safe "$DIR" || { say error "the deployment folder $DIR is another user's or writable by others"; exit 2; }
  # Not under .natsup/: that folder is natsup's mark on a deployment folder, and the order runs
  # before the deployment's pre-flight, which refuses a Compose project natsup did not make.
  DIR=$(cd "$DIR" && pwd)
  WWW="$DIR/.natsup-acme-www"
else
  WWW="$WEBROOT"
fi

# RFC 8555 section 8.3: an http-01 token holds base64url characters only. natsup checks each
# token before it sends it; checked again here because it becomes a file name: a `/`, `..` or
# a glob character would name a file outside the challenge folder.
valid_token() {
  case "$1" in
  '' | *[!A-Za-z0-9_-]*) return 1 ;;
  esac
  return 0
}

port_owner() {
  owner=""
  others=$(docker_within "$STEP_TIMEOUT" ps -q --no-trunc --filter "publish=$PORT" | head -n 1)
  if [ -n "$others" ]; then
    owner="container $(docker_within "$STEP_TIMEOUT" inspect -f '{{.Name}}' "$others" | sed 's#^/##')"
  elif command -v ss >/dev/null 2>&1; then
    line=$(ss -Hltnp "sport = :$PORT" 2>/dev/null | head -n 1)
    if [ -n "$line" ]; then
      proc=$(printf '%s' "$line" | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p')
      owner="${proc:-a process}"
    fi
  fi
  printf '%s' "$owner"
}

# A publish that could still start the responder: each one leaves `PID DEADLINE` in a file of
# its own beside $WWW while it runs, DEADLINE being when its own bounds have surely ended it
# (epoch seconds). The responder is removed only once none is left, so that a start still
# under way (natsup stopped waiting for it, or its connection broke) cannot bring the
# container up after the removal, holding the port for good.
PUBLISHERS="$DIR/.natsup-acme-publisher"
wait_for_publishers() {
  for f in "$PUBLISHERS".*; do
    [ -f "$f" ] || continue
    read -r pid deadline <"$f" 2>/dev/null
    while [ "$pid" != "$$" ] && kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -le "${deadline:-0}" ]; do
      sleep 1
    done
    [ "$pid" = "$$" ] || rm -f "$f"
  done
}

case "$STEP" in
preflight)
  if [ "$MODE" = standalone ]; then
    owner=$(port_owner)
    # A container of an earlier run that died before removing it is ours to replace.
    if [ -n "$owner" ] && [ "$owner" != "container $NAME" ]; then
      say port_taken "$owner"
      exit 3
    fi
  else
    if [ ! -d "$WWW" ]; then
      say error "the web root $WWW does not exist on the server"
      exit 3
    fi
    # Checked, not made: a pre-flight changes nothing, and an order that fails before
    # publishing must not leave folders in someone's web root.
    probe="$WWW/$CHALLENGE_DIR"
    while [ ! -d "$probe" ]; do probe=$(dirname "$probe"); done
    if [ ! -w "$probe" ]; then
      say error "$(id -un) cannot write into $probe on the server"
      exit 3
    fi
  fi
  say preflight ok
  ;;
publish)
  # Every line is checked before anything is written.
  lines=$(cat)
  first=""
  firstauth=""
  while read -r token keyauth; do
    [ -n "$token" ] || continue
    valid_token "$token" || { say error "refused an ACME token that is not base64url: $token"; exit 2; }
    [ -n "$first" ] || { first=$token; firstauth=$keyauth; }
  done <<EOF
$lines
EOF
  # No token, no responder: every authorization of the order was already valid.
  [ -n "$first" ] || { say published none; exit 0; }
  if [ "$MODE" = standalone ]; then
    # Bounded below: the image check, the pull, the start, the readiness wait, and the calls
    # after it, each at most its bound plus `timeout`'s 5 s between SIGTERM and SIGKILL.
    echo "$$ $(($(date +%s) + 2 * STEP_TIMEOUT + PULL_TIMEOUT + START_TIMEOUT + READY_TIMEOUT + 4 * STEP_TIMEOUT + 60))" >"$PUBLISHERS.$$"
  fi
  mkdir -p "$WWW/$CHALLENGE_DIR" || { say error "cannot create $WWW/$CHALLENGE_DIR"; exit 2; }
  while read -r token keyauth; do
    [ -n "$token" ] || continue
    printf '%s' "$keyauth" >"$WWW/$CHALLENGE_DIR/$token" || { say error "cannot write $WWW/$CHALLENGE_DIR/$token"; exit 2; }
    chmod 0644 "$WWW/$CHALLENGE_DIR/$token"
  done <<EOF
$lines
EOF
  if [ "$MODE" = standalone ]; then
    finish() { rm -f "$PUBLISHERS.$$"; exit "$1"; }
    docker_within "$STEP_TIMEOUT" rm -f "$NAME" >/dev/null 2>&1
    if ! docker_within "$STEP_TIMEOUT" image inspect "$IMAGE" >/dev/null 2>&1; then
      docker_within "$PULL_TIMEOUT" pull "$IMAGE" >/dev/null 2>&1
      case $? in
      0) ;;
      124) say error "pulling the responder image $IMAGE did not finish within ${PULL_TIMEOUT}s"; finish 2 ;;
      *) say error "cannot pull the responder image $IMAGE"; finish 2 ;;
      esac
    fi
    # httpd daemonizes (no -f) once it listens, and the container's main process is then a
    # sleep: the responder stops by itself after LIFETIME, however this order ends, so even a
    # removal that never comes (the connection to the server lost for good) frees the port.
    # The $1 and $2 are the container shell's own, its arguments after `responder`.
    # shellcheck disable=SC2016
    err=$(docker_within "$START_TIMEOUT" run -d --name "$NAME" --network host -v "$WWW:/www:ro" \
      --label natsup.acme=responder "$IMAGE" \
      busybox sh -c 'busybox httpd -p "$1" -h /www && exec busybox sleep "$2"' responder "$PORT" "$LIFETIME" 2>&1)
    case $? in
    0) ;;
    124)
      say error "the responder container did not start within ${START_TIMEOUT}s"
      finish 2
      ;;
    *)
      say error "the responder container did not start: $(printf '%s' "$err" | tail -n 1)"
      finish 2
      ;;
    esac
    # Ready once it serves the first token to itself.
    deadline=$(($(date +%s) + READY_TIMEOUT))
    got=""
    while [ "$(date +%s)" -le "$deadline" ]; do
      got=$(docker_within "$STEP_TIMEOUT" exec "$NAME" busybox wget -q -O - "http://127.0.0.1:$PORT/$CHALLENGE_DIR/$first" 2>/dev/null)
      [ "$got" = "$firstauth" ] && break
      if [ "$(docker_within "$STEP_TIMEOUT" inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" != true ]; then
        say error "the responder container stopped: $(docker_within "$STEP_TIMEOUT" logs --tail 3 "$NAME" 2>&1 | tr '\n' ' ')"
        finish 2
      fi
      sleep 0.2
    done
    [ "$got" = "$firstauth" ] || { say error "the responder container does not serve the token on port $PORT"; finish 2; }
    rm -f "$PUBLISHERS.$$"
  fi
  say published ok
  ;;
remove)
  if [ "$MODE" = standalone ]; then
    wait_for_publishers
    docker_within "$STEP_TIMEOUT" rm -f "$NAME" >/dev/null 2>&1
  fi
  # One token a line, each checked: never split or globbed by the shell.
  printf '%s\n' "$TOKENS" | while IFS= read -r token; do
    valid_token "$token" && rm -f "$WWW/$CHALLENGE_DIR/$token"
  done
  if [ "$MODE" = standalone ]; then
    rm -rf "$WWW"
  else
    # Only what natsup made: the folders go only when nothing else is in them.
    rmdir "$WWW/$CHALLENGE_DIR" "$WWW/.well-known" 2>/dev/null
  fi
  say removed ok
  ;;
esac
