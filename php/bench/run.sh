#!/usr/bin/env bash
# Benchmarks publishing one event from PHP (issue 3, "Benchmark"): builds rtet.so and
# rtet-relay (release), starts a redis-server on a unix socket and a real WordPress
# site (scripts/site/wp-bench-site.mjs: MariaDB, php-fpm without rtet.so, nginx,
# Debian's WordPress, on free loopback ports), then runs php/bench/send_event_bench.php
# once per method, each in a fresh PHP process (the relay is started by that script
# through php/tests/lib.php, on a free loopback port, with --publishes-per-sec 1000000;
# the wp_remote_post method loads the site's wp-load.php), and prints a markdown table,
# the machine, the load average before and after, and the command. Everything it
# started is stopped at the end, also on failure or Ctrl-C.
#   php/bench/run.sh [RTET_ITERATIONS] [HTTP_ITERATIONS]      (default 20000 2000)
# HTTP_ITERATIONS is for the two fresh-connection HTTP methods (curl, wp_remote_post).
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

TMP=$(mktemp -d)
REDIS_PID= SITE_PID= SITE_IN=
cleanup() {
  # The site helper tears its servers down when its stdin closes or on SIGTERM (both,
  # in case a process we started still holds the pipe), and exits when done.
  if [[ -n $SITE_IN ]]; then exec {SITE_IN}>&-; fi
  if [[ -n $SITE_PID ]]; then kill -TERM "$SITE_PID" 2>/dev/null || true; wait "$SITE_PID" 2>/dev/null || true; fi
  if [[ -n $REDIS_PID ]]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

source php/bench/redis.sh
start_redis "$TMP" || exit 1

# The WordPress site for the wp_remote_post method: one JSON line once it is up.
echo "==> starting a WordPress site (scripts/site/wp-bench-site.mjs)" >&2
mkfifo "$TMP/site.in" "$TMP/site.out"
node scripts/site/wp-bench-site.mjs <"$TMP/site.in" >"$TMP/site.out" &
SITE_PID=$!
exec {SITE_IN}>"$TMP/site.in" {SITE_OUT}<"$TMP/site.out"
IFS= read -r RTET_WP_SITE <&"$SITE_OUT" || { echo "the WordPress site did not start" >&2; exit 1; }
export RTET_WP_SITE
echo "    $RTET_WP_SITE" >&2

# php-redis needs igbinary loaded first; posix is for lib.php's relay helper; mysqlnd and
# mysqli for WordPress; opcache on, as in php-fpm (JIT off: Debian's default).
PHPCMD=(php -n -d zend_extension=opcache -d opcache.enable_cli=1 -d "extension=$EXT" -d extension=posix
  -d extension=curl -d extension=igbinary -d extension=redis -d extension=mysqlnd -d extension=mysqli)
load() { cut -d' ' -f1 /proc/loadavg; }
LOAD0=$(load)
rows=()
for m in rtet-up rtet-down curl wp_remote_post redis; do
  n=$N; [[ $m == curl || $m == wp_remote_post ]] && n=$NC
  echo "==> $m ($n calls)" >&2
  if ! row=$(timeout 600 "${PHPCMD[@]}" php/bench/send_event_bench.php "$m" "$n"); then
    printf '%s\n==> %s failed\n' "$row" "$m" >&2
    exit 1
  fi
  rows+=("$row")
done
LOAD1=$(load)

echo "| method | calls | p50 µs | p99 µs | mean µs | max µs | CPU µs/call | memory_get_usage gain | VmRSS gain | notes |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
echo
echo "Machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM," \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r);" \
  "$(php -n -r 'echo "PHP ", PHP_VERSION;'), $(redis-server --version | grep -o 'v=[^ ]*' | sed 's/v=/Redis /')," \
  "WordPress $(php -n -r 'echo json_decode(getenv("RTET_WP_SITE"), true)["wpVersion"];') (Debian's package), $(mariadbd --version | sed -n 's/.*Ver \([0-9.]*\).*/MariaDB \1/p')"
echo "Load average (1 min): $LOAD0 at start, $LOAD1 at end"
echo "Command: CARGO_TARGET_DIR=$CARGO_TARGET_DIR php/bench/run.sh $N $NC"
echo "  (each method: ${PHPCMD[*]} php/bench/send_event_bench.php METHOD CALLS;"
echo "   wp_remote_post with RTET_WP_SITE set to the JSON line of scripts/site/wp-bench-site.mjs)"
