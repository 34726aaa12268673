# Sourced by the measurement scripts here: builds the binary if it is missing,
# starts Counter replicas on loopback and stops everything on exit.
#
#   start NAME [replica flags]   starts a replica logging to $work/NAME.log;
#                                sets $addr once it listens, and $pid
#   wait_for_follower ADDR       returns once ADDR says it is a follower
#   stop_all                     stops every replica started so far
#
# $CONCOORD picks the binary; $PIN goes in front of each replica (e.g.
# "taskset -c 0"), $REPLICA_ARGS after its flags. A script that defines
# on_exit has it run on exit too.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${CONCOORD:-$root/target/release/concoord}
if [[ ! -x $bin ]]; then
    (cd "$root" && cargo build --release --bin concoord) || exit 1
fi
work=$(mktemp -d)
pids=()

stop_all() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
}

cleanup() {
    stop_all
    if declare -F on_exit >/dev/null; then on_exit; fi
    rm -rf "$work"
}
trap cleanup EXIT

start() {
    local log=$work/$1.log
    shift
    # shellcheck disable=SC2086
    ${PIN:-} "$bin" replica -o Counter -p 0 "$@" ${REPLICA_ARGS:-} >"$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
        addr=$(sed -n 's/^listening on //p' "$log" 2>/dev/null || true)
        [[ -n $addr ]] && return
        sleep 0.05
    done
    echo "replica did not start:" >&2
    cat "$log" >&2
    exit 1
}

wait_for_follower() {
    for _ in $(seq 100); do
        "$bin" status --json -r "$1" 2>/dev/null | grep -q '"role":"follower"' && return
        sleep 0.05
    done
}
