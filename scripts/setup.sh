#!/usr/bin/env bash
# Installs everything rtet needs on a fresh Debian 12 machine, and builds it.
# Safe to run twice: apt and npm skip what is already there, cargo rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# Debian packages, one list for everything: building the extension, the local
# WordPress site, the browser tests and the benchmarks.
APT_PACKAGES=(
  # building the PHP extension (ext-php-rs needs php-config and libclang)
  php8.2-cli php8.2-dev libclang-dev pkg-config libssl-dev
  # tests that use pcntl_fork and PHP's own run-tests.php
  php8.2-curl php8.2-mbstring php8.2-xml
  # php/tests/leak_test.php: the extension under memcheck; tls_test.php: a test CA;
  # worker_memory_test.php reads rtet.so's sections and symbols (readelf, nm);
  # php/bench/hot_code.sh profiles php-fpm workers with callgrind
  valgrind openssl binutils
  # the relay's interop test with a client no one here wrote
  python3-websockets
  # the local WordPress site and its end-to-end tests
  php8.2-fpm php8.2-mysql mariadb-server nginx wordpress chromium
  # a theme: Debian's wordpress only recommends one, and without it the site renders nothing
  wordpress-theme-twentytwentythree
  # tests/plugin: the plugin's PHPUnit tests inside the local WordPress
  phpunit
  # scripts/dist.sh: the plugin zip
  zip
  # the relay's Redis engine tests (a real redis-server per test), scripts/run.sh
  # --nodes and its e2e and PHP tests; benchmarks: a Redis PUBLISH baseline through phpredis
  redis-server php-redis
  # benchmarks: nginx with nchan, the C peer of `rtet-bench compare` (and its smoke test)
  libnginx-mod-nchan
  curl ca-certificates
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "Installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  # Debian starts a service as its package installs (MariaDB, nginx, Redis,
  # php-fpm). Our scripts run their own copies on free loopback ports, so keep
  # Debian from starting any while we install: a policy-rc.d that says "no"
  # (exit 101), removed afterwards. A service that was already installed and
  # running before is never touched.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# scripts/setup.sh: no service starts while rtet installs packages\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    own_policy=1
  fi
  drop_policy() { if [ "$own_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi; }
  trap drop_policy EXIT
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  drop_policy
  trap - EXIT
else
  say "Debian packages already installed"
fi

# The local site, its scripts and the browser tests are Node.js programs using
# its test runner and ES modules as Node 20 has them (Debian 12's own is 18).
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "Node.js 20 or newer is needed (found: $(node --version 2>/dev/null || echo none)); install it from nodejs.org or NodeSource and run this again" >&2
  exit 1
fi

say "Installing the Node peer of the relay benchmark (bench/node-ws-peer)"
[ -d bench/node-ws-peer/node_modules ] || npm ci --prefix bench/node-ws-peer

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs) and run this again" >&2
  exit 1
fi
if command -v rustup >/dev/null; then
  say "Making sure rustfmt and clippy are installed"
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

say "Building rtet (release): the relay, the bench tool and the PHP extension"
cargo build --release --workspace --bins --lib
