#!/usr/bin/env bash
# Bytes left on disk by ckptlab after N runs (default 100) of the shipped scenarios, taken in
# turn, each run in its own process, in a fresh private directory ($CKPTLAB_HOME): checkpoints
# (default retention NO_EXTERNALIZED_CHECKPOINTS), task managers' directories, RocksDB copies.
# Usage: benches/leftovers_100.sh [path/to/ckptlab [runs]]
set -euo pipefail
bin=$(realpath "${1:-target/release/ckptlab}")
runs=${2:-100}
[ -x "$bin" ] || { echo "no binary at $bin: cargo build --release first" >&2; exit 2; }
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
export CKPTLAB_HOME="$home/ckptlab"
mapfile -t scenarios < <(ls assets/scenarios/*.toml)
failed=0
for i in $(seq 0 $((runs - 1))); do
  s=${scenarios[$((i % ${#scenarios[@]}))]}
  "$bin" run "$s" -q >/dev/null || { failed=$((failed + 1)); echo "run $i: $s: an expect failed" >&2; }
done
echo "$runs runs of ${#scenarios[@]} shipped scenarios ($failed with a failed expect): $(du -sb "$CKPTLAB_HOME" | cut -f1) bytes left in \$CKPTLAB_HOME"
find "$CKPTLAB_HOME" -mindepth 1 -maxdepth 3 | sed "s|$CKPTLAB_HOME|\$CKPTLAB_HOME|" | head -20
