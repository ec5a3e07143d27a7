#!/usr/bin/env bash
# What --hash-uploads costs on STOR: three ringftpd (off, sha256, crc32) on one tmpfs root
# (/dev/shm: user xattrs since Linux 6.6), ringftp-bench `stor --size 1G --repeat 2`,
# interleaved rounds; prints MB/s and the server's CPU seconds per GB per run. Build with
# `cargo build --release` first. EXTRA_BIN=path adds a fourth server (an A/B build, sha256).
set -u
cd "$(dirname "$0")/.."
B=target/release/ringftp-bench
S=target/release/ringftpd
ROUNDS=${ROUNDS:-3}
R=/dev/shm/ringhash; mkdir -p $R/up
names=(off sha256 crc32); bins=($S $S $S); extra=("" "--hash-uploads sha256" "--hash-uploads crc32")
if [ -n "${EXTRA_BIN:-}" ]; then names+=(alt); bins+=("$EXTRA_BIN"); extra+=("--hash-uploads sha256"); fi
pids=()
for i in "${!names[@]}"; do
  ${bins[$i]} --root $R --listen 127.0.0.1:$((23031 + i)) --user bench:bench \
    --passive-ports $((27000 + i * 1000))-$((27999 + i * 1000)) --log-level warn ${extra[$i]} >/dev/null 2>&1 &
  pids+=($!)
done
trap 'kill ${pids[@]} 2>/dev/null; rm -rf $R' EXIT
sleep 1
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }
tck=$(getconf CLK_TCK)
for round in $(seq $ROUNDS); do
  for i in "${!names[@]}"; do
    c0=$(cpu ${pids[$i]})
    out=$(timeout 120 $B --port $((23031 + i)) --user bench --pass bench --json stor --size 1G --dir up --repeat 2 --cleanup 2>/dev/null | tail -1)
    c1=$(cpu ${pids[$i]})
    mbs=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["mb_per_s"]))' "$out" 2>/dev/null)
    echo "round $round ${names[$i]} MB/s $mbs cpu_s_per_GB $(python3 -c "print(round(($c1 - $c0) / $tck / 2.147, 3))")"
  done
done
