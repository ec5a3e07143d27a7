#!/usr/bin/env bash
# Interleaved A/B: an older ringftpd build (BASE=path, e.g. of c12c57b) against this tree's on
# the uring and epoll engines, with ringftp-bench, on /dev/shm. Build with
# `cargo build --release` first; prints one JSON line per run (see README's table).
set -u
cd "$(dirname "$0")/.."
B=target/release/ringftp-bench
NEW=target/release/ringftpd
BASE=${BASE:?set BASE to an older ringftpd binary}
R=/dev/shm/ringab; mkdir -p $R/up; [ -f $R/big.bin ] || head -c 1G /dev/zero > $R/big.bin
declare -A BIN=( [base]=$BASE [uring]=$NEW [epoll]=$NEW )
declare -A EXTRA=( [base]="" [uring]="--engine uring" [epoll]="--engine epoll" )
declare -A PORT=( [base]=23021 [uring]=23022 [epoll]=23023 )
declare -A PP=( [base]=24000-24999 [uring]=25000-25999 [epoll]=26000-26999 )
pids=()
for s in base uring epoll; do
  ${BIN[$s]} --root $R --listen 127.0.0.1:${PORT[$s]} --user bench:bench --passive-ports ${PP[$s]} --max-sessions-per-ip 0 --log-level warn ${EXTRA[$s]} >/dev/null 2>&1 &
  pids+=($!)
done
trap 'kill ${pids[@]} 2>/dev/null; rm -rf $R' EXIT
sleep 1
$B --port ${PORT[uring]} --user bench --pass bench prepare --dir small --count 1000 >/dev/null 2>&1
val() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("'$1'", d))' 2>/dev/null; }
for round in 1 2 3; do
  for s in base uring epoll; do
    o="--port ${PORT[$s]} --user bench --pass bench --json"
    r=$(timeout 120 $B $o --sink buffer retr --path big.bin --repeat 3 2>/dev/null | tail -1)
    w=$(timeout 120 $B $o stor --size 1G --dir up --repeat 2 --cleanup 2>/dev/null | tail -1)
    m=$(timeout 120 $B $o small --dir small --count 1000 2>/dev/null | tail -1)
    l=$(timeout 60 $B $o --sessions 32 --duration 4 login 2>/dev/null | tail -1)
    echo "round $round $s RETR $r"; echo "round $round $s STOR $w"; echo "round $round $s SMALL $m"; echo "round $round $s LOGIN $l"
  done
done
