#!/usr/bin/env bash
# Before and after in one run: rtet-relay built at an earlier revision
# against the working tree's, measured by `rtet-bench compare` in rounds
# that alternate which goes first (the machine's noise moves from run to
# run; alternating spreads it over both), then one table with every round.
#
#   bench/relay-before-after/run.sh BEFORE_REV [ROUNDS] [-- COMPARE_ARGS...]
#   bench/relay-before-after/run.sh 6a105f9 3 -- --only flood,latency --rate 100,300,1000
#
# COMPARE_ARGS go to each `rtet-bench compare` (default: --only
# flood,latency); the Node and nchan peers are skipped (one run of
# `rtet-bench compare` measures those). The earlier revision is built from a
# temporary git worktree into the same target directory, so only the
# workspace's own crates are compiled again. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { sed -n '2,14p' "$0"; exit 2; }
before_rev=$1; shift
rounds=3
if [ $# -gt 0 ] && [ "$1" != "--" ]; then rounds=$1; shift; fi
[ "${1:-}" = "--" ] && shift
compare_args=("$@")
[ ${#compare_args[@]} -gt 0 ] || compare_args=(--only flood,latency)

dir=$(mktemp -d)
tree="$dir/before-tree"
cleanup() { git worktree remove --force "$tree" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT

target=$(pwd)/target
git worktree add --detach "$tree" "$before_rev" >/dev/null
(cd "$tree" && CARGO_TARGET_DIR="$target" cargo build --release -q -p rtet-relay)
cp "$target/release/rtet-relay" "$dir/rtet-relay-before"
cargo build --release -q -p rtet-relay -p rtet-bench
cp "$target/release/rtet-relay" "$dir/rtet-relay-after"
after_rev="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates src Cargo.toml Cargo.lock || echo '+changes')"

for round in $(seq 1 "$rounds"); do
  order="before after"
  [ $((round % 2)) -eq 0 ] && order="after before"
  for which in $order; do
    echo "round $round: $which" >&2
    "$target/release/rtet-bench" compare --skip-node --skip-nchan "${compare_args[@]}" \
      --relay-bin "$dir/rtet-relay-$which" 2>/dev/null >"$dir/$which.$round"
  done
done

python3 - "$dir" "$rounds" "$before_rev" "$after_rev" <<'PY'
import sys
dir, rounds, before, after = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def rows(path):
    out = {}
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) > 2 and line.startswith('| ') and not cells[0].startswith(('measurement', '---')):
            if cells[1] not in ('', '–'):
                out[cells[0]] = cells[1]
    return out

runs = {w: [rows(f"{dir}/{w}.{r}") for r in range(1, rounds + 1)] for w in ("before", "after")}
names = list(runs["after"][0]) or list(runs["before"][0])
print(f"| rtet-relay, rounds {' / '.join(str(r) for r in range(1, rounds + 1))} | before ({before}) | after ({after}) |")
print("|---|--:|--:|")
for name in names:
    cells = {w: [r.get(name, "–") for r in runs[w]] for w in runs}
    # A figure that is itself "a / b" (delivered / expected) is set apart by "; ".
    sep = "; " if any("/" in c for w in cells for c in cells[w]) else " / "
    cell = lambda w: sep.join(cells[w])
    print(f"| {name} | {cell('before')} | {cell('after')} |")
PY
echo
tail -n 3 "$dir/after.$rounds" | grep -E '^(machine|1-minute)' || true
echo "reproduce: bench/relay-before-after/run.sh $before_rev $rounds -- ${compare_args[*]}"
