#!/usr/bin/env bash
# The workbench's CPU use, measured on the real binary in tmux: idle over 10 s, then with the
# generator at its top rate (g, then G up to 5000 records/s) over 10 s, and the time from launch
# to the first frame (from the log). Usage: benches/tui_cpu.sh [path/to/ckptlab [ckptlab options]]
# e.g. benches/tui_cpu.sh target/release/ckptlab --kafka mock
set -euo pipefail
bin=$(realpath "${1:-target/release/ckptlab}")
shift || true
args="$*"
[ -x "$bin" ] || { echo "no binary at $bin: cargo build --release first" >&2; exit 2; }
command -v tmux >/dev/null || { echo "tmux is needed (apt-get install tmux)" >&2; exit 2; }
dir=$(mktemp -d)
sock="ckptlab-cpu-$$"
trap 'tmux -L "$sock" kill-server 2>/dev/null || true; rm -rf "$dir"' EXIT
tmux -L "$sock" new-session -d -s m -x 120 -y 40 "cd $dir && exec env CKPTLAB_LOG=$dir/log $bin $args"
pid=$(tmux -L "$sock" list-panes -t m -F '#{pane_pid}')
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
cpu_over() { # seconds -> percent of one core
  local a b; a=$(ticks); sleep "$1"; b=$(ticks)
  awk -v d=$((b - a)) -v hz="$hz" -v s="$1" 'BEGIN { printf "%.1f", 100 * d / hz / s }'
}
sleep 3
idle=$(cpu_over 10)
tmux -L "$sock" send-keys -t m g; sleep 0.3
for _ in 1 2 3 4; do tmux -L "$sock" send-keys -t m G; sleep 0.3; done
sleep 2
screen=$(tmux -L "$sock" capture-pane -p -t m)
rate=$(grep -o 'generator [0-9]*/s' <<<"$screen" | head -1 || true)
busy=$(cpu_over 10)
first=$(grep -o 'first frame drawn ms=[0-9]*' "$dir/log" | grep -o '[0-9]*$' || echo "?")
tmux -L "$sock" send-keys -t m q
echo "ckptlab TUI CPU (percent of one core, 10 s each)${args:+ with $args}"
echo "  idle:                          $idle %"
echo "  ${rate:-generator ?} at hop 200 ms:  $busy %"
echo "  launch to first frame:         $first ms"
