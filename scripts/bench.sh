#!/usr/bin/env bash
# Starts a 3-replica Counter group on loopback, runs the standard loads of
# `concoord bench` against it and prints one line per load. Everything it
# starts is stopped on exit.
#
#   scripts/bench.sh [SECONDS]        (default 5 s per load)
#   CONCOORD=path/to/concoord scripts/bench.sh
#   REPLICA_ARGS="--spin-us 0" scripts/bench.sh   (extra flags for each replica)
#   DURABLE=1 scripts/bench.sh       (-w: each replica with a data dir under the
#                                     temp dir, which must be on a real disk)
set -euo pipefail

secs=${1:-5}
# shellcheck source=scripts/group.sh
source "$(dirname "$0")/group.sh"

# The data dir flags of replica N, with DURABLE set.
durable() {
    if [[ -n ${DURABLE:-} ]]; then echo "-w --data-dir $work/data$1"; fi
}

# shellcheck disable=SC2046
start r1 $(durable 1)
a=$addr
# shellcheck disable=SC2046
start r2 -b "$a" $(durable 2)
b=$addr
# shellcheck disable=SC2046
start r3 -b "$a" $(durable 3)
c=$addr
group=$a,$b,$c
# Wait until both newcomers have joined.
wait_for_follower "$c"

echo "3 replicas${DURABLE:+ (durable, data in $work)}: $group; $secs s per load"
run() {
    local label=$1
    shift
    local out
    out=$("$bin" bench -r "$group" --duration "$secs" --json "$@" 2>/dev/null)
    python3 - "$label" "$out" <<'PY'
import json, sys
label, d = sys.argv[1], json.loads(sys.argv[2])
l = d["latency_us"]
print(f"{label:34s} {d['ops_per_sec']:>10,.0f} ops/s  p50 {l['p50']:>6} µs  p99 {l['p99']:>6} µs  errors {d['errors']}")
PY
}
run "1 client" --clients 1
run "64 clients over 4 connections" --clients 64 --conns 4
run "64 clients, 64 connections" --clients 64
run "4 clients x pipeline 64" --clients 4 --pipeline 64
# The same load spread over 10,000 named Counters (created by their first call).
run "64 clients/4 conns, 10k names" --clients 64 --conns 4 --objects 10000
run "64 clients, 64 conns, 10k names" --clients 64 --objects 10000
