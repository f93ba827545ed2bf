#!/usr/bin/env bash
# Runs the PHP extension's tests: builds rtet.so and rtet-relay (release),
# then runs every php/tests/*_test.php in its own PHP process (each starts
# its own relays on free ports). Prints one PASS/FAIL line per test and
# closes with "N passed, N failed". The Rust tests of the publisher core are
# not run here: scripts/test.sh runs them once, with the whole workspace.
#
# Each test file is judged by its own output and its own exit status: a file
# that exits non-zero without a FAIL line of its own (a crash, a timeout), or
# that prints no PASS line at all, counts as one more failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
echo "==> building rtet.so and rtet-relay (release) in $CARGO_TARGET_DIR" >&2
cargo build --release -p rtet -p rtet-relay >&2 || { echo "0 passed, 1 failed"; exit 1; }
export RTET_EXT=$CARGO_TARGET_DIR/release/librtet.so
export RTET_RELAY_BIN=$CARGO_TARGET_DIR/release/rtet-relay
PHP=${PHP:-php}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
filter=${1:-}
passed=0
failed=0
for t in php/tests/*_test.php; do
  [[ -n "$filter" && "$t" != *"$filter"* ]] && continue
  echo "==> $t" >&2
  log=$OUT/$(basename "$t").log
  timeout 300 $PHP -n -d extension="$RTET_EXT" -d extension=posix -d zend.assertions=1 "$t" >"$log" 2>&1
  rc=$?
  cat "$log"
  p=$(grep -c "^PASS" "$log")
  f=$(grep -c "^FAIL" "$log")
  if [[ $rc -ne 0 && $f -eq 0 ]]; then
    why="exited $rc without a FAIL line"
    [[ $rc -eq 124 ]] && why="timed out after 300 s"
    echo "FAIL $t: $why"
    f=1
  elif [[ $rc -eq 0 && $f -gt 0 ]]; then
    echo "FAIL $t: printed FAIL lines but exited 0"
    f=$((f + 1))
  elif [[ $p -eq 0 && $f -eq 0 ]]; then
    echo "FAIL $t: ran no test"
    f=1
  fi
  passed=$((passed + p))
  failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
