#!/usr/bin/env bash
# ringftpd against the four FTP servers people run on Linux (vsftpd, pure-ftpd, proftpd,
# pyftpdlib), on loopback, measured with the client users run (curl 8) and with ringftp-bench.
#
# The servers run side by side on distinct ports of 127.0.0.1 with non-overlapping passive
# ranges, on a tmpfs data directory prepared once (the 1 GiB file is then in the page cache by
# construction). Each round runs every row against every server in turn, the order of the
# servers rotated by one each round, so drift on a shared machine spreads over all of them;
# round 0 is a warm-up and is not reported. Every round also measures the loopback TCP ceiling
# (iperf3, one stream). For every measurement the server's CPU time is read from
# /proc/PID/stat of its process tree (utime+stime, reaped children included) before and
# after; "after" waits (up to 10 s) until a forking server's session processes have exited
# and been reaped, since their CPU time reaches the tree only then. The client's CPU time is
# read too (bash's `times` around each client run), so the cost tables show whose CPU sets a
# row's pace. The tables give medians with min..max and ringftpd / best peer per row.
#
# Rows, each with both clients where the row has a curl form:
#   RETR 1 GiB EPSV, RETR 1 GiB EPRT: curl 8 (reads into a buffer, writes to /dev/null),
#     ringftp-bench --sink buffer (reads into a buffer) and --sink null (splices to /dev/null)
#   STOR 1 GiB: curl -T from tmpfs, ringftp-bench stor
#   1000 x 4 KiB over one control connection: one curl invocation with 1000 URLs
#     (--ftp-method nocwd; the connection reuse is checked with %{num_connects}), ringftp-bench small
#   64 clients x 16 MiB at once: 64 curl processes started together (wall time of the
#     slowest), ringftp-bench --sessions 64 with both sinks
#   connect+login+QUIT, 32 clients, password and anonymous: ringftp-bench login
#   concurrency sweep: ringftp-bench retr --sink buffer of a 16 MiB file for SWEEP_SECS,
#     1/16/128/512 sessions, MB/s and p99
#   idle logged-in sessions: PSS of the server's tree per session (ringftp-bench idle), after a
#     fresh restart of the server
#
# Usage (as root: installs or fetches packages, adds a local user `bench`, raises limits):
#   benches/compare.sh                  # ROUNDS=5 after a warm-up, full sizes
#   ROUNDS=3 benches/compare.sh
#   QUICK=1 benches/compare.sh          # small sizes, 1 round, no warm-up: a smoke run
# Knobs: ROUNDS, QUICK, ENGINE=uring|epoll|both (ringftpd --engine, when it has the flag),
#   SERVERS (default "ringftpd vsftpd pure-ftpd proftpd pyftpdlib"), PEERS (where the unpacked
#   servers and curl 8 live, default benches/.peers), RINGFTPD / BENCH (prebuilt binaries),
#   IDLE_SESSIONS (single-process servers) and IDLE_FORKED (servers that fork per session),
#   NO_COMMIT_FILES=1 (write results only under target/compare).
# Results: benches/compare-results.md (tables), benches/compare-raw/<date>.tsv (every
#   measurement), both also under target/compare/.
#
# Safety: everything listens on 127.0.0.1 only; every client call runs under `timeout` and
# with its own timeouts; the trap stops every server (by pid, with its process tree) and
# removes the data.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    ROUNDS=${ROUNDS:-1}
    WARMUP=${WARMUP:-0}
    BIG=${BIG:-64M}
    MULTI_SESSIONS=${MULTI_SESSIONS:-8}
    MULTI_SIZE=${MULTI_SIZE:-4M}
    SMALL_COUNT=${SMALL_COUNT:-100}
    IDLE_SESSIONS=${IDLE_SESSIONS:-300}
    IDLE_FORKED=${IDLE_FORKED:-100}
    LOGIN_SECS=${LOGIN_SECS:-1}
    IDLE_HOLD=${IDLE_HOLD:-1}
    IPERF_SECS=${IPERF_SECS:-1}
    SWEEP=${SWEEP:-"1 16"}
    SWEEP_SECS=${SWEEP_SECS:-1}
    # A smoke run does not overwrite the committed results.
    NO_COMMIT_FILES=${NO_COMMIT_FILES:-1}
