#!/usr/bin/env bash
# Keypress-to-screen latency of the workbench with 2 M records in the topic, measured on the real
# binary in tmux: `?` sent, the screen polled until the help overlay shows, then Escape; 20 presses,
# median, p90 and max in ms. tmux's own send-keys and capture-pane are in the figure (as a person's
# terminal is). The end-to-end test keys_answer_at_once_with_two_million_records holds only a
# generous bound; this is the figure. Usage: benches/key_latency.sh [path/to/ckptlab [presses]]
set -euo pipefail
bin=$(realpath "${1:-target/release/ckptlab}")
presses=${2:-20}
records=2000000
[ -x "$bin" ] || { echo "no binary at $bin: cargo build --release first" >&2; exit 2; }
command -v tmux >/dev/null || { echo "tmux is needed (apt-get install tmux)" >&2; exit 2; }
dir=$(mktemp -d)
sock="ckptlab-keys-$$"
trap 'tmux -L "$sock" kill-server 2>/dev/null || true; rm -rf "$dir"' EXIT
# The same scenario as the test: 2 M records over 4 keys as fast as the generator goes.
cat >"$dir/fill.toml" <<'EOF'
name = "fill"
[config.ckptlab]
hop-delay = "0ms"
[[steps]]
generate = { rate = 1000000, duration = "2s", keys = ["a", "b", "c", "d"] }
[[steps]]
await = "caught-up"
timeout = "5min"
EOF
tmux -L "$sock" new-session -d -s m -x 120 -y 40 "cd $dir && exec env CKPTLAB_LOG=$dir/log $bin --scenario $dir/fill.toml"
screen() { tmux -L "$sock" capture-pane -p -t m; }
# The topic's records as the input line shows them (every partition's end), as the test reads it.
topic_end() {
  screen | grep -m1 'Input → topic' | awk '{ for (i = 1; i <= NF; i++) { w = $i; if (index(w, "/")) { split(w, a, "/"); w = a[2] } if (w ~ /^[0-9]+$/) s += w } } END { print s + 0 }'
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
deadline=$(( $(now_ms) + 120000 ))
until [ "$(topic_end)" -ge "$records" ]; do
  [ "$(now_ms)" -lt "$deadline" ] || { echo "the topic never reached $records records" >&2; screen >&2; exit 1; }
  sleep 0.1
done
at=$(topic_end)
took=()
for _ in $(seq "$presses"); do
  t0=$(now_ms)
  tmux -L "$sock" send-keys -t m '?'
  # Polled as fast as tmux answers: a sleep here would be the figure.
  until screen | grep -q ' Help '; do
    [ $(( $(now_ms) - t0 )) -lt 10000 ] || { echo "help never opened" >&2; screen >&2; exit 1; }
  done
  took+=( $(( $(now_ms) - t0 )) )
  tmux -L "$sock" send-keys -t m Escape
  while screen | grep -q ' Help '; do sleep 0.05; done
  sleep 0.3
done
tmux -L "$sock" send-keys -t m q
sorted=$(printf '%s\n' "${took[@]}" | sort -n)
pick() { sed -n "$(( ($1 * (presses - 1)) / 100 + 1 ))p" <<<"$sorted"; }
echo "ckptlab keypress to screen at $at records ($presses presses, tmux in the figure)"
echo "  median: $(pick 50) ms   p90: $(pick 90) ms   max: $(pick 100) ms"
