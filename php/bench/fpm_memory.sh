#!/usr/bin/env bash
# Memory a php-fpm worker gains from rtet.so against no extension, the HTTP fallback's
# blocking POST per event (PHP's curl) and phpredis PUBLISH (issue 11, "Memory per PHP
# worker"). Builds rtet.so and rtet-relay (release), starts a redis-server on a unix
# socket, runs php/bench/fpm_memory.php (each method: php-fpm 8.2, 2 static workers, on a
# unix socket; relays on free loopback ports) and prints a markdown table, the machine,
# the load average and the command. Everything it started is stopped at the end.
#   php/bench/fpm_memory.sh [REQUESTS] [METHOD...]     (default 400; all methods)
# CARGO_TARGET_DIR picks the build (default ./target); RTET_NO_BUILD=1 skips cargo;
# RTET_EXT_BASELINE=PATH/librtet.so adds rows of another build (before/after in one run);
# FPM_MEMORY_SMAPS=DIR saves what each worker maps (see fpm_memory.php).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${1:-400}
shift || true
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ "${RTET_NO_BUILD:-0}" != 1 ]]; then
  echo "==> cargo build --release -p rtet -p rtet-relay ($CARGO_TARGET_DIR)" >&2
  cargo build --release -p rtet -p rtet-relay >&2
fi
export RTET_EXT=$CARGO_TARGET_DIR/release/librtet.so
export RTET_RELAY_BIN=$CARGO_TARGET_DIR/release/rtet-relay
[[ -f $RTET_EXT && -x $RTET_RELAY_BIN ]] || { echo "missing $RTET_EXT or $RTET_RELAY_BIN" >&2; exit 1; }

TMP=$(mktemp -d)
REDIS_PID=
cleanup() {
  if [[ -n $REDIS_PID ]]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Each build is loaded from a copy that is not in the page cache, as after a reboot: how much
# of a file a worker maps per page fault depends on the size of the page-cache folios that
# hold it, which depends on how the file got there (the linker's writes, cp, readahead).
cold_copy() {
  cp "$1" "$TMP/$2"
  sync "$TMP/$2"
  dd if="$TMP/$2" iflag=nocache count=0 status=none
  echo "$TMP/$2"
}
COMMAND="${RTET_EXT_BASELINE:+RTET_EXT_BASELINE=$RTET_EXT_BASELINE }CARGO_TARGET_DIR=$CARGO_TARGET_DIR php/bench/fpm_memory.sh $N $*"
RTET_EXT=$(cold_copy "$RTET_EXT" rtet.so)
if [[ -n "${RTET_EXT_BASELINE:-}" ]]; then
  RTET_EXT_BASELINE=$(cold_copy "$RTET_EXT_BASELINE" rtet-baseline.so)
fi

source php/bench/redis.sh
start_redis "$TMP" || exit 1

load() { cut -d' ' -f1 /proc/loadavg; }
LOAD0=$(load)
php -n -d extension=posix php/bench/fpm_memory.php "$N" "$@"
LOAD1=$(load)
echo
echo "Machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM," \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r);" \
  "$(/usr/sbin/php-fpm8.2 -n -v | head -1 | cut -d' ' -f1-3), $(redis-server --version | grep -o 'v=[^ ]*' | sed 's/v=/Redis /')"
echo "Load average (1 min): $LOAD0 at start, $LOAD1 at end"
echo "Command: $COMMAND"
