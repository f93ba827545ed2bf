#!/usr/bin/env bash
# Benchmarks publishing one event from PHP (issue 3, "Benchmark"): builds rtet.so and
# rtet-relay (release), starts a redis-server on a unix socket, then runs
# php/bench/send_event_bench.php once per method, each in a fresh PHP process
# (the relay is started by that script through php/tests/lib.php, on a free
# loopback port, with --publishes-per-sec 1000000), and prints a markdown table,
# the machine, the load average before and after, and the command.
#   php/bench/run.sh [RTET_ITERATIONS] [CURL_ITERATIONS]      (default 20000 2000)
# CARGO_TARGET_DIR picks the build (default ./target); RTET_NO_BUILD=1 skips cargo.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${1:-20000}
NC=${2:-2000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ "${RTET_NO_BUILD:-0}" != 1 ]]; then
  echo "==> cargo build --release -p rtet -p rtet-relay ($CARGO_TARGET_DIR)" >&2
  cargo build --release -p rtet -p rtet-relay >&2
fi
EXT=$CARGO_TARGET_DIR/release/librtet.so
export RTET_RELAY_BIN=$CARGO_TARGET_DIR/release/rtet-relay
[[ -f $EXT && -x $RTET_RELAY_BIN ]] || { echo "missing $EXT or $RTET_RELAY_BIN" >&2; exit 1; }

# redis-server cannot listen on TCP port 0 (a free port), so it listens on a unix socket only.
TMP=$(mktemp -d)
export REDIS_SOCK=$TMP/redis.sock
redis-server --port 0 --unixsocket "$REDIS_SOCK" --save '' --appendonly no --daemonize no \
  >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
trap 'kill $REDIS_PID 2>/dev/null || true; wait $REDIS_PID 2>/dev/null || true; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do [[ -S $REDIS_SOCK ]] && break; sleep 0.1; done
[[ -S $REDIS_SOCK ]] || { cat "$TMP/redis.log" >&2; exit 1; }

# php-redis needs igbinary loaded first; posix is for lib.php's relay helper.
PHPCMD=(php -n -d "extension=$EXT" -d extension=posix -d extension=curl -d extension=igbinary -d extension=redis)
load() { cut -d' ' -f1 /proc/loadavg; }
LOAD0=$(load)
rows=()
for m in rtet-up rtet-down curl redis; do
  n=$N; [[ $m == curl ]] && n=$NC
  echo "==> $m ($n calls)" >&2
  rows+=("$(timeout 600 "${PHPCMD[@]}" php/bench/send_event_bench.php "$m" "$n")")
done
LOAD1=$(load)

echo "| method | calls | p50 µs | p99 µs | mean µs | max µs | memory_get_usage gain | VmRSS gain | notes |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
echo
echo "Machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM," \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r);" \
  "$(php -n -r 'echo "PHP ", PHP_VERSION;'), $(redis-server --version | grep -o 'v=[^ ]*' | sed 's/v=/Redis /')"
echo "Load average (1 min): $LOAD0 at start, $LOAD1 at end"
echo "Command: CARGO_TARGET_DIR=$CARGO_TARGET_DIR php/bench/run.sh $N $NC"
echo "  (each method: ${PHPCMD[*]} php/bench/send_event_bench.php METHOD CALLS)"
