#!/usr/bin/env bash
# Restore and inspect time for a savepoint of 1,000,000 keys, heap (hashmap) and RocksDB, on the
# real binary. The topic is written straight into durable embedded topic files
# (source.embedded.dir: one line per record, 500,000 per partition), a first run reads it all and
# takes a savepoint, then:
#   inspect  wall time of `ckptlab inspect SAVEPOINT --entries 0` (reads every entry)
#   restore  from the job's submission to every task RUNNING (its counters restored), from the
#            run's --events file, at parallelism 2 and rescaled to 3
# Usage: benches/restore_1m.sh [path/to/ckptlab [keys]]
set -euo pipefail
bin=$(realpath "${1:-target/release/ckptlab}")
keys=${2:-1000000}
[ -x "$bin" ] || { echo "no binary at $bin: cargo build --release first" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/topic"
awk -v n="$keys" -v d="$dir/topic" 'BEGIN { for (i = 0; i < n; i++) printf "k%07d\n", i > (d "/input-topic-" (i % 2) ".log") }'
export CKPTLAB_HOME="$dir/home"
scenario() { # name backend parallelism steps...
  local name=$1 backend=$2 p=$3; shift 3
  {
    echo "name = \"$name\""
    echo '[config.execution.checkpointing]'
    echo 'interval = "off"'
    echo 'storage = "filesystem"'
    echo "dir = \"$dir/chk\""
    echo "savepoint-dir = \"$dir/sp\""
    echo '[config.state.backend]'
    echo "type = \"$backend\""
    echo '[config.source]'
    echo "embedded.dir = \"$dir/topic\""
    echo 'auto-offset-reset = "earliest"'
    echo '[config.job]'
    echo "parallelism = $p"
    echo '[config.taskmanager]'
    echo "count = $p"
    echo '[config.ckptlab]'
    echo 'hop-delay = "0ms"'
    printf '%s\n' "$@"
  } >"$dir/$name.toml"
  echo "$dir/$name.toml"
}
ms_between() { # events file, first event, second event -> ms
  python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
t = {}
for line in open(sys.argv[1]):
    e = json.loads(line)
    t.setdefault(e["event"], e["t_ms"])
print(t[sys.argv[3]] - t[sys.argv[2]])
EOF
}
for backend in hashmap rocksdb; do
  fill=$(scenario "fill-$backend" "$backend" 2 '[[steps]]' 'await = "caught-up"' 'timeout = "600s"' '[[steps]]' 'savepoint = true')
  sp=$("$bin" run "$fill" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["savepoints"][0])')
  size=$(du -sh "$sp" | cut -f1)
  start=$(date +%s%N)
  "$bin" inspect "$sp" --entries 0 >/dev/null
  inspect_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  for p in 2 3; do
    again=$(scenario "restore-$backend-$p" "$backend" "$p" '[[steps]]' 'await = "running"' 'timeout = "600s"')
    "$bin" run "$again" --restore "$sp" --events "$dir/ev.jsonl" -q >/dev/null
    restore_ms=$(ms_between "$dir/ev.jsonl" job_submitted job_running)
    echo "$backend: $keys keys, savepoint $size; inspect ${inspect_ms} ms; restore at parallelism 2 -> $p: ${restore_ms} ms"
  done
done
