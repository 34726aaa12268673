#!/bin/bash
# usage: ./bench.sh [DUR] [REPS]   -> appends to results.txt
cd "$(dirname "$0")"
B=target/release
D=${1:-10}; R=${2:-3}
PORT=20000
run() { # label client N server-args... [--perf]
  local label=$1 cl=$2 n=$3 perf=$4; shift 4
  PORT=$((PORT+1))
  $B/"$@" -p $PORT 2>>server.log & local SP=$!
  sleep 0.3
  echo "# $(date +%T) load=$(cut -d' ' -f1 /proc/loadavg) label=$label client=$cl N=$n server='$*'"
  $B/$cl -p $PORT -n $n -d $D --spid $SP --label "$label" $perf
  kill $SP; wait $SP 2>/dev/null
}
for N in 64 4; do
  for r in $(seq $R); do
    run epoll        client $N "" epoll
    run uring        client $N "" uring --mode plain
    run uring-sqpoll client $N "" uring --mode sqpoll
    run uring-defer  client $N "" uring --mode defer
  done
done
for N in 64 4; do
  for r in $(seq $R); do
    run uc/epoll uclient $N "" epoll
    run uc/uring uclient $N "" uring --mode plain
  done
done
# syscall counting runs (perf tracepoints on the server pid, separate because tracing costs CPU)
D=5
for N in 64 4; do
  run epoll        client $N --perf epoll
  run uring        client $N --perf uring --mode plain
  run uring-sqpoll client $N --perf uring --mode sqpoll
  run uring-defer  client $N --perf uring --mode defer
  run uc/epoll     uclient $N --perf epoll
  run uc/uring     uclient $N --perf uring --mode plain
done
