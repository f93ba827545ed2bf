#!/usr/bin/env bash
# Writes src/hot_code.ld: the functions of rtet.so that php-fpm workers run, found with
# valgrind's callgrind (php/bench/hot_code.php has the workload), which build.rs has the
# linker lay out together (see build.rs, "Hot code"). Run it again when the send path
# changes (new functions on it are otherwise laid out with the rest of the code, which costs
# memory per worker, not correctness): php/bench/hot_code.sh, then rebuild and commit.
# CARGO_TARGET_DIR picks the build (default ./target).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# The same build as php/tests/run.sh and php/bench/fpm_memory.sh (features unified with the relay's).
cargo build --release -p rtet -p rtet-relay >&2
export RTET_EXT=$CARGO_TARGET_DIR/release/librtet.so
export RTET_RELAY_BIN=$CARGO_TARGET_DIR/release/rtet-relay
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# php-fpm under callgrind; it follows the workers through fork. Uncompressed names: a forked
# child would otherwise refer to names only its parent's output defines.
cat >"$TMP/php-fpm" <<SH
#!/bin/sh
exec valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \
  --callgrind-out-file=$TMP/cg.%p ${RTET_PHP_FPM:-/usr/sbin/php-fpm8.2} "\$@"
SH
chmod +x "$TMP/php-fpm"
RTET_PHP_FPM=$TMP/php-fpm php -n -d extension=posix -d extension="$RTET_EXT" php/bench/hot_code.php src/hot_code.ld "$TMP"
