# shellcheck shell=sh
# natsup apply: installs the bundle that arrives as a tar on stdin and makes the server use it.
#
# The live files are always a complete old or a complete new version: the bundle is unpacked
# and checked (sha256, then `nats-server -t` in the target image) in .natsup/staging, new TLS
# files get names of their own, and renaming nats-config/nats-server.conf is the commit point.
# .natsup/applied/ holds what the running server was last confirmed on: it is what a failed
# change rolls back to, and what an interrupted run is finished against next time.
#
# Exit codes: 0 applied; 3 rejected, nothing live changed; 4 failed and rolled back;
# 5 failed and the rollback failed too; 6 committed but not confirmed by the log; 1 anything
# else. `natsup.step=` names the step that failed.
#
# nats-server's log is the proof of a reload or a start, but a log driver that cannot be read
# back (`none`, syslog, ...) or a rotation during the wait can hide it. Then (6) the change
# stays live but is not recorded as applied, and natsup proves it from its side (the served
# certificate, a login per user) and runs this script again with ACTION `confirm` (record it)
# or `undo-ACTION` (roll back as below), with the same MANIFEST and nothing on stdin.
#
# Every step that waits on Docker has a bound (the header's *_TIMEOUT, in seconds, derived by
# deploy.rs from `up --timeout`): an image whose entrypoint never exits, a pull or a
# `compose up` that hangs would otherwise keep this script, and the lock below, forever.
set -u
# Once the upload is in, finish the job even if the SSH client goes away.
trap '' HUP PIPE
# The config holds every user's bcrypt hash and the key is the server's: both arrive 0600 in
# the bundle, and nothing made here (staging, folders, copies) may be readable by other users
# of the server. The container still reads them: the official image runs nats-server as root.
umask 077
cd "$HOME" 2>/dev/null || cd /
# Before the commit, a Docker call that ran out of its bound rejects the change: it has said
# which (natsup.timeout), nothing live changed, and the next call would wait as long.
stuck() {
  timed_out "$1" "$STEP_TIMEOUT"
  say rejected "a Docker call did not answer"
  rm -rf .natsup/staging
  exit 3
}
say step "checking Docker"
find_docker
case $? in
  0) ;;
  2) say rejected "a Docker call did not answer"; exit 3 ;;
  *) exit 1 ;;
esac

[ -n "$COMPOSE" ] || { say error "neither 'docker compose' nor 'docker-compose' is installed"; exit 1; }

# The folder and every folder on the way to it are checked before anything is made there
# (natsup's pre-flight checked them too, but that was another command), and again once made:
# whoever made one of them first, between the two, owns it and is refused.
say step "checking the deployment folder"
check_dir_safe "$DIR" || { say rejected "the deployment folder is not safe"; exit 3; }
mkdir -p "$DIR" || { say error "cannot create $DIR"; exit 1; }
check_dir_safe "$DIR" || { say rejected "the deployment folder is not safe"; exit 3; }
enter_dir "$DIR" || { say error "cannot enter $DIR"; exit 1; }
say step "receiving the change"
# nats-data is JetStream's storage: created once, never touched again.
mkdir -p nats-config nats-data .natsup/applied || { say error "cannot write in $PWD"; exit 1; }

# One apply at a time per deployment. A run that was killed or interrupted after its upload
# goes on applying here (HUP is ignored above), and the next run must neither clear its staging
# nor interleave its commit and reload with it: it waits. An apply lasts at most a validation,
# two readiness waits and a pull; past that the holder is stuck and nothing is changed.
# flock is util-linux's or BusyBox's; without it, applies are not serialized. BusyBox's flock
# has no -w (a bounded wait): polling -n until a deadline works with both.
if command -v flock >/dev/null 2>&1; then
  exec 9>>.natsup/lock
  lock_wait=$LOCK_TIMEOUT
  lock_deadline=$(($(date +%s) + lock_wait))
  until flock -n 9; do
    if [ "$(date +%s)" -gt "$lock_deadline" ]; then
      say rejected "another natsup run is still applying a change on this server after ${lock_wait}s; stop it or wait, then run the same command again"
      exit 3
    fi
    sleep 0.2
  done
