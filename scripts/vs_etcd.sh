#!/usr/bin/env bash
# Side by side with etcd, in one run: the speed targets are ratios, since this
# machine's speed varies from day to day. Starts etcd 3.4 (data on tmpfs, the
# match for concoord's in-memory mode) from ../shared/peers and a 3-replica
# concoord Counter group, then runs each load on both, alternating, ROUNDS
# times. Everything it starts is stopped on exit.
#
#   scripts/vs_etcd.sh                       (5 s per load, 2 rounds)
#   SECS=10 ROUNDS=3 scripts/vs_etcd.sh
#   LOADS="conn64 pipe" scripts/vs_etcd.sh   (loads: conn64 conn4 get mix pipe one)
#   CONCOORD=path/to/concoord scripts/vs_etcd.sh
#
# Needs etcd (../shared/peers/etcd-cluster.sh installs it) and etcd-bench,
# built as ../shared/peers/README.md says (ETCD_BENCH=path overrides).
set -uo pipefail

secs=${SECS:-5}
rounds=${ROUNDS:-2}
peers=${PEERS:-$(dirname "$0")/../../shared/peers}
eb=${ETCD_BENCH:-/tmp/etcd-bench-target/release/etcd-bench}
ep=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793
if [[ ! -x $eb ]]; then
    echo "no etcd-bench at $eb: build it as $peers/README.md says, or set ETCD_BENCH" >&2
    exit 2
fi
# shellcheck source=scripts/group.sh
source "$(dirname "$0")/group.sh"
on_exit() {
    "$peers/etcd-cluster.sh" stop >/dev/null 2>&1
}
"$peers/etcd-cluster.sh" start --tmpfs || exit 1

start r1
a=$addr
start r2 -b "$a"
b=$addr
start r3 -b "$a"
c=$addr
group=$a,$b,$c
wait_for_follower "$c"

cc() {
    local label=$1
    shift
    "$bin" bench -r "$group" --duration "$secs" --json "$@" 2>/dev/null | python3 -c "
import json, sys
d = json.load(sys.stdin); l = d['latency_us']
print(f'concoord {sys.argv[1]:36s} {d[\"ops_per_sec\"]:>10,.0f} ops/s  p50 {l[\"p50\"]:>6} µs  p99 {l[\"p99\"]:>6} µs  errors {d[\"errors\"]}')" "$label"
}
et() {
    echo -n "etcd     "
    "$eb" "$ep" "$@"
}

for load in ${LOADS:-conn64 conn4 get mix pipe one}; do
    for _ in $(seq "$rounds"); do
        case $load in
        conn64)
            et 64 64 "$secs" put
            cc "64 clients, 64 conns, writes" --clients 64
            ;;
        conn4)
            et 64 4 "$secs" put
            cc "64 clients, 4 conns, writes" --clients 64 --conns 4
            ;;
        get)
            et 64 4 "$secs" get
            et 64 64 "$secs" get
            cc "64c/4 conns, reads (read index)" --clients 64 --conns 4 --read-ratio 1
            cc "64c/64 conns, reads (read index)" --clients 64 --read-ratio 1
            ;;
        mix)
            et 64 4 "$secs" mix
            et 64 64 "$secs" mix
            cc "64c/4 conns, 90% reads" --clients 64 --conns 4 --read-ratio 0.9
            cc "64c/64 conns, 90% reads" --clients 64 --read-ratio 0.9
            ;;
        pipe)
            # Against etcd's 64 clients over 64 connections (conn64).
            cc "4 clients x pipeline 64" --clients 4 --pipeline 64
            ;;
        one)
            et 1 1 "$secs" put
            cc "1 client" --clients 1
            ;;
        *)
            echo "unknown load $load (conn64 conn4 get mix pipe one)" >&2
            exit 2
            ;;
        esac
    done
done
