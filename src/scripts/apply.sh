# natsup apply: installs the bundle that arrives as a tar on stdin and makes the server use it.
#
# The live files are always a complete old or a complete new version: the bundle is unpacked
# and checked (sha256, then `nats-server -t` in the target image) in .natsup/staging, new TLS
# files get names of their own, and renaming nats-config/nats-server.conf is the commit point.
# .natsup/applied/ holds what the running server was last confirmed on: it is what a failed
# change rolls back to, and what an interrupted run is finished against next time.
#
# Exit codes: 0 applied; 3 rejected, nothing live changed; 4 failed and rolled back;
# 5 failed and the rollback failed too; 1 anything else.
set -u
# Once the upload is in, finish the job even if the SSH client goes away.
trap '' HUP PIPE
# The config holds every user's bcrypt hash and the key is the server's: both arrive 0600 in
# the bundle, and nothing made here (staging, folders, copies) may be readable by other users
# of the server. The container still reads them: the official image runs nats-server as root.
umask 077
cd "$HOME" 2>/dev/null || cd /
find_docker || exit 1
[ -n "$COMPOSE" ] || { say error "neither 'docker compose' nor 'docker-compose' is installed"; exit 1; }

mkdir -p "$DIR" && enter_dir "$DIR" || { say error "cannot create $DIR"; exit 1; }
# nats-data is JetStream's storage: created once, never touched again.
mkdir -p nats-config nats-data .natsup/applied || { say error "cannot write in $PWD"; exit 1; }
set_project

# One apply at a time per deployment. A run that was killed or interrupted after its upload
# goes on applying here (HUP is ignored above), and the next run must neither clear its staging
# nor interleave its commit and reload with it: it waits. An apply lasts at most a validation,
# two readiness waits and a pull; past that the holder is stuck and nothing is changed.
# flock is util-linux's or BusyBox's; without it, applies are not serialized. BusyBox's flock
# has no -w (a bounded wait): polling -n until a deadline works with both.
if command -v flock >/dev/null 2>&1; then
  exec 9>>.natsup/lock
  lock_wait=$((TIMEOUT * 2 + 120))
  lock_deadline=$(($(date +%s) + lock_wait))
  until flock -n 9; do
    if [ "$(date +%s)" -gt "$lock_deadline" ]; then
      say rejected "another natsup run is still applying a change on this server after ${lock_wait}s; stop it or wait, then run the same command again"
      exit 3
    fi
    sleep 0.2
  done
fi
rm -rf .natsup/staging && mkdir .natsup/staging

if ! tar -xpmf - --no-same-owner -C .natsup/staging 2>.natsup/tar.err; then
  say rejected "the upload was cut short: $(tr '\n' ' ' < .natsup/tar.err)"
  rm -rf .natsup/staging .natsup/tar.err
  exit 3
fi
rm -f .natsup/tar.err
# BusyBox's sha256sum has no --quiet (the output is discarded anyway) and counts a blank line
# (the manifest ends with a newline, printf adds one) as a mismatch.
if ! (cd .natsup/staging && printf '%s\n' "$MANIFEST" | sed '/^$/d' | sha256sum -c >/dev/null 2>&1); then
  say rejected "the upload does not match what natsup sent"
  rm -rf .natsup/staging
  exit 3
fi

if ! $DOCKER image inspect "$IMAGE" >/dev/null 2>&1; then
  if ! $DOCKER pull "$IMAGE" >&2; then
    say rejected "cannot pull image $IMAGE"
    rm -rf .natsup/staging
    exit 3
  fi
fi
# A first start has nothing live to protect: starting is the check (a config nats-server
# refuses fails readiness, and the container is taken down below), and it saves a container
# run. Everywhere else the new config is checked before anything live changes.
first_start=no
[ "$ACTION" = start ] && [ ! -f nats-config/nats-server.conf ] && [ -z "$(find_container)" ] && first_start=yes
if [ $first_start = no ] && ! out=$($DOCKER run --rm --network none -v "$PWD/.natsup/staging/nats-config:/config:ro" \
      "$IMAGE" -t -c /config/nats-server.conf 2>&1); then
  say rejected "nats-server refused the new configuration"
  say nats_error "$(printf '%s' "$out" | b64)"
  rm -rf .natsup/staging
  exit 3
fi

# Files no change has confirmed yet (natsup's own compose file copied by hand, say) count as
# applied as they stand.
for f in docker-compose.yaml nats-config/nats-server.conf; do
  a=.natsup/applied/${f##*/}
  [ -f "$a" ] || [ ! -f "$f" ] || cp -p "$f" "$a"
done

install_file() { # src dest: atomic within the destination directory
  cp -p "$1" "$2.natsup-tmp" && mv -f "$2.natsup-tmp" "$2"
}
for f in .natsup/staging/nats-config/*.pem; do
  n=${f##*/}
  cmp -s "$f" "nats-config/$n" || install_file "$f" "nats-config/$n" || { say error "cannot write nats-config/$n"; exit 1; }