fi
# Under the lock: a run that waited for another must see the project that run left (a recreate
# moves an adopted container to natsup's own project).
set_project || stuck "$DOCKER ps"
install_file() { # src dest: atomic within the destination directory
  cp -p "$1" "$2.natsup-tmp" && mv -f "$2.natsup-tmp" "$2"
}

FOLLOW_UP=""
case "$ACTION" in
  confirm) FOLLOW_UP=confirm ;;
  undo-*) FOLLOW_UP=undo; ACTION=${ACTION#undo-} ;;
esac
if [ -n "$FOLLOW_UP" ] && ! printf '%s\n' "$MANIFEST" | sed '/^$/d' | sha256sum -c >/dev/null 2>&1; then
  say rejected "the live files changed since natsup applied them; run the same command again"
  exit 3
fi

# The upload, its checks and the commit; a follow-up skips them (not indented, to keep the
# history of these lines readable).
if [ -z "$FOLLOW_UP" ]; then
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

docker_within "$STEP_TIMEOUT" image inspect "$IMAGE" >/dev/null 2>&1
rc=$?
[ $rc = 124 ] && stuck "$DOCKER image inspect"
if [ $rc != 0 ]; then
  say step "pulling the image"
  docker_within "$PULL_TIMEOUT" pull "$IMAGE" >&2
  rc=$?
  if [ $rc -ne 0 ]; then
    if [ $rc = 124 ]; then
      say rejected "pulling image $IMAGE did not finish within ${PULL_TIMEOUT}s"
    else
      say rejected "cannot pull image $IMAGE"
    fi
    rm -rf .natsup/staging
    exit 3
  fi
fi
# A first start has nothing live to protect: starting is the check (a config nats-server
# refuses fails readiness, and the container is taken down below), and it saves a container
# run. Everywhere else the new config is checked before anything live changes.
first_start=no
if [ "$ACTION" = start ] && [ ! -f nats-config/nats-server.conf ]; then
  existing=$(find_container) || stuck "$DOCKER ps"
  [ -z "$existing" ] && first_start=yes
fi
if [ $first_start = no ]; then
  say step "validating the new configuration"
  # Named, so that a run that ran out can remove it: killing `docker run` does not stop the
  # container, and a PID 1 without handlers ignores the SIGTERM docker passes on.
  validator=natsup-validate-$$-$(date +%s)
  out=$(docker_within "$VALIDATE_TIMEOUT" run --rm --name "$validator" --network none \
      -v "$PWD/.natsup/staging/nats-config:/config:ro" "$IMAGE" -t -c /config/nats-server.conf 2>&1)
  rc=$?
  if [ $rc = 124 ]; then
    docker_within "$STEP_TIMEOUT" rm -f "$validator" >/dev/null 2>&1
    say rejected "\`nats-server -t\` in image $IMAGE did not finish within ${VALIDATE_TIMEOUT}s (does the image run nats-server?); its container was removed"
    rm -rf .natsup/staging
    exit 3
  elif [ $rc -ne 0 ]; then
    say rejected "nats-server refused the new configuration"
    say nats_error "$(printf '%s' "$out" | b64)"
    rm -rf .natsup/staging
    exit 3
  fi
fi

# Files no change has confirmed yet (natsup's own compose file copied by hand, say) count as
# applied as they stand.
for f in docker-compose.yaml nats-config/nats-server.conf; do
  a=.natsup/applied/${f##*/}
  [ -f "$a" ] || [ ! -f "$f" ] || cp -p "$f" "$a"
done

for f in .natsup/staging/nats-config/*.pem; do
  n=${f##*/}
  cmp -s "$f" "nats-config/$n" || install_file "$f" "nats-config/$n" || { say error "cannot write nats-config/$n"; exit 1; }
done
install_file .natsup/staging/docker-compose.yaml docker-compose.yaml || { say error "cannot write docker-compose.yaml"; exit 1; }
# The commit point.
mv -f .natsup/staging/nats-config/nats-server.conf nats-config/nats-server.conf || { say error "cannot write nats-config/nats-server.conf"; exit 1; }
rm -rf .natsup/staging
say committed yes
fi

# Older natsup versions wrote the config 0644, and `cp -p` keeps a mode: take group and other
# access off every file that holds a hash or a key, live or kept for a rollback.
private_files() {
  chmod go= nats-config/nats-server.conf .natsup/applied/nats-server.conf nats-config/*key*.pem 2>/dev/null
  return 0
}
private_files

log_lines() { docker_within "$STEP_TIMEOUT" logs "$1" 2>&1 | wc -l; }

# Waits for nats-server to log the outcome of a SIGHUP sent when the log had $2 lines.
wait_reload() {
  deadline=$(($(date +%s) + TIMEOUT))
  while [ "$(date +%s)" -le "$deadline" ]; do
    new=$(docker_within "$STEP_TIMEOUT" logs "$1" 2>&1 | tail -n +$(($2 + 1)))
    case "$new" in
      *"Reloaded server configuration"*) return 0 ;;
      *"Failed to reload"*) say failure "$(printf '%s' "$new" | b64)"; return 1 ;;
    esac
    sleep 0.1
  done
  # Neither line came (a rotated log, a slow reload): natsup decides.
  say unconfirmed "$(printf 'nats-server did not log the outcome of the reload within %ss' "$TIMEOUT" | b64)"
  return 2
}

# Waits until the container runs and nats-server says it is ready, reading only the logs of
# its current start: a container started again keeps its old "ready" lines, so those of the
# container that was there before ($1, which had $2 log lines) are skipped. (Docker's
# `logs --since StartedAt` would miss lines nats-server writes before Docker records the
# start.) A restart count that moves while we wait is a crash loop.
wait_ready() {
  started=$(date +%s)
  first=""
  status=""
  restarts=""
  before_id=$1
  before_lines=$2
  while [ "$(date +%s)" -le $((started + TIMEOUT)) ]; do
    id=$(find_container)
    if [ -n "$id" ]; then
      st=$(docker_within "$STEP_TIMEOUT" inspect -f '{{.State.Status}}|{{.RestartCount}}' "$id" 2>/dev/null)
      status=${st%%|*}; restarts=${st#*|}
      [ -n "$first" ] || first=$restarts
      if [ "$status" = running ] && [ "$restarts" = "$first" ]; then
        skip=0
        [ "$id" = "$before_id" ] && skip=$before_lines
        if ! docker_within "$STEP_TIMEOUT" logs --tail 1 "$id" >/dev/null 2>&1; then
          say unconfirmed "$(printf 'the container runs, and its log cannot be read' | b64)"
          return 2
        fi
        docker_within "$STEP_TIMEOUT" logs "$id" 2>&1 | tail -n +$((skip + 1)) | grep -q "Server is ready" && return 0
      elif [ "$(date +%s)" -gt $((started + 1)) ] && { [ "$restarts" != "$first" ] || [ "$status" = exited ] || [ "$status" = dead ]; }; then
        say failure "$(docker_within "$STEP_TIMEOUT" logs --tail 30 "$id" 2>&1 | b64)"
        return 1
      fi
    fi
    sleep 0.1
  done
  id=$(find_container)
  if [ "$status" = running ] && [ "$restarts" = "$first" ]; then
    # Running all along, but the ready line never showed (a rotated log): natsup decides.
    say unconfirmed "$(printf 'the container runs, and nats-server did not log that it is ready within %ss' "$TIMEOUT" | b64)"
    return 2
  fi
  say failure "$( { printf 'not ready within %ss\n' "$TIMEOUT"; [ -n "$id" ] && docker_within "$STEP_TIMEOUT" logs --tail 30 "$id" 2>&1; } | b64)"
  return 1
}

# Stops container $1 through nats-server's lame duck mode before it is recreated: SIGUSR2 makes
# the server refuse new clients, hand its JetStream leaders to other nodes, tell its clients
# (INFO "ldm"), and after its grace period close them one by one and exit; with no client it
# exits at once. It is given LDM_WAIT seconds to leave by itself (on a cluster the whole window,
# so its clients move to the other nodes; alone, the grace period, as its clients have nowhere
# to go), then it is ended (end_lame_duck).
lame_duck_stop() {
  if [ -z "$1" ] || ! running "$1"; then return 0; fi
  say step "stopping the server through lame duck"
  ldm_started=$(date +%s)
  # Its own exit at the end of lame duck must not be restarted, on the old configuration, by
  # the `unless-stopped` policy: the recreate that follows gives the new container its own.
  docker_within "$STEP_TIMEOUT" update --restart=no "$1" >/dev/null 2>&1
  # A server that cannot be signalled is not in lame duck: it is ended at once.
  grace_left=0
  docker_within "$STEP_TIMEOUT" kill -s USR2 "$1" >/dev/null 2>&1 && grace_left=$LDM_WAIT
  end_lame_duck "$1" "$grace_left"
  say lame_duck "$(($(date +%s) - ldm_started))"
  return 0
}

# Runs $1 (reload | start | recreate) and waits for its outcome: 0 confirmed, 1 failed,
# 2 unconfirmed (the log cannot tell).
act() {
  case "$1" in
    reload)
      id=$(find_container)
      n=$(log_lines "$id")
      docker_within "$STEP_TIMEOUT" kill -s HUP "$id" >/dev/null || return 1
      if ! docker_within "$STEP_TIMEOUT" logs --tail 1 "$id" >/dev/null 2>&1; then
        say unconfirmed "$(printf 'the reload was signalled, and the log cannot be read' | b64)"
        return 2
      fi
      wait_reload "$id" "$n" ;;
    start | recreate)
      id=$(find_container)
      n=0
      [ -z "$id" ] || n=$(log_lines "$id")
      flag=""
      [ "$1" = start ] || flag=--force-recreate
      [ "$1" = start ] || lame_duck_stop "$id"
      if [ "$1" = recreate ] && [ "$PROJECT" != "$OWN_PROJECT" ]; then
        # The container is an adopted one, under the folder's name: this restart moves it to
        # natsup's own project (`down` takes its container and network).
        compose_within "$COMPOSE_TIMEOUT" down >&2 2>&1
        PROJECT=$OWN_PROJECT
      fi
      # ${flag:+"$flag"}: no argument at all when there is no flag.
      compose_within "$COMPOSE_TIMEOUT" up -d ${flag:+"$flag"} >&2
      rc=$?
      if [ $rc = 124 ]; then
        # shellcheck disable=SC2016 # the backquotes are literal: they mark the command in the message
        say failure "$(printf '`compose up -d %s` did not finish within %ss' "$flag" "$COMPOSE_TIMEOUT" | b64)"
        return 1
      fi
      [ $rc = 0 ] && wait_ready "$id" "$n" ;;
    none)
      return 0 ;;
  esac
}

say step "starting the server"
case "$FOLLOW_UP" in
  confirm) outcome=0 ;;
  undo) outcome=1 ;;
  *)
    act "$ACTION"
    outcome=$?
    if [ $outcome = 2 ]; then
      say result unconfirmed
      exit 6
    fi ;;
esac
if [ $outcome = 0 ]; then
  for f in docker-compose.yaml nats-config/nats-server.conf; do
    install_file "$f" ".natsup/applied/${f##*/}"
  done
  # Old TLS files are kept until a change that no longer needs them has been confirmed.
  for f in nats-config/nats-server-cert-*.pem nats-config/nats-server-key-*.pem nats-config/rootCA-*.pem; do
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
  # The old config ran before, so a rollback the log cannot confirm (2) counts.
  act "$back"
  if [ $? != 1 ]; then
    say result rolled-back
    exit 4
  fi
  say result rollback-failed
  exit 5
fi
# A first start that failed has nothing to go back to: stop it rather than let it crash-loop.
compose_within "$COMPOSE_TIMEOUT" down >&2 2>&1
say result stopped
exit 4