else
    ROUNDS=${ROUNDS:-5}
    WARMUP=${WARMUP:-1}
    BIG=${BIG:-1G}
    MULTI_SESSIONS=${MULTI_SESSIONS:-64}
    MULTI_SIZE=${MULTI_SIZE:-16M}
    SMALL_COUNT=${SMALL_COUNT:-1000}
    IDLE_SESSIONS=${IDLE_SESSIONS:-10000}
    # Fork-per-session servers (vsftpd: 2 processes per session, proftpd and pure-ftpd: 1-2)
    # hold fewer sessions: 10,000 would be 10-20 k processes and several GiB on a shared box;
    # the figure reported is per session either way.
    IDLE_FORKED=${IDLE_FORKED:-2000}
    LOGIN_SECS=${LOGIN_SECS:-4}
    IDLE_HOLD=${IDLE_HOLD:-3}
    IPERF_SECS=${IPERF_SECS:-3}
    SWEEP=${SWEEP:-"1 16 128 512"}
    SWEEP_SECS=${SWEEP_SECS:-4}
fi
SWEEP_SIZE=${SWEEP_SIZE:-16M}
LOGIN_SESSIONS=32
ENGINE=${ENGINE:-both}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET/compare
LOGS=$OUT/logs
BENCH_TIMEOUT=30 # ringftp-bench --timeout: any single wait
RUN_LIMIT=600    # wall-clock limit of one client run
IPERF_PORT=21219
LOG_TAG=compare
USER_NAME=bench
USER_PASS=bench
# shellcheck source=peers/harness.sh
source "$ROOT/benches/peers/harness.sh"

# finish ELAPSED: the tables from $OUT/raw.tsv, $OUT/meta.json and $OUT/header.md, printed and
# (unless NO_COMMIT_FILES=1) copied to benches/. REPORT_ONLY=1 runs just this, e.g. for the
# rounds a stopped run completed.
finish() {
    local date
    date=$(cat "$OUT/date")
    python3 "$ROOT/benches/peers/stats.py" report "$OUT/raw.tsv" "$OUT/meta.json" "$OUT/tables.md" >/dev/null
    {
        cat "$OUT/header.md"
        echo "- Run time: $1; load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
        echo "- Raw per-round numbers: [compare-raw/$date.tsv](compare-raw/$date.tsv)."
        echo
        cat "$OUT/tables.md"
    } >"$OUT/results.md"
    publish compare-results.md "$date.tsv"
}
if [[ ${REPORT_ONLY:-0} == 1 ]]; then
    finish "${REPORT_ELAPSED:-stopped early; see the rounds in the raw file}"
    exit 0
fi

[[ $(id -u) == 0 ]] || die "run as root (installs packages, adds user bench, raises limits)"
START_DATE=$(date -u +%Y-%m-%dT%H%MZ)
COMMAND="$(env | { grep -E '^(ROUNDS|QUICK|ENGINE|SERVERS|BIG|IDLE_SESSIONS|IDLE_FORKED)=' || true; } | sort | tr '\n' ' ')benches/compare.sh $*"

# ---- tools ---------------------------------------------------------------------------------
# shellcheck source=peers/setup.sh
source "$ROOT/benches/peers/setup.sh"
# shellcheck source=peers/servers.sh
source "$ROOT/benches/peers/servers.sh"

if [[ -z ${RINGFTPD:-} || -z ${BENCH:-} ]]; then
    log "building ringftpd and ringftp-bench (release)"
    (cd "$ROOT" && cargo build --release --bin ringftpd --bin ringftp-bench)
fi
RINGFTPD=${RINGFTPD:-$TARGET/release/ringftpd}
BENCH=${BENCH:-$TARGET/release/ringftp-bench}
[[ -x $RINGFTPD && -x $BENCH ]] || die "missing $RINGFTPD or $BENCH"

