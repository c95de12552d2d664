#!/usr/bin/env bash
# The benchmarks the README's "Performance" section quotes, each side by side with the way it
# replaces, in one run (these machines are shared and noisy: read the ratios).
#
#   ./scripts/bench.sh            render, up, day-2, scale, cluster and upgrade benchmarks
#   ./scripts/bench.sh --scale    only the scale benchmark (hundreds of connected clients;
#                                 long: NATSUP_BENCH_SCALE_SIZES="50,200" runs fewer sizes)
#   ./scripts/bench.sh --cluster  only the cluster benchmark (3 nodes on 127.0.0.21-23 against
#                                 one server: bootstrap beside its floor, one node's bootstrap +
#                                 three native nats-servers' formation; a rolling renew-cert
#                                 with 200 clients; a client's node killed)
#   ./scripts/bench.sh --upgrade  only the upgrade benchmark (one server: natsup's lame-duck
#                                 recreate against the tutorial's `docker compose up -d`, 50
#                                 clients; 3 nodes: natsup's rolling upgrade against a roll by
#                                 hand, 200 clients and an R3 publisher)
#   ./scripts/bench.sh --delay    also `up` with 50 ms added each way: with netem when the
#                                 kernel has it (`tc qdisc add dev lo root netem delay 50ms`,
#                                 as root, removed after), else on SSH through
#                                 benches/harness/delay_proxy.py
#   NATSUP_BASELINE_BIN=/path/to/other/natsup ./scripts/bench.sh --baseline
#                                 only the one-server `up` cases (fresh bootstrap, no-op, a
#                                 change) and the no-op alone, this build against that binary,
#                                 interleaved in one run, on this machine's shell and on a plain
#                                 one (to target/bench/baseline.md)
#
# Results go to stdout and target/bench/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."

netem=false
scale_only=false
cluster_only=false
upgrade_only=false
baseline_only=false
case "${1:-}" in
  --delay) netem=true ;;
  --scale) scale_only=true ;;
  --cluster) cluster_only=true ;;
  --upgrade) upgrade_only=true ;;
  --baseline) baseline_only=true ;;
  "") ;;
  *)
    echo "usage: $0 [--delay|--scale|--cluster|--upgrade|--baseline]" >&2
    exit 2
    ;;
esac
if $baseline_only; then
  if [ ! -x "${NATSUP_BASELINE_BIN:-}" ]; then
    echo "$0 --baseline: set NATSUP_BASELINE_BIN to the natsup binary to compare against" >&2
    exit 2
  fi
  NATSUP_BASELINE_BIN=$(realpath "$NATSUP_BASELINE_BIN")
  export NATSUP_BASELINE_BIN
fi

./scripts/setup-test-deps.sh >&2
set -a
# shellcheck disable=SC1091 # setup-test-deps.sh writes it just above: not in the repository
. target/test-deps/env
set +a
cargo build --release --bin natsup --benches >&2
# Where cargo put it: CARGO_TARGET_DIR moves the build out of ./target.
target_dir=$(realpath "${CARGO_TARGET_DIR:-target}")
export NATSUP_BIN=$target_dir/release/natsup
out=$PWD/target/bench
mkdir -p "$out"
report=$out/report.md

# 4. (runs last; alone with --scale) N connected clients over the four users through a
#    password rotation, a certificate renewal, a container restart, a no-op up and verify.
#    Its progress (and a failure's reason) stays on stderr: it runs for many minutes.
scale() {
  cargo bench --bench scale | tee -a "$report"
  echo >>"$report"
}

# 5. (alone with --cluster) a 3-node cluster against one server: bootstrap beside its floor
#    (one node's bootstrap + the native formation, median of 5 and worst run), a rolling
#    renew-cert with 200 connected clients, a client's node killed.
cluster() {
  cargo bench --bench cluster | tee -a "$report"
  echo >>"$report"
}

