# shellcheck shell=sh
# natsup acme: the http-01 responder on the server, for one ACME order.
#   STEP=preflight  checks that the token can be served: the port is free (standalone) or the
#                   web root is writable (webroot). Changes nothing.
#   STEP=publish    serves the tokens read on stdin (`TOKEN KEY_AUTHORIZATION` lines): in
#                   standalone mode a container of $IMAGE running `busybox httpd` on $PORT
#                   (host network), in webroot mode files under $WEBROOT/.well-known/.
#   STEP=remove     removes everything publish made: the container, the token files.
# MODE is standalone or webroot; NAME is the container's name; TOKENS the tokens to remove.
set -u
cd "$HOME" 2>/dev/null || cd /
CHALLENGE_DIR=.well-known/acme-challenge

if [ "$MODE" = standalone ]; then
  find_docker >/dev/null || { say error "Docker is not usable on the server"; exit 2; }
  mkdir -p "$DIR" 2>/dev/null
  # Not under .natsup/: that folder is natsup's mark on a deployment folder, and the order runs
  # before the deployment's pre-flight, which refuses a Compose project natsup did not make.
  WWW="$(cd "$DIR" && pwd)/.natsup-acme-www"
else
  WWW="$WEBROOT"
fi

port_owner() {
  owner=""
  others=$($DOCKER ps -q --no-trunc --filter "publish=$PORT" | head -n 1)
  if [ -n "$others" ]; then
    owner="container $($DOCKER inspect -f '{{.Name}}' "$others" | sed 's#^/##')"
  elif command -v ss >/dev/null 2>&1; then
    line=$(ss -Hltnp "sport = :$PORT" 2>/dev/null | head -n 1)
    if [ -n "$line" ]; then
      proc=$(printf '%s' "$line" | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p')
      owner="${proc:-a process}"
    fi
  fi
  printf '%s' "$owner"
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
  mkdir -p "$WWW/$CHALLENGE_DIR" || { say error "cannot create $WWW/$CHALLENGE_DIR"; exit 2; }
  first=""
  while read -r token keyauth; do
    [ -n "$token" ] || continue
    printf '%s' "$keyauth" > "$WWW/$CHALLENGE_DIR/$token" || { say error "cannot write $WWW/$CHALLENGE_DIR/$token"; exit 2; }
    chmod 0644 "$WWW/$CHALLENGE_DIR/$token"
    [ -n "$first" ] || { first=$token; firstauth=$keyauth; }
  done
  if [ "$MODE" = standalone ]; then
    $DOCKER rm -f "$NAME" >/dev/null 2>&1
    if ! err=$($DOCKER run -d --name "$NAME" --network host -v "$WWW:/www:ro" \
        --label natsup.acme=responder "$IMAGE" busybox httpd -f -p "$PORT" -h /www 2>&1); then
      say error "the responder container did not start: $(printf '%s' "$err" | tail -n 1)"
      exit 2
    fi
    # Ready once it serves the first token to itself.
    i=0
    while [ $i -lt 50 ]; do
      got=$($DOCKER exec "$NAME" busybox wget -q -O - "http://127.0.0.1:$PORT/$CHALLENGE_DIR/$first" 2>/dev/null)
      [ "$got" = "$firstauth" ] && break
      if [ "$($DOCKER inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" != true ]; then
        say error "the responder container stopped: $($DOCKER logs --tail 3 "$NAME" 2>&1 | tr '\n' ' ')"
        $DOCKER rm -f "$NAME" >/dev/null 2>&1
        exit 2
      fi
      i=$((i + 1))
      sleep 0.2
    done
    [ "$got" = "$firstauth" ] || { say error "the responder container does not serve the token on port $PORT"; exit 2; }
  fi
  say published ok
  ;;
remove)
  [ "$MODE" = standalone ] && $DOCKER rm -f "$NAME" >/dev/null 2>&1
  for token in $TOKENS; do
    rm -f "$WWW/$CHALLENGE_DIR/$token"
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
