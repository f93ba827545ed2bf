#!/usr/bin/env bash
# Builds dist/, what a site owner installs:
#   dist/real-time-event-trigger.zip   the plugin (wp-admin → Plugins → Add New → Upload Plugin)
#   dist/rtet.so, dist/rtet.ini        the PHP extension and its conf.d file
#   dist/rtet-relay                    the relay, with dist/relay.toml (example) and dist/rtet-relay.service (systemd)
#   dist/INSTALL.md                    step-by-step installation on a real server
#   dist/SHA256SUMS
# Usage: scripts/dist.sh [--no-build]   (uses $CARGO_TARGET_DIR or target/)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}

if [ "${1:-}" != "--no-build" ]; then
  echo "==> cargo build --release -p rtet-relay -p rtet"
  cargo build --release -p rtet-relay -p rtet
fi

rm -rf dist
mkdir -p dist
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

echo "==> dist/real-time-event-trigger.zip"
cp -r plugin/real-time-event-trigger "$stage/"
find "$stage" -name '.*' -prune -exec rm -rf {} + 2>/dev/null || true
(cd "$stage" && zip -qr -X "$OLDPWD/dist/real-time-event-trigger.zip" real-time-event-trigger)

echo "==> dist/rtet.so, dist/rtet.ini"
if [ -f "$target/release/librtet.so" ]; then
  install -m 0755 "$target/release/librtet.so" dist/rtet.so
  strip --strip-debug dist/rtet.so 2>/dev/null || true
  install -m 0644 packaging/rtet.ini dist/rtet.ini
else
  echo "   (not built: $target/release/librtet.so missing)" >&2
fi

echo "==> dist/rtet-relay, dist/relay.toml, dist/rtet-relay.service"
install -m 0755 "$target/release/rtet-relay" dist/rtet-relay
strip --strip-debug dist/rtet-relay 2>/dev/null || true
install -m 0644 packaging/relay.toml packaging/rtet-relay.service dist/

install -m 0644 docs/install-wordpress.md dist/INSTALL.md

(cd dist && sha256sum -- * > SHA256SUMS)
ls -l dist
