#!/usr/bin/env bash
# CPU per call: a 3-replica group and a 1-client bench with every process
# pinned to one CPU (taskset -c 0), beside the C ping-pong of
# ../shared/peers/pingpong.c pinned the same way. The target is a 1-client
# p50 of at most 2x two ping-pong round trips. Alternates ROUNDS times.
#
#   scripts/pinned.sh                  (3 rounds of 4 s)
#   CONCOORD=path/to/concoord ROUNDS=5 scripts/pinned.sh
#   REPLICA_ARGS="--spin-us 0" scripts/pinned.sh
set -uo pipefail

rounds=${ROUNDS:-3}
peers=${PEERS:-$(dirname "$0")/../../shared/peers}
# shellcheck source=scripts/group.sh
source "$(dirname "$0")/group.sh"
PIN="taskset -c 0"
gcc -O2 -o "$work/pingpong" "$peers/pingpong.c" || exit 1

for round in $(seq "$rounds"); do
    rt=$(taskset -c 0 "$work/pingpong")
    start r1
    a=$addr
    start r2 -b "$a"
    start r3 -b "$a"
    wait_for_follower "$addr"
    taskset -c 0 "$bin" bench -r "$a" --duration 4 --json --clients 1 2>/dev/null | python3 -c "
import json, sys
d = json.load(sys.stdin); rt = float(sys.argv[2]); p50 = d['latency_us']['p50']
print(f'round {sys.argv[1]}: ping-pong {rt:.1f} µs a round trip; concoord pinned 1 client {d[\"ops_per_sec\"]:,.0f} ops/s, p50 {p50} µs = {p50 / (2 * rt):.1f}x two round trips')" "$round" "$rt"
    stop_all
done
