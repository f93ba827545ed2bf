#!/usr/bin/env bash
# User-space instructions the relay spends per delivery to a caught-up
# subscriber: the relay runs under valgrind's callgrind (which counts every
# instruction it executes, so two builds compare without the noise of CPU
# time on a shared machine; the kernel's share, mostly the socket writes, is
# not counted) while rtet-bench publishes at a slow, fixed rate, so every
# event reaches every subscriber on its own (no batching).
#
#   bench/relay-instructions/run.sh [RELAY_BIN ...]   # default: target/release/rtet-relay
#   SUBSCRIBERS=200 RATE=20 SECS=12 bench/relay-instructions/run.sh OLD_BIN NEW_BIN
#
# Prints, per binary, the relay's instructions in all (start, connections,
# deliveries, stop) and those of the subscriber connections' tasks, each
# divided by the deliveries. Loopback only; needs valgrind and a release
# build of rtet-bench.
set -euo pipefail
cd "$(dirname "$0")/../.."
subscribers=${SUBSCRIBERS:-200}
rate=${RATE:-20}
secs=${SECS:-12}
bench=${RTET_BENCH:-target/release/rtet-bench}
[ $# -gt 0 ] || set -- target/release/rtet-relay
key=bench-key-0123456789abcdef0123456789
dir=$(mktemp -d)
vg=
cleanup() { [ -n "$vg" ] && kill "$vg" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

for bin in "$@"; do
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" --listen "127.0.0.1:$port" \
    --api-key "$key" --anonymous-channel public --connections-per-ip 1000000 \
    --handshakes-per-ip 256 >"$dir/relay.log" 2>&1 &
  vg=$!
  until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
    kill -0 "$vg" 2>/dev/null || { cat "$dir/relay.log" >&2; exit 1; }
    sleep 0.2
  done
  run=$("$bench" latency --addr "127.0.0.1:$port" --api-key "$key" --channel public \
    --rate "$rate" --rate-subscribers "$subscribers" --rate-secs "$secs" --probes 0)
  kill -INT "$vg"
  wait "$vg" || true
  vg=
  summary=$(grep -m1 'delivered' <<<"$run" | sed 's/^ *//')
  delivered=$(sed -E 's/.*delivered ([0-9,]+) of.*/\1/' <<<"$summary" | tr -d ,)
  [ "${delivered:-0}" -gt 0 ] || { echo "$bin: nothing delivered: $run" >&2; exit 1; }
  # (callgrind_annotate warns about Rust's symbol names on stderr; the figures are unaffected.)
  total=$(callgrind_annotate "$dir/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  # The subscriber connections' tasks: the session future (subscriber.rs), inclusive.
  sessions=$(callgrind_annotate --inclusive=yes "$dir/cg.out" 2>/dev/null \
    | awk '/subscriber.rs:<futures_util::future::either::Either/ && !n++ {gsub(",", "", $1); print $1}')
  echo "$bin: $summary"
  echo "  relay, all:            $total instructions, $((total / delivered)) per delivery"
  echo "  subscriber tasks:      ${sessions:-0} instructions, $((${sessions:-0} / delivered)) per delivery"
  rm -f "$dir/cg.out"
done
