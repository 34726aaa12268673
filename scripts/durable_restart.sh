#!/usr/bin/env bash
# Restart time of a durable replica with N commands in its log behind its
# last snapshot (issue #16): a 3-replica durable group that never snapshots
# (--snapshot-every huge), N increments, then one follower is killed with
# kill -9 and restarted from its data dir. Prints the time to `listening on`
# (reading the data dir and replaying the log) and to caught up.
#
#   scripts/durable_restart.sh [N]     (default 1000000)
set -euo pipefail
n=${1:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CONCOORD:-$root/target/release/concoord}
[[ -x $bin ]] || (cd "$root" && cargo build --release --bin concoord)
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

start() { # start N PORT [flags]: sets $pid once it listens
    local i=$1 port=$2
    shift 2
    "$bin" replica -o Counter -p "$port" -w --data-dir "$work/d$i" \
        --snapshot-every 1000000000000 "$@" >"$work/r$i.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 2000); do
        grep -q '^listening on' "$work/r$i.log" && return
        sleep 0.01
    done
    cat "$work/r$i.log" >&2
    exit 1
}
base=$((20000 + RANDOM % 20000))
start 1 $base
start 2 $((base + 1)) -b 127.0.0.1:$base
p2=$pid
start 3 $((base + 2)) -b 127.0.0.1:$base
group=127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))
sleep 1
echo "writing $n increments..."
"$bin" bench -r "$group" --clients 4 --pipeline 64 --ops "$n" --method increment | tail -2
leader_slot=$("$bin" status --json -r 127.0.0.1:$base | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["executed_slot"])')
du -sh "$work/d2" | sed 's/^/data dir of the replica to restart: /'
kill -9 "$p2"
wait "$p2" 2>/dev/null || true
t0=$(date +%s.%N)
start 2 $((base + 1))
t1=$(date +%s.%N)
for _ in $(seq 6000); do
    s=$("$bin" status --json -r 127.0.0.1:$((base + 1)) 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["executed_slot"])' 2>/dev/null || echo 0)
    [[ $s -ge $leader_slot ]] && break
    sleep 0.01
done
t2=$(date +%s.%N)
grep -o 'restarting member.*' "$work/r2.log" | head -1
python3 -c "print(f'restart: listening after {$t1-$t0:.2f} s, caught up (slot $leader_slot) after {$t2-$t0:.2f} s')"
"$bin" call -r "$group" getvalue