ringftpd_columns
DEFAULT_SERVERS="$OURS vsftpd pure-ftpd proftpd pyftpdlib"
SERVER_LIST=()
for s in ${SERVERS:-$DEFAULT_SERVERS}; do
    if [[ $s == ringftpd ]]; then
        read -r -a ours <<<"$OURS"
        SERVER_LIST+=("${ours[@]}")
    else
        SERVER_LIST+=("$s")
    fi
done
SERVERS="${SERVER_LIST[*]}"

# Control port and passive range per server (loopback only).
declare -A PORT=() PASV=() PID=() RESTARTS=()
i=0
for s in ringftpd ringftpd-uring ringftpd-epoll vsftpd pure-ftpd proftpd pyftpdlib; do
    PORT[$s]=$((21210 + i))
    # Below the ephemeral range (32768-60999 here), where other jobs' test servers listen.
    PASV[$s]=$((22000 + 1000 * i))-$((22999 + 1000 * i))
    RESTARTS[$s]=0
    i=$((i + 1))
done

raise_limits

mkdir -p "$OUT" "$LOGS"
WORK=$(mktemp -d /tmp/ringftp-compare.XXXXXX)
DATA=$(mktemp -d /dev/shm/ringftp-compare.XXXXXX)
RAW=$OUT/raw.tsv
rm -f "$LOGS"/*.log

trap cleanup EXIT INT TERM
PS header >"$RAW"

# ---- data ----------------------------------------------------------------------------------
log "data in $DATA (tmpfs): $BIG file, $MULTI_SIZE and $SWEEP_SIZE files, $SMALL_COUNT x 4 KiB files, upload dir"
chmod 755 "$DATA"
head -c "$BIG" /dev/urandom >"$DATA/big.bin"
head -c "$MULTI_SIZE" /dev/urandom >"$DATA/multi.bin"
head -c "$SWEEP_SIZE" /dev/urandom >"$DATA/sweep.bin"
mkdir "$DATA/small" "$DATA/up"
python3 - "$DATA/small" "$SMALL_COUNT" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, f"f{i:06d}.bin"), "wb") as f:
        f.write(os.urandom(4096))
PY
use_user
# The curl URL list for the small-files row (nocwd: one RETR small/NAME per file).
: >"$WORK/small.urls"

# ---- servers -------------------------------------------------------------------------------
cp "$RINGFTPD" "$WORK/ringftp-server"
RINGFTPD_ARGS=()
CURL_ARGS=()

bench() { timeout "$RUN_LIMIT" "$BENCH" --host 127.0.0.1 --timeout "$BENCH_TIMEOUT" "$@"; }
server_answers() { bench --port "${PORT[$1]}" --user "$USER_NAME" --pass "$USER_PASS" --timeout 2 login >/dev/null 2>&1; }

start_servers

# Which data-connection commands curl really sent (it falls back from EPSV to PASV and from
# EPRT to PORT by itself): checked once per server, reported with the results.
CURL_CHECK=""
for s in "${SERVER_LIST[@]}"; do
    u=$(url "$s" small/f000000.bin)
    e=$(curl_ -sv -o /dev/null "$u" 2>&1 | grep -Eo '^> (EPSV|PASV)' | tr -d '> ' | sort -u | tr '\n' '+') || true
    p=$(curl_ -sv -o /dev/null -P 127.0.0.1 "$u" 2>&1 | grep -Eo '^> (EPRT|PORT)' | tr -d '> ' | sort -u | tr '\n' '+') || true
    CURL_CHECK+="$s: ${e%+} / ${p%+}; "
done
log "curl data commands (EPSV row / EPRT row): $CURL_CHECK"
for ((k = 0; k < SMALL_COUNT; k++)); do
    printf 'url = "ftp://bench:bench@127.0.0.1:PORT/small/f%06d.bin"\noutput = "/dev/null"\n' "$k"
done >"$WORK/small.urls.tmpl"

# ---- measurements --------------------------------------------------------------------------
# bench_run ROUND SERVER ROW CLIENT UNIT BENCH-ARGS...: one ringftp-bench run.
bench_run() {
    local rnd=$1 s=$2 row=$3 client=$4 unit=$5 rc=0
    shift 5
    cpu_begin "$s"
    bench --port "${PORT[$s]}" --json "$@" >"$WORK/bench.json" 2>"$WORK/bench.err" || rc=$?
    cpu_end "$s"
    PS bench "$rnd" "$s" "$row" "$client" "$unit" "$CPU0" "$CPU1" "$rc" "$WORK/bench.json" \
        "$( ((rc > 1)) && head -c 200 "$WORK/bench.err")" "$CLIENT_CPU" >>"$RAW"
    summary "$rnd" "$s" "$row" "$client"
}

# curl_small ROUND SERVER: SMALL_COUNT files in one invocation; files/s over the wall time,
# with the number of connections curl made (1 = it reused the control connection).
curl_small() {
    local rnd=$1 s=$2 rc=0 t0 t1 out files conns
    sed "s/:PORT\//:${PORT[$s]}\//" "$WORK/small.urls.tmpl" >"$WORK/small.urls"
    cpu_begin "$s"
    t0=$(now)
    out=$(curl_ -sS --ftp-method nocwd -w '%{num_connects}\n' -K "$WORK/small.urls" 2>"$WORK/curl.err") || rc=$?
    t1=$(now)
    cpu_end "$s"
    files=$(grep -c . <<<"$out" || true)
    # num_connects counts the data connections too: control connections = total - files.
    conns=$(awk '{ n += $1 } END { print n + 0 }' <<<"$out")
    conns=$((conns - files))
    local value wall
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    value=$(awk -v n="$files" -v w="$wall" 'BEGIN { if (w > 0 && n > 0) printf "%.1f", n / w }')
    PS line "$rnd" "$s" small "$CURL_CLIENT" files/s "$value" "$CPU0" "$CPU1" $((files * 4096)) "$files" \
        $((SMALL_COUNT - files + (rc != 0))) "$wall" "control connections $conns$( ((rc != 0)) && echo "; exit $rc: $(head -c 200 "$WORK/curl.err")")" \
        "$CLIENT_CPU" >>"$RAW"
    summary "$rnd" "$s" small "$CURL_CLIENT (control connections $conns)"
}

# curl_multi ROUND SERVER: MULTI_SESSIONS curl processes at once, one file each; MB/s over
# the wall time until the last one is done.
curl_multi() {
    local rnd=$1 s=$2 t0 t1 pids=() fails=0 bytes=0 k
    cpu_begin "$s"
    t0=$(now)
    for ((k = 0; k < MULTI_SESSIONS; k++)); do
        curl_ -sS -o /dev/null -w '%{size_download}\n' "$(url "$s" multi.bin)" >"$WORK/multi.$k" 2>&1 &
        pids+=($!)
    done
    for k in "${!pids[@]}"; do
        wait "${pids[$k]}" || fails=$((fails + 1))
    done
    t1=$(now)
    cpu_end "$s"
    for ((k = 0; k < MULTI_SESSIONS; k++)); do
        bytes=$((bytes + $(grep -Eo '^[0-9]+' "$WORK/multi.$k" | tail -1 || echo 0)))
    done
    local wall value
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    value=$(awk -v n="$bytes" -v w="$wall" 'BEGIN { if (w > 0 && n > 0) printf "%.1f", n / w / 1e6 }')
    PS line "$rnd" "$s" multi "$CURL_CLIENT" MB/s "$value" "$CPU0" "$CPU1" "$bytes" "$MULTI_SESSIONS" \
        "$fails" "$wall" "" "$CLIENT_CPU" >>"$RAW"
    summary "$rnd" "$s" multi "$CURL_CLIENT"
}

# idle ROUND SERVER: hold N logged-in anonymous sessions on a freshly started server, and take
# the PSS of its tree before and while they are held. Anonymous, so that the login check
# (yescrypt for vsftpd: ~45 logins/s here) does not decide how long the row takes.
idle() {
    local rnd=$1 s=$2 rc=0 base hold=0 n=$IDLE_SESSIONS
    case $s in vsftpd | pure-ftpd | proftpd) n=$IDLE_FORKED ;; esac
    restart "$s"
    rm -f "$WORK/ready"
    base=$(PS pss "${PID[$s]}")
    cpu_begin "$s"
    bench --port "${PORT[$s]}" --json --user anonymous --pass bench@ --sessions "$n" \
        --connect-concurrency 16 --duration "$IDLE_HOLD" idle --noop-interval 60 --ready-file "$WORK/ready" \
        >"$WORK/bench.json" 2>"$WORK/bench.err" &
    CLIENT_PID=$!
    while [[ ! -s $WORK/ready ]] && kill -0 "$CLIENT_PID" 2>/dev/null; do sleep 0.2; done
    [[ -s $WORK/ready ]] && hold=$(PS pss "${PID[$s]}")
    wait "$CLIENT_PID" || rc=$?
    CLIENT_PID=
    cpu_end "$s"
    local held per
    held=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("held", 0))' "$WORK/bench.json" 2>/dev/null || echo 0)
    per=$(awk -v a="$base" -v b="$hold" -v n="$held" 'BEGIN { if (n > 0 && b > 0) printf "%.2f", (b - a) / n }')
    PS line "$rnd" "$s" idle bench KiB/session "$per" "$CPU0" "$CPU1" 0 "$held" "$((rc != 0 || held < n))" "" \
        "sessions $n, held $held, PSS base ${base} KiB, held ${hold} KiB" >>"$RAW"
    summary "$rnd" "$s" idle "bench ($held of $n held)"
    sleep 1
}

iperf() {
    local rnd=$1 rc=0 v
    iperf3 -s -1 -B 127.0.0.1 -p "$IPERF_PORT" >/dev/null 2>&1 &
    CLIENT_PID=$!
    sleep 0.3
    timeout 60 iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t "$IPERF_SECS" -J >"$WORK/iperf.json" 2>/dev/null || rc=$?
    wait "$CLIENT_PID" 2>/dev/null || true
    CLIENT_PID=
    v=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 8e6, 1))' "$WORK/iperf.json" 2>/dev/null || true)
    PS line "$rnd" loopback iperf3 iperf3 MB/s "$v" 0 0 0 0 "$((rc != 0))" "$IPERF_SECS" "" >>"$RAW"
    summary "$rnd" loopback iperf3 ""
}

# The report's layout, written first so a partial run can be reported too:
#   python3 benches/peers/stats.py report target/compare/raw.tsv target/compare/meta.json OUT.md
python3 - "$OUT/meta.json" <<PY
import json, sys
big, multi = "$BIG", "$MULTI_SIZE"
rows = [
    ["retr-epsv", f"RETR {big}, EPSV (MB/s)", True, ["$CURL_CLIENT", "bench-buffer", "bench-null"]],
    ["retr-eprt", f"RETR {big}, EPRT (MB/s)", True, ["$CURL_CLIENT", "bench-buffer", "bench-null"]],
    ["stor", f"STOR {big} (MB/s)", True, ["$CURL_CLIENT", "bench"]],
    ["small", "$SMALL_COUNT × 4 KiB over one control connection (files/s)", True, ["$CURL_CLIENT", "bench"]],
    ["multi", f"$MULTI_SESSIONS clients × {multi} at once (MB/s)", True, ["$CURL_CLIENT", "bench-buffer", "bench-null"]],
    ["login-pass", "connect + login + QUIT, $LOGIN_SESSIONS clients, password (/s)", True, ["bench"]],
    ["login-anon", "connect + login + QUIT, $LOGIN_SESSIONS clients, anonymous (/s)", True, ["bench"]],
    ["idle", "idle logged-in sessions, PSS per session (KiB; $IDLE_SESSIONS sessions, $IDLE_FORKED for forking servers)", False, ["bench"]],
]
json.dump({"servers": "$SERVERS".split(), "rounds": $ROUNDS, "warmup": $WARMUP, "rows": rows,
           "sweep": "$SWEEP".split(), "sweep_size": "$SWEEP_SIZE", "sweep_secs": "$SWEEP_SECS"},
          open(sys.argv[1], "w"))
PY
machine=$(machine_desc)
versions="ringftpd $("$RINGFTPD" --version | awk '{print $2}') ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')), $PEER_VERSIONS"
echo "$START_DATE" >"$OUT/date"
{
    echo "# Benchmark results"
    echo
    echo "Recorded $START_DATE with \`$COMMAND\`."
    echo
    echo "- Machine: $machine. Client and servers share the same cores on loopback; tmpfs data."
    echo "  A shared machine: other jobs' compiles are noise (the load average of every round is in"
    echo "  the raw file and summarised below)."
    echo "- Versions: $versions."
    echo "- curl sent (EPSV row / EPRT row): $CURL_CHECK"
    echo "- Clients: \`$CURL_CLIENT\` reads into a buffer and writes to /dev/null; \`bench, buffer\` is"
    echo "  ringftp-bench --sink buffer (reads into a buffer, like curl); \`bench, null\` splices to"
    echo "  /dev/null (the client never copies a byte). Ratios are each ringftpd column over the best"
    echo "  of the four peers for that row and client."
    echo "- Password logins measure each server's password check: PAM/yescrypt (vsftpd), crypt from"
    echo "  /etc/shadow (pure-ftpd, proftpd), a plain string compare (pyftpdlib), argon2id (ringftpd)."
} >"$OUT/header.md"

rw=(--user bench --pass bench)
start_time=$SECONDS
first=$((1 - WARMUP))
for ((rnd = first; rnd <= ROUNDS; rnd++)); do
    round_start "$rnd" "$([[ $rnd == 0 ]] && echo ' (warm-up, not reported)')"
    iperf "$rnd"
    for s in "${ORDER[@]}"; do
        curl_get "$rnd" "$s" retr-epsv
        bench_run "$rnd" "$s" retr-epsv bench-buffer MB/s "${rw[@]}" --sink buffer --mode epsv retr --path big.bin
        bench_run "$rnd" "$s" retr-epsv bench-null MB/s "${rw[@]}" --sink null --mode epsv retr --path big.bin
    done
    for s in "${ORDER[@]}"; do
        curl_get "$rnd" "$s" retr-eprt -P 127.0.0.1
        bench_run "$rnd" "$s" retr-eprt bench-buffer MB/s "${rw[@]}" --sink buffer --mode eprt retr --path big.bin
        bench_run "$rnd" "$s" retr-eprt bench-null MB/s "${rw[@]}" --sink null --mode eprt retr --path big.bin
    done
    for s in "${ORDER[@]}"; do
        curl_put "$rnd" "$s"
        bench_run "$rnd" "$s" stor bench MB/s "${rw[@]}" --mode epsv stor --size "$BIG" --dir up --cleanup
    done
    for s in "${ORDER[@]}"; do
        curl_small "$rnd" "$s"
        bench_run "$rnd" "$s" small bench files/s "${rw[@]}" small --dir small --count "$SMALL_COUNT"
    done
    for s in "${ORDER[@]}"; do
        curl_multi "$rnd" "$s"
        bench_run "$rnd" "$s" multi bench-buffer MB/s "${rw[@]}" --sink buffer --sessions "$MULTI_SESSIONS" retr --path multi.bin
        bench_run "$rnd" "$s" multi bench-null MB/s "${rw[@]}" --sink null --sessions "$MULTI_SESSIONS" retr --path multi.bin
    done
    for s in "${ORDER[@]}"; do
        bench_run "$rnd" "$s" login-pass bench logins/s "${rw[@]}" --sessions "$LOGIN_SESSIONS" --duration "$LOGIN_SECS" login
        bench_run "$rnd" "$s" login-anon bench logins/s --user anonymous --pass bench@ --sessions "$LOGIN_SESSIONS" --duration "$LOGIN_SECS" login
    done
    for sessions in $SWEEP; do
        for s in "${ORDER[@]}"; do
            bench_run "$rnd" "$s" "sweep-$sessions" bench-buffer MB/s "${rw[@]}" --sink buffer \
                --sessions "$sessions" --connect-concurrency 32 --duration "$SWEEP_SECS" retr --path sweep.bin
        done
    done
    for s in "${ORDER[@]}"; do idle "$rnd" "$s"; done
    round_end "$rnd"
done
elapsed=$((SECONDS - start_time))

# ---- report --------------------------------------------------------------------------------
finish "$elapsed s"
log "done in $elapsed s"
