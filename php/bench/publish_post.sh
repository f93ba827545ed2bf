#!/usr/bin/env bash
# What the plugin adds to publishing a post (BENCHMARKS.md, "Publishing a post"): the
# interleaved A/B of php/bench/publish_post.mjs on a real local site. Uses the release
# builds of rtet.so and rtet-relay (cargo build --release -p rtet -p rtet-relay first
# unless RTET_NO_BUILD=1); arguments go to the .mjs (e.g. --rounds 20 --cli 10 --rest 10).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
if [[ "${RTET_NO_BUILD:-0}" != 1 ]]; then
  echo "==> cargo build --release -p rtet -p rtet-relay ($CARGO_TARGET_DIR)" >&2
  cargo build --release -p rtet -p rtet-relay >&2
fi
exec node php/bench/publish_post.mjs "$@"
