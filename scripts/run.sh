#!/usr/bin/env bash
# The "run the product" command: sets everything up (scripts/setup.sh), then
# brings up on loopback, on free ports, in a fresh temporary directory:
# MariaDB, php-fpm with rtet.so behind nginx, WordPress (Debian's package, its
# own wp-config.php) with the Real-time Event Trigger plugin active and
# configured, and rtet-relay. Prints the site URL and an admin login, stays in
# the foreground, and tears everything down on Ctrl-C. Safe to run twice (each
# run gets its own directory and ports).
#
#   scripts/run.sh                  # with the extension
#   scripts/run.sh --no-extension   # the plugin on its HTTP fallback
#   scripts/run.sh --skip-setup     # do not run scripts/setup.sh first
#   scripts/run.sh --nodes 2        # two relay nodes on redis-server behind an nginx balancer:
#                                   # WordPress publishes through node A, browsers come through the balancer
#   options after these go to scripts/site/up.mjs (--workers N, --nodes N, --keep)
set -euo pipefail
cd "$(dirname "$0")/.."

setup=1
args=()
for a in "$@"; do
  case "$a" in
    --skip-setup) setup=0 ;;
    *) args+=("$a") ;;
  esac
done

if [ "$setup" -eq 1 ]; then
  scripts/setup.sh
fi
command -v node >/dev/null || { echo "node (>= 20) is needed to run the local site" >&2; exit 1; }
exec node scripts/site/up.mjs "${args[@]}"