# 6. (alone with --upgrade) upgrading nats-server: one server, natsup's lame-duck recreate
#    against the tutorial's `docker compose up -d`; 3 nodes, natsup's rolling upgrade against a
#    roll by hand; clients connected and an R3 publisher throughout.
upgrade() {
  cargo bench --bench upgrade | tee -a "$report"
  echo >>"$report"
}

# 7. (alone with --baseline) this build against NATSUP_BASELINE_BIN, both driven the same way.
if $baseline_only; then
  {
    cargo bench --bench up 2>/dev/null
    echo
    NATSUP_BENCH_PLAIN_SHELL=1 cargo bench --bench up 2>/dev/null
  } | tee "$out/baseline.md"
  exit 0
fi
if $cluster_only; then
  # Appended to the report of the last full run.
  cluster
  exit 0
fi
if $upgrade_only; then
  # Appended to the report of the last full run.
  upgrade
  exit 0
fi
if $scale_only; then
  # Appended to the report of the last full run.
  scale
  exit 0
fi
: >"$report"

# 1. render: a fresh CA + certificate + 4 bcrypt hashes, against mkcert making a CA and a
#    certificate; then a repeat render with the state present.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && "$NATSUP_BIN" -q init --name bench --host 127.0.0.1 >/dev/null)
hyperfine --warmup 2 --runs 20 --export-markdown "$out/render.md" \
  --command-name 'natsup render (fresh state)' \
  --prepare "rm -rf '$work/state' '$work/natsup-out'" \
  "cd '$work' && NATSUP_STATE_DIR='$work/state' '$NATSUP_BIN' -q render" \
  --command-name 'mkcert (fresh CA + cert)' \
  --prepare "rm -rf '$work/mk'" \
  "cd '$work' && CAROOT='$work/mk' mkcert -cert-file '$work/c.pem' -key-file '$work/k.pem' localhost ::1 nats 127.0.0.1 2>/dev/null" \
  --command-name 'natsup render (repeat)' \
  --prepare "true" \
  "cd '$work' && NATSUP_STATE_DIR='$work/state' '$NATSUP_BIN' -q render" >&2
{
  echo "### render (hyperfine, 20 runs each)"
  echo
  cat "$out/render.md"
  echo
} >>"$report"
rss=$( cd "$work" && rm -rf state natsup-out && NATSUP_STATE_DIR="$work/state" \
  /usr/bin/time -f %M "$NATSUP_BIN" -q render 2>&1 >/dev/null | tail -1)
echo "Peak RSS of a fresh render: ${rss} KiB (/usr/bin/time -f %M)." >>"$report"
echo >>"$report"

# 2. up against the tutorial's steps, over a real sshd and Docker; then again with a remote
#    login shell that skips ~/.bashrc (this machine's runs `pyenv init`, ~150 ms per remote
#    command, which a fresh VPS does not pay).
cargo bench --bench up 2>/dev/null | tee -a "$report"
echo >>"$report"
NATSUP_BENCH_PLAIN_SHELL=1 cargo bench --bench up 2>/dev/null | tee -a "$report"
echo >>"$report"

if $netem; then
  if tc qdisc add dev lo root netem delay 50ms 2>/dev/null; then
    trap 'tc qdisc del dev lo root 2>/dev/null || true; rm -rf "$work"' EXIT
    echo "(netem: 50 ms on every loopback packet, SSH and NATS alike)" >>"$report"
    cargo bench --bench up 2>/dev/null | tee -a "$report"
    tc qdisc del dev lo root
  else
    echo "(no netem in this kernel: the delay is on SSH only, through delay_proxy.py)" >>"$report"
    NATSUP_BENCH_SSH_DELAY_MS=50 cargo bench --bench up 2>/dev/null | tee -a "$report"
  fi
  echo >>"$report"
fi

# 3. day-2 operations with 20 connected clients.
cargo bench --bench day2 2>/dev/null | tee -a "$report"
echo >>"$report"

scale

cluster

upgrade

cat "$report"
