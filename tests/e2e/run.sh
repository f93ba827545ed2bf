#!/usr/bin/env bash
# End-to-end tests: real WordPress (Debian's package), MariaDB, php-fpm, nginx,
# rtet-relay and headless Chromium (Debian's, through playwright-core), all
# started by the tests on free loopback ports and torn down after.
#
#   tests/e2e/run.sh            # every test file
#   tests/e2e/run.sh fallback   # files whose name contains "fallback"
#
# Needs the relay built (target/release/rtet-relay, or $RTET_TARGET_DIR);
# the extension-dependent tests run when target/release/librtet.so exists.
# Prints node's TAP output; exits non-zero when a test fails.
set -euo pipefail
cd "$(dirname "$0")"

# Preflight: what every browser test needs, checked once with a message that
# says what is missing, instead of each test timing out.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "Node.js 20 or newer is needed (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
wp_source=${RTET_WORDPRESS:-/usr/share/wordpress}
if ! ls "$wp_source"/wp-content/themes/*/style.css >/dev/null 2>&1; then
  echo "no WordPress theme under $wp_source/wp-content/themes: the site would render an empty page and load no client script." >&2
  echo "Debian's wordpress package only recommends a theme; run scripts/setup.sh (it installs wordpress-theme-twentytwentythree)." >&2
  exit 1
fi

if [ ! -d node_modules/playwright-core ]; then
  echo "# installing playwright-core (npm ci; no browser is downloaded)"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >&2
fi

target=${RTET_TARGET_DIR:-${CARGO_TARGET_DIR:-../../target}}
if [ ! -x "$target/release/rtet-relay" ]; then
  echo "rtet-relay is not built at $target/release/rtet-relay (run scripts/setup.sh)" >&2
  exit 1
fi
export RTET_TARGET_DIR=$(cd "$target" && pwd)
if [ -f "$RTET_TARGET_DIR/release/librtet.so" ]; then
  echo "# extension: $RTET_TARGET_DIR/release/librtet.so (extension tests run)"
else
  echo "# extension: not built (extension tests are skipped)"
fi

files=()
for f in *.test.mjs; do
  if [ $# -eq 0 ] || [[ "$f" == *"$1"* ]]; then files+=("$f"); fi
done
exec node --test --test-force-exit --test-reporter=tap --test-concurrency=1 "${files[@]}"
