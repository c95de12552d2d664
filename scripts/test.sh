#!/usr/bin/env bash
# The test command: installs what the tests need (scripts/setup-test-deps.sh), then runs the
# whole suite with cargo-nextest, against a real nats-server, a real sshd and the real Docker
# engine. Extra arguments go to nextest, e.g. `./scripts/test.sh --test e2e_ssh`.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup-test-deps.sh
set -a
# shellcheck disable=SC1091 # setup-test-deps.sh writes it just above: not in the repository
. target/test-deps/env
set +a

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

echo "test.sh: cargo nextest run $*" >&2
# nextest's summary is the last thing printed: CI reads it to count what ran.
exec cargo nextest run --no-fail-fast "$@"
