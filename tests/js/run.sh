#!/usr/bin/env bash
# Tests of the browser client (plugin/real-time-event-trigger/assets/js/rtet-client.js)
# with node --test: the client runs in jsdom with the npm `ws` package as its
# WebSocket, against a real rtet-relay and a real WordPress site
# (scripts/site/stack.mjs) on free loopback ports.
#
#   tests/js/run.sh
#
# Needs target/release/rtet-relay (or $RTET_TARGET_DIR). Prints node's TAP output.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -d node_modules/jsdom ] || [ ! -d node_modules/ws ]; then
  echo "# installing jsdom and ws (npm ci)"
  npm ci --no-audit --no-fund >&2
fi
target=${RTET_TARGET_DIR:-${CARGO_TARGET_DIR:-../../target}}
if [ ! -x "$target/release/rtet-relay" ]; then
  echo "rtet-relay is not built at $target/release/rtet-relay (run scripts/setup.sh)" >&2
  exit 1
fi
export RTET_TARGET_DIR=$(cd "$target" && pwd)
exec node --test --test-force-exit --test-reporter=tap --test-concurrency=1 ./*.test.mjs
