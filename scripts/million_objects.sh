#!/usr/bin/env bash
# 10^6 named Counters in a 3-replica group: resident memory per object on a
# follower, then the time a 4th replica takes to hold every object (its
# snapshot arrives in pieces). N=... for another count. Release build needed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CONCOORD:-$root/target/release/concoord}; N=${N:-1000000}
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
start() { local log=$work/r$1.log; shift; "$bin" replica -o Counter -p 0 "$@" >"$log" 2>&1 & pids+=($!); for _ in $(seq 100); do addr=$(sed -n 's/^listening on //p' "$log"); [[ -n $addr ]] && return; sleep 0.05; done; exit 1; }
rss() { ps -o rss= -p "$1" | tr -d ' '; }
start 1; a=$addr; start 2 -b "$a"; b=$addr; start 3 -b "$a"; c=$addr
for _ in $(seq 100); do if "$bin" status --json -r "$c" 2>/dev/null | grep -q '"role":"follower"'; then break; fi; sleep 0.05; done
sleep 1
r0=$(rss ${pids[1]})
echo "follower RSS before: ${r0} KiB"
"$bin" bench -r "$a,$b,$c" --ops $N --objects $N --clients 64 --conns 4 --pipeline 4 --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print("created", d["ops_per_sec"], "ops/s errors", d["errors"])'
sleep 2
for i in 0 1 2; do echo "replica $i RSS after: $(rss ${pids[$i]}) KiB"; done
r1=$(rss ${pids[1]})
python3 -c "print('bytes per object (follower):', ($r1-$r0)*1024/$N)"
t0=$(date +%s.%N)
start 4 -b "$a"; d=$addr
while true; do
  n=$("$bin" objects -r "$d" --timeout 30 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0)
  if [[ $n -ge $N ]]; then break; fi
  sleep 0.2
done
t1=$(date +%s.%N)
python3 -c "print('joiner holds all objects after', round($t1-$t0,2), 's')"
grep -h "arrived in" $work/r4.log || true
echo "joiner RSS: $(rss ${pids[3]}) KiB"
