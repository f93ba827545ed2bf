#!/usr/bin/env bash
# Runs the PHP extension's tests: builds rtet.so and rtet-relay (release),
# then runs every php/tests/*_test.php in its own PHP process (each starts
# its own relays on free ports) and the Rust tests of the publisher core.
# Prints one PASS/FAIL line per test and closes with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
echo "==> building rtet.so and rtet-relay (release) in $CARGO_TARGET_DIR" >&2
cargo build --release -p rtet -p rtet-relay >&2 || { echo "0 passed, 1 failed"; exit 1; }
export RTET_EXT=$CARGO_TARGET_DIR/release/librtet.so
export RTET_RELAY_BIN=$CARGO_TARGET_DIR/release/rtet-relay
PHP=${PHP:-php}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
filter=${1:-}
for t in php/tests/*_test.php; do
  [[ -n "$filter" && "$t" != *"$filter"* ]] && continue
  echo "==> $t" >&2
  timeout 300 $PHP -n -d extension="$RTET_EXT" -d extension=posix -d zend.assertions=1 "$t" 2>&1 | tee -a "$OUT"
  rc=${PIPESTATUS[0]}
  if [[ $rc -ne 0 ]] && ! grep -q "^FAIL" <(tail -n 50 "$OUT"); then
    echo "FAIL $t: exited $rc without a FAIL line" | tee -a "$OUT"
  fi
done
if [[ -z "$filter" || "$filter" == rust ]]; then
  echo "==> cargo test -p rtet-publisher" >&2
  rust_out=$(cargo test -p rtet-publisher 2>&1); rust_rc=$?
  echo "$rust_out" >&2
  if [[ $rust_rc -eq 0 ]]; then
    echo "PASS rust: cargo test -p rtet-publisher" | tee -a "$OUT"
  else
    echo "FAIL rust: cargo test -p rtet-publisher" | tee -a "$OUT"
  fi
fi
passed=$(grep -c "^PASS" "$OUT")
failed=$(grep -c "^FAIL" "$OUT")
echo "$passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
