# shellcheck shell=sh
# natsup retire: takes a node that was removed from `nodes` out of service, in two steps run
# at two moments of `up` (STEP):
#   lame-duck  the container is told never to restart (a reboot must not bring the node back
#              into the cluster) and its nats-server gets SIGUSR2: lame duck mode refuses new
#              clients, hands its JetStream leaders to other nodes, tells its clients to go and,
#              after its grace period, closes them one by one and exits. Does not wait.
#   stop       waits up to LDM_WAIT seconds for that server to leave by itself, then ends it
#              (SIGINT, then SIGKILL: end_lame_duck) and stops the container. Its files and JetStream data
#              stay in the folder: nothing is deleted.
# Says natsup.container=ID|none and, for `stop`, natsup.stopped=SECONDS. Exit 0 done, 1 failed.
set -u
cd "$HOME" 2>/dev/null || cd /
find_docker || exit 1
[ -n "$COMPOSE" ] || { say error "neither 'docker compose' nor 'docker-compose' is installed"; exit 1; }
if ! enter_dir "$DIR" 2>/dev/null; then
  # No folder, no container natsup made there: nothing runs to retire.
  say container none
  exit 0
fi
set_project
[ $? = 124 ] && { timed_out "$DOCKER ps" "$STEP_TIMEOUT"; exit 1; }
id=$(find_container)
[ $? = 124 ] && { timed_out "$DOCKER ps" "$STEP_TIMEOUT"; exit 1; }
say container "${id:-none}"
[ -n "$id" ] || exit 0

docker_within "$STEP_TIMEOUT" update --restart=no "$id" >/dev/null 2>&1
case "$STEP" in
  lame-duck)
    if running "$id"; then
      docker_within "$STEP_TIMEOUT" kill -s USR2 "$id" >/dev/null 2>&1 || { say error "cannot signal the container"; exit 1; }
      say lame_duck sent
    else
      say lame_duck not-running
    fi
    ;;
  stop)
    started=$(date +%s)
    end_lame_duck "$id" "$LDM_WAIT"
    # `compose stop` records the stop with Compose (and kills what is left): the container
    # stays, stopped, with its logs.
    compose_within "$COMPOSE_TIMEOUT" stop -t 1 >&2 2>&1
    if running "$id"; then
      say error "the container still runs"
      exit 1
    fi
    say stopped "$(($(date +%s) - started))"
    ;;
  *)
    say error "unknown step $STEP"
    exit 1
    ;;
esac
exit 0
