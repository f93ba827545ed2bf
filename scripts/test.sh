#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs every test rtet has:
# formatting, clippy, the Rust tests (protocol, publisher core, relay, interop
# with a third-party client), the PHP extension's tests against a real relay,
# the plugin's own PHP (PHPUnit in a real WordPress) and JS (node --test
# against a real relay and WordPress), and the end-to-end tests on a real
# WordPress site in headless Chromium.
# Ends with one line "all: N passed, N failed" and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
passed=0 failed=0 broken=()

# Runs one suite, keeping its output for the summary. $1 names it.
suite() {
  local name=$1; shift
  say "$name: $*"
  "$@" 2>&1 | tee "$logs/$name.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || broken+=("$name (exit $rc)")
  return 0
}

# Adds up a suite's closing lines: cargo's "test result: ... N passed; M failed",
# node's TAP "# pass N" / "# fail N", and the plain "N passed, M failed".
# With "plain" as $2 only the plain line counts (the PHP runner reports its
# Rust part as one PASS line and echoes cargo's output, which must not count twice).
count() {
  local p f
  read -r p f < <(awk -v plain="${2:-}" '
    plain == "" && /test result:/ { for (i=1;i<=NF;i++) { if ($(i)~/^passed;?$/) p+=$(i-1); if ($(i)~/^failed;?$/) f+=$(i-1) } }
    /^([A-Za-z-]+: )?[0-9]+ passed, [0-9]+ failed/ { sub(/^[A-Za-z-]+: /, ""); p+=$1; f+=$3 }
    /^# pass [0-9]+$/ { p+=$3 }
    /^# fail [0-9]+$/ { f+=$3 }
    END { print p+0, f+0 }' "$logs/$1.log")
  passed=$((passed + p)); failed=$((failed + f))
}

say "Setting up (scripts/setup.sh)"
scripts/setup.sh || { echo "setup failed" >&2; exit 1; }

suite fmt cargo fmt --all -- --check
suite clippy cargo clippy --workspace --all-targets -- -D warnings
suite cargo-test cargo test --workspace --release --no-fail-fast
count cargo-test
# The relay's conformance tests again, every relay on a Redis engine of its own
# (a real redis-server per relay, tests/common). Only the test files that start
# relays run (the rest do not depend on the engine). Skipped, as they test the
# memory engine's own budgets, which the Redis engine leaves to Redis's maxmemory:
# budgets.rs (history bytes, dedupe entries) and the --max-channels refusals.
suite cargo-test-redis env RTET_TEST_ENGINE=redis cargo test -p rtet-relay --release --no-fail-fast \
  --test flow --test http --test interop --test presence --test proxy --test publisher \
  --test replay --test subscriber --test tls --test delivery -- \
  --skip send_event_beyond_the_channel_limit_is_429_rate_limited \
  --skip publishing_beyond_the_channel_limit_is_nacked_rate_limited_to_retry_later
count cargo-test-redis

if [ -x php/tests/run.sh ]; then
  suite php php/tests/run.sh
  count php plain
fi
suite plugin-php node tests/plugin/run.mjs
count plugin-php plain
suite plugin-js tests/js/run.sh
count plugin-js
if [ -x tests/e2e/run.sh ]; then
  suite e2e tests/e2e/run.sh
  count e2e
fi

echo
if [ ${#broken[@]} -gt 0 ]; then
  echo "Failed suites: ${broken[*]}"
  [ "$failed" -gt 0 ] || failed=${#broken[@]}
fi
echo "all: $passed passed, $failed failed"
[ ${#broken[@]} -eq 0 ] && [ "$failed" -eq 0 ]
