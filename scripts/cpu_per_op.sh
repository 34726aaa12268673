#!/usr/bin/env bash
# CPU per operation of each process under one load: a 3-replica group and a
# bench on this machine, `perf stat` on the leader, a follower and the bench
# for 3 s in the middle of an 8 s run. Steadier than ops/s on a noisy box,
# so A/B a change with it (alternate the two binaries a few times).
#
#   scripts/cpu_per_op.sh --clients 4 --pipeline 64     (bench flags)
#   CONCOORD=path/to/concoord scripts/cpu_per_op.sh --clients 64
#   LEADER_ARGS=... FOLLOWER_ARGS=... (extra replica flags)
#
# Needs perf (apt-get install linux-perf).
set -uo pipefail

command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 2; }
# shellcheck source=scripts/group.sh
source "$(dirname "$0")/group.sh"
# shellcheck disable=SC2086
start leader ${LEADER_ARGS:-}
leader=$pid
a=$addr
# shellcheck disable=SC2086
start f1 -b "$a" ${FOLLOWER_ARGS:-}
follower=$pid
# shellcheck disable=SC2086
start f2 -b "$a" ${FOLLOWER_ARGS:-}
wait_for_follower "$addr"

"$bin" bench -r "$a" --duration 8 --json "$@" >"$work/bench.json" 2>/dev/null &
bench=$!
pids+=("$bench")
sleep 3
events=(-e raw_syscalls:sys_enter -e context-switches -e task-clock)
perf stat "${events[@]}" -p "$leader" -o "$work/leader.stat" -- sleep 3 &
perf stat "${events[@]}" -p "$follower" -o "$work/follower.stat" -- sleep 3 &
perf stat "${events[@]}" -p "$bench" -o "$work/bench.stat" -- sleep 3
wait "$bench"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
d = json.loads(open(f"{work}/bench.json").read().strip().splitlines()[-1])
ops = d["ops_per_sec"] * 3  # the 3 s window, at the run's mean rate
def stat(name):
    values = {}
    for line in open(f"{work}/{name}.stat"):
        f = line.split()
        if len(f) > 1 and f[0].replace(",", "").replace(".", "").isdigit():
            values[f[2] if f[1] == "msec" else f[1]] = float(f[0].replace(",", ""))
    return values
print(f"{d['ops_per_sec']:,.0f} ops/s, p50 {d['latency_us']['p50']} µs, errors {d['errors']}")
for name in ["leader", "follower", "bench"]:
    v = stat(name)
    print(f"{name:9s} {v.get('task-clock', 0) * 1000 / ops:6.2f} µs CPU/op"
          f"  {v.get('raw_syscalls:sys_enter', 0) / ops:5.2f} syscalls/op"
          f"  {v.get('context-switches', 0) / ops:5.2f} switches/op")
PY
