#!/usr/bin/env bash
# Keep-alive cost: N idle `concoord shell` sessions (TTL seconds) on a
# 3-replica Lock group; prints the leader's and a follower's CPU and the log
# slots per second over 20 s. N=300 TTL=10 scripts/idle_sessions.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CONCOORD:-$root/target/release/concoord}; N=${N:-200}; TTL=${TTL:-3}
work=$(mktemp -d); pids=(); shells=(); tails=()
cleanup() { for p in "${shells[@]}" "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${tails[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
start() { local log=$work/r$1.log; shift; "$bin" replica -o Lock -p 0 "$@" >"$log" 2>&1 & pids+=($!); for _ in $(seq 100); do addr=$(sed -n 's/^listening on //p' "$log"); [[ -n $addr ]] && return; sleep 0.05; done; exit 1; }
start 1; a=$addr; start 2 -b "$a"; b=$addr; start 3 -b "$a"; c=$addr
for _ in $(seq 100); do if "$bin" status --json -r "$c" 2>/dev/null | grep -q '"role":"follower"'; then break; fi; sleep 0.05; done
for i in $(seq $N); do
  mkfifo $work/f$i
  # Holds the fifo open so the shell waits for input instead of seeing EOF.
  tail -f /dev/null > $work/f$i &
  tails+=($!)
  "$bin" shell -r "$a,$b,$c" --session-ttl $TTL < $work/f$i > /dev/null 2>&1 &
  shells+=($!)
  echo locked > $work/f$i &
done
sleep 5
"$bin" status --json -r "$a" | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]; print("sessions", s["sessions"], "role", s["role"])'
leader=$("$bin" status --json -r "$a,$b,$c" | python3 -c 'import json,sys; l=json.load(sys.stdin); print([i for i,s in enumerate(l) if s["role"]=="leader"][0])')
lp=${pids[$leader]}
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
s0=$("$bin" status --json -r "$a" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["executed_slot"])')
t0=$(ticks $lp); f0=$(ticks ${pids[$(( (leader+1)%3 ))]})
sleep 20
t1=$(ticks $lp); f1=$(ticks ${pids[$(( (leader+1)%3 ))]})
s1=$("$bin" status --json -r "$a" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["executed_slot"])')
hz=$(getconf CLK_TCK)
python3 -c "print('leader CPU %.2f%% of a core, follower %.2f%%, log slots/s %.2f' % (($t1-$t0)/$hz/20*100, ($f1-$f0)/$hz/20*100, ($s1-$s0)/20))"
"$bin" status --json -r "$a" | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]; print("sessions after", s["sessions"])'
