#!/usr/bin/env bash
# What one rtet publish costs Redis: the relay's own PUBLISH_SCRIPT (read out
# of crates/rtet-relay/src/engine/redis.rs, so it is the script the relay
# loads), run by redis-benchmark as EVALSHA on a fresh redis-server (AOF
# everysec, as docs/scaling.md advises) while NODES pub/sub connections
# listen on the channel, as relay nodes with subscribers would. Prints
# publishes/s, Redis CPU per 1,000 publishes (/proc/PID/stat), the Redis
# commands one publish runs (INFO commandstats) and the memory it leaves.
#
#   bench/redis-script/run.sh                     # 200,000 publishes, 2 nodes listening
#   PUBLISHES=1000000 NODES=4 bench/redis-script/run.sh
#
# Every publish has a random id (redis-benchmark's __rand_int__ below 10^9,
# its largest range): of 200,000, about 20 repeat one and are answered from
# the dedupe record, too few to show in the figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=${RTET_ENGINE_SRC:-crates/rtet-relay/src/engine/redis.rs}
publishes=${PUBLISHES:-200000}
nodes=${NODES:-2}
script=$(awk '/PUBLISH_SCRIPT: &str = r#"/ {f = 1; next} f && /^"#;/ {exit} f' "$src")
[ -n "$script" ] || { echo "no PUBLISH_SCRIPT in $src" >&2; exit 1; }

dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
for attempt in 1 2 3 4 5; do
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save '' --appendonly yes --appendfsync everysec \
    --daemonize no >"$dir/redis.log" 2>&1 &
  redis=$!
  until grep -q "Ready to accept connections" "$dir/redis.log" || ! kill -0 "$redis" 2>/dev/null; do sleep 0.05; done
  kill -0 "$redis" 2>/dev/null && break
  grep -q "already in use" "$dir/redis.log" || { cat "$dir/redis.log" >&2; exit 1; }
done
pids+=("$redis")
cli() { redis-cli -p "$port" "$@"; }
sha=$(cli SCRIPT LOAD "$script")
for ((i = 0; i < nodes; i++)); do
  cli SUBSCRIBE 'rtet:{public}:live' >/dev/null 2>&1 &
  pids+=("$!")
done
until [ "$(cli PUBSUB NUMSUB 'rtet:{public}:live' | tail -1)" = "$nodes" ]; do sleep 0.05; done
cli CONFIG RESETSTAT >/dev/null
base_memory=$(cli INFO memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}')

ticks() { awk '{print $14 + $15}' "/proc/$redis/stat"; }
before=$(ticks)
start=$(date +%s.%N)
# The arguments the relay passes (see PUBLISH_SCRIPT's doc): live channel, a
# fresh epoch, history size, key lifetime, dedupe window (ms), now (ms), the
# encoded event before and after its seq.
redis-benchmark -p "$port" -n "$publishes" -c 50 -P 16 -r 1000000000 -q \
  EVALSHA "$sha" 3 'rtet:{public}:meta' 'rtet:{public}:stream' 'rtet:{public}:dedupe:__rand_int__' \
  'rtet:{public}:live' 'k3j9AbCdEfGh' 1000 600000 600000 1764262800000 \
  '{"type":"event","channel":"public","seq":' \
  ',"id":"01JD5Q0000000000000000000","event":"post_published","data":{"id":7,"title":"Hello"},"ts":1764262800000}' >"$dir/bench.out"
end=$(date +%s.%N)
after=$(ticks)
hz=$(getconf CLK_TCK)
stats=$(cli INFO commandstats | tr -d '\r')
inner=$(echo "$stats" | awk -F'[:=,]' '/^cmdstat_/ && $1 !~ /evalsha|config|info|subscribe|pubsub|script/ {n += $3} END {print n}')
echo "redis-server $(redis-server --version | grep -o 'v=[0-9.]*'), $nodes nodes listening, $publishes publishes of one channel"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v p="$publishes" -v s="$start" -v e="$end" -v t=$((after - before)) -v hz="$hz" -v inner="$inner" 'BEGIN {
  printf "publishes/s: %d\n", p / (e - s)
  printf "Redis CPU: %.1f ms per 1,000 publishes (%.2f s for %d)\n", t * 1000 / hz / (p / 1000), t / hz, p
  printf "Redis commands per publish inside the script: %.2f\n", inner / p
}'
# What stays in memory per publish: one dedupe record each (the history is
# trimmed to 1,000 events), kept for the dedupe window.
used_memory() { cli INFO memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}'; }
echo "Redis memory per publish: $(( ($(used_memory) - base_memory) / publishes )) bytes"
echo "$stats" | grep -E '^cmdstat_(evalsha|get|hsetnx|hget|hincrby|xadd|pexpire|set|publish|del):' | sed 's/^/  /'