done
install_file .natsup/staging/docker-compose.yaml docker-compose.yaml || { say error "cannot write docker-compose.yaml"; exit 1; }
# The commit point.
mv -f .natsup/staging/nats-config/nats-server.conf nats-config/nats-server.conf || { say error "cannot write nats-config/nats-server.conf"; exit 1; }
rm -rf .natsup/staging
say committed yes

# Older natsup versions wrote the config 0644, and `cp -p` keeps a mode: take group and other
# access off every file that holds a hash or a key, live or kept for a rollback.
private_files() {
  chmod go= nats-config/nats-server.conf .natsup/applied/nats-server.conf nats-config/*key*.pem 2>/dev/null
  return 0
}
private_files

log_lines() { $DOCKER logs "$1" 2>&1 | wc -l; }

# Waits for nats-server to log the outcome of a SIGHUP sent when the log had $2 lines.
wait_reload() {
  i=0
  while [ $i -lt $((TIMEOUT * 10)) ]; do
    new=$($DOCKER logs "$1" 2>&1 | tail -n +$(($2 + 1)))
    case "$new" in
      *"Reloaded server configuration"*) return 0 ;;
      *"Failed to reload"*) say failure "$(printf '%s' "$new" | b64)"; return 1 ;;
    esac
    sleep 0.1; i=$((i + 1))
  done
  say failure "$(printf 'nats-server did not confirm the reload within %ss' "$TIMEOUT" | b64)"
  return 1
}

# Waits until the container runs and nats-server says it is ready, reading only the logs of
# its current start: a container started again keeps its old "ready" lines, so those of the
# container that was there before ($1, which had $2 log lines) are skipped. (Docker's
# `logs --since StartedAt` would miss lines nats-server writes before Docker records the
# start.) A restart count that moves while we wait is a crash loop.
wait_ready() {
  i=0
  first=""
  before_id=$1
  before_lines=$2
  while [ $i -lt $((TIMEOUT * 10)) ]; do
    id=$(find_container)
    if [ -n "$id" ]; then
      st=$($DOCKER inspect -f '{{.State.Status}}|{{.RestartCount}}' "$id" 2>/dev/null)
      status=${st%%|*}; restarts=${st#*|}
      [ -n "$first" ] || first=$restarts
      if [ "$status" = running ] && [ "$restarts" = "$first" ]; then
        skip=0
        [ "$id" = "$before_id" ] && skip=$before_lines
        $DOCKER logs "$id" 2>&1 | tail -n +$((skip + 1)) | grep -q "Server is ready" && return 0
      elif [ $i -gt 10 ] && { [ "$restarts" != "$first" ] || [ "$status" = exited ] || [ "$status" = dead ]; }; then
        say failure "$($DOCKER logs --tail 30 "$id" 2>&1 | b64)"
        return 1
      fi
    fi
    sleep 0.1; i=$((i + 1))
  done
  id=$(find_container)
  say failure "$( { printf 'not ready within %ss\n' "$TIMEOUT"; [ -n "$id" ] && $DOCKER logs --tail 30 "$id" 2>&1; } | b64)"
  return 1
}

# Runs $1 (reload | start | recreate) and waits for its outcome.
act() {
  case "$1" in
    reload)
      id=$(find_container)
      n=$(log_lines "$id")
      $DOCKER kill -s HUP "$id" >/dev/null && wait_reload "$id" "$n" ;;
    start | recreate)
      id=$(find_container)
      n=0
      [ -z "$id" ] || n=$(log_lines "$id")
      flag=""
      [ "$1" = start ] || flag=--force-recreate
      if [ "$1" = recreate ] && [ "$PROJECT" != "$OWN_PROJECT" ]; then
        # The container is an adopted one, under the folder's name: this restart moves it to
        # natsup's own project (`down` takes its container and network).
        compose down >&2 2>&1
        PROJECT=$OWN_PROJECT
      fi
      compose up -d $flag >&2 && wait_ready "$id" "$n" ;;
    none)
      return 0 ;;
  esac
}

if act "$ACTION"; then
  for f in docker-compose.yaml nats-config/nats-server.conf; do
    install_file "$f" ".natsup/applied/${f##*/}"
  done
  # Old TLS files are kept until a change that no longer needs them has been confirmed.
  for f in nats-config/nats-server-cert-*.pem nats-config/nats-server-key-*.pem; do
    [ -f "$f" ] || continue
    grep -q "/config/${f##*/}\"" nats-config/nats-server.conf || rm -f "$f"
  done
  say result applied
  exit 0
fi

# The change did not take: put the last confirmed files back.
if [ -f .natsup/applied/nats-server.conf ] && [ -f .natsup/applied/docker-compose.yaml ]; then
  install_file .natsup/applied/docker-compose.yaml docker-compose.yaml
  install_file .natsup/applied/nats-server.conf nats-config/nats-server.conf
  private_files
  case "$ACTION" in
    reload) back=reload ;;
    *) back=recreate ;;
  esac
  if act "$back"; then
    say result rolled-back
    exit 4
  fi
  say result rollback-failed
  exit 5
fi
# A first start that failed has nothing to go back to: stop it rather than let it crash-loop.
compose down >&2 2>&1
say result stopped
exit 4
