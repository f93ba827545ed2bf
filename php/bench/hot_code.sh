#!/usr/bin/env bash
# Writes src/hot_code.ld: the functions of rtet.so that php-fpm workers run, found with
# valgrind's callgrind (php/bench/hot_code.php has the workload), which build.rs has the
# linker lay out together (see build.rs, "Hot code"). Run it again when the send path or the
# dependencies change (a function missing from the list is laid out with the rest of the
# code, which costs memory per worker, not correctness), then rebuild and commit:
#   php/bench/hot_code.sh
# Each build this repository makes of rtet.so is profiled: cargo gives the dependencies other
# features, so other code and other hashes in the names, in each. The last one built is the
# one php/tests/run.sh, the benchmarks and scripts/dist.sh use.
# CARGO_TARGET_DIR picks the build (default ./target).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export RTET_EXT=$CARGO_TARGET_DIR/release/librtet.so
export RTET_RELAY_BIN=$CARGO_TARGET_DIR/release/rtet-relay
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# php-fpm under callgrind; it follows the workers through fork. Uncompressed names: a forked
# child would otherwise refer to names only its parent's output defines.
cat >"$TMP/php-fpm" <<SH
#!/bin/sh
exec valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \
  --callgrind-out-file=\$RTET_CALLGRIND_DIR/cg.%p ${RTET_PHP_FPM:-/usr/sbin/php-fpm8.2} "\$@"
SH
chmod +x "$TMP/php-fpm"
builds=(
  "--workspace --bins --lib"   # scripts/setup.sh
  "-p rtet"                    # the extension alone
  "-p rtet -p rtet-relay"      # php/tests/run.sh, php/bench, scripts/dist.sh
)
lists=()
for i in "${!builds[@]}"; do
  echo "==> cargo build --release ${builds[$i]}" >&2
  # shellcheck disable=SC2086 # the build's arguments are words
  cargo build --release ${builds[$i]} >&2
  mkdir "$TMP/cg$i"
  RTET_CALLGRIND_DIR=$TMP/cg$i RTET_PHP_FPM=$TMP/php-fpm \
    php -n -d extension=posix -d extension="$RTET_EXT" php/bench/hot_code.php profile "$TMP/cg$i" >"$TMP/names$i"
  lists+=("$TMP/names$i")
done
php -n php/bench/hot_code.php write src/hot_code.ld "${lists[@]}"
