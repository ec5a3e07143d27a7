# Sourced by benches/compare.sh and benches/tls-compare.sh: the benchmark harness both share.
# Starting servers and waiting until they answer, restarting one that died, stopping a process
# tree, reading a server's CPU time around a measurement, the curl download and upload rows,
# the rotated server order of a round, and the bench user. Only definitions: sourcing it runs
# nothing.
#
# The script sets, before it calls these: LOG_TAG; ROOT, OUT, WORK, DATA, LOGS, RAW; the arrays
# PORT, PASV, PID and RESTARTS (by server) and SERVER_LIST; ROUNDS; USER_NAME and USER_PASS;
# RUN_LIMIT (the wall-clock limit of one client run); CURL (a command array), CURL_ARGS (its
# extra flags) and CURL_CLIENT (the client's name in the raw file); and `server_answers SERVER`,
# which succeeds once SERVER takes a login. Optional: EXPECT_BYTES (a curl row that moved
# another size is an error), SUMMARY_FIELDS (the raw columns a measurement's log line shows).

log() { printf '[%s %(%H:%M:%S)T] %s\n' "$LOG_TAG" -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

PS() { python3 "$ROOT/benches/peers/stats.py" "$@"; }

apt_updated=0
apt_update_once() {
    [[ $apt_updated == 1 ]] && return
    log "apt-get update"
    apt-get update -qq || log "warning: apt-get update failed"
    apt_updated=1
}
need_apt() { # COMMAND PACKAGE
    command -v "$1" >/dev/null && return
    apt_update_once
    log "installing $2"
    # Another job may hold the dpkg lock for a while: wait for it (bounded).
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$2" >/dev/null
}

# have_curl8: whether curl 8 is unpacked under $PEERS/curl8 (by peers/setup.sh) and runs; then
# CURL runs it.
have_curl8() {
    local lib=$PEERS/curl8/usr/lib/x86_64-linux-gnu
    [[ -x $PEERS/curl8/usr/bin/curl ]] || return 1
    LD_LIBRARY_PATH=$lib "$PEERS/curl8/usr/bin/curl" --version >/dev/null 2>&1 || return 1
    CURL=(env "LD_LIBRARY_PATH=$lib" "$PEERS/curl8/usr/bin/curl")
}

# ringftpd_columns: OURS, ringftpd's columns. With the --engine flag and ENGINE=both, one per
# engine.
ringftpd_columns() {
    if "$RINGFTPD" --help 2>/dev/null | grep -q -- --engine; then
        case $ENGINE in
        both) OURS="ringftpd-uring ringftpd-epoll" ;;
        uring | epoll) OURS="ringftpd-$ENGINE" ;;
        *) die "ENGINE must be uring, epoll or both" ;;
        esac
    else
        [[ $ENGINE == both ]] || log "note: ringftpd has no --engine flag; ENGINE=$ENGINE ignored"
        OURS=ringftpd
    fi
}

# Every session is a socket on both sides; fork-per-session servers are processes too.
raise_limits() {
    ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    ulimit -u unlimited 2>/dev/null || true
    log "open files limit $(ulimit -n), pid_max $(cat /proc/sys/kernel/pid_max)"
}

# use_user: USER_NAME (made if missing) gets the password USER_PASS and $DATA as its home, and
# may write to $DATA/up; restore_user undoes it.
created_user=0
old_home=
use_user() {
    if ! id "$USER_NAME" >/dev/null 2>&1; then
        useradd -M -d "$DATA" -s /bin/bash "$USER_NAME"
        created_user=1
    else
        old_home=$(getent passwd "$USER_NAME" | cut -d: -f6)
        usermod -d "$DATA" "$USER_NAME"
    fi
    echo "$USER_NAME:$USER_PASS" | chpasswd
    chown "$USER_NAME" "$DATA/up"
}
restore_user() {
    if [[ $created_user == 1 ]]; then
        userdel "$USER_NAME" 2>/dev/null || true
    elif [[ -n $old_home ]]; then
        usermod -d "$old_home" "$USER_NAME" 2>/dev/null || true
    fi
}

# cleanup, the EXIT trap: stops every server (by pid, with its process tree) and the client
# running in the background (CLIENT_PID), keeps the server logs of a failed run under $OUT when
# they were in $WORK, removes the data and work directories and puts the user back.
cleanup() {
    local rc=$? s
    trap - EXIT INT TERM
    for s in "${!PID[@]}"; do
        stop_tree "${PID[$s]}"
    done
    if [[ -n ${CLIENT_PID:-} ]]; then kill "$CLIENT_PID" 2>/dev/null || true; fi
    if ((rc != 0)) && [[ $LOGS == "$WORK"/* ]]; then cp -r "$LOGS" "$OUT/" 2>/dev/null || true; fi
    rm -rf "$DATA" "$WORK"
    restore_user
    exit "$rc"
}

# stop_tree PID: TERM to the process and all its descendants, KILL to whatever is left after
# 5 s (a forking server's session processes may outlive it), then reap it.
stop_tree() {
    local pids
    pids=$(PS tree "$1" 2>/dev/null) || return 0
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# listening_in LO HI: the TCP ports from LO to HI that something listens on.
listening_in() {
    ss -Hltn | awk -v lo="$1" -v hi="$2" '{ n = split($4, a, ":"); p = a[n] + 0; if (p >= lo && p <= hi) print p }'
}

# start_and_wait SERVER: start_SERVER (peers/servers.sh), then wait (10 s at most) until it
# takes a login.
start_and_wait() {
    local s=$1 ok=0
    "start_$s"
    for _ in $(seq 40); do
        if server_answers "$s"; then
            ok=1
            break
        fi
        kill -0 "${PID[$s]}" 2>/dev/null || break
        sleep 0.25
    done
    [[ $ok == 1 ]] || {
        tail -5 "$LOGS/$s.log" >&2
        die "$s did not start"
    }
    log "$s up on 127.0.0.1:${PORT[$s]} (pid ${PID[$s]}, passive ${PASV[$s]})"
}

# ensure_up SERVER: starts it again if it died (counted in RESTARTS).
ensure_up() {
    kill -0 "${PID[$1]}" 2>/dev/null && return
    log "warning: $1 (pid ${PID[$1]}) is gone; last log lines: $(tail -3 "$LOGS/$1.log" | tr '\n' ' ')"
    RESTARTS[$1]=$((RESTARTS[$1] + 1))
    stop_tree "${PID[$1]}"
    start_and_wait "$1"
}

# restart SERVER: a fresh process (for the memory rows).
restart() {
    ensure_up "$1"
    stop_tree "${PID[$1]}"
    start_and_wait "$1"
}

# start_servers: every server of SERVER_LIST, on free control ports.
start_servers() {
    local s busy
    for s in "${SERVER_LIST[@]}"; do
        # A leftover server would share ringftpd's port silently (SO_REUSEPORT) and answer half
        # the connections: the control port must be free. A busy passive port only narrows the
        # range.
        busy=$(listening_in "${PORT[$s]}" "${PORT[$s]}")
        [[ -z $busy ]] || die "port ${PORT[$s]} for $s is in use (stop that server first)"
        busy=$(listening_in "$(range_lo "${PASV[$s]}")" "$(range_hi "${PASV[$s]}")")
        [[ -z $busy ]] || log "note: passive ports of $s in use by others: $(echo "$busy" | tr '\n' ' ')"
        start_and_wait "$s"
    done
}

# cpu_begin SERVER: makes sure it is up, then notes its process count (CPU_N0) and the CPU
# time of its tree (CPU0). cpu_end SERVER [WAIT]: the tree's CPU time (CPU1) once it is back to
# CPU_N0 processes, waiting at most WAIT s (10): a forking server's session processes count
# only once they have exited and been reaped. Between the two, the client's CPU time
# (CLIENT_CPU, seconds): the client's half of the cost table, which shows when the client, not
# the server, sets a row's pace.
cpu_begin() {
    ensure_up "$1"
    CPU_N0=$(PS count "${PID[$1]}")
    CPU0=$(PS cpu "${PID[$1]}")
    children_cpu
    CLIENT_CPU0=$CHILDREN_CPU
}
cpu_end() {
    children_cpu
    CLIENT_CPU=$(awk -v a="$CLIENT_CPU0" -v b="$CHILDREN_CPU" 'BEGIN { printf "%.3f", b - a }')
    CPU1=$(PS settle "${PID[$1]}" "$CPU_N0" "${2:-10}")
}
# children_cpu: CHILDREN_CPU, the CPU seconds (user + system) of this shell's waited-for
# children so far, from bash's `times` run in this shell (in a subshell it would count only
# that subshell's children). The client runs between two readings, and nothing else but
# `timeout` around it and one awk.
children_cpu() {
    times >"$WORK/times"
    CHILDREN_CPU=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, t, "m"); s += t[1] * 60 + t[2] } printf "%.3f", s }' "$WORK/times")
}

now() { date +%s.%N; }
# summary ROUND SERVER ROW [CLIENT]: the last raw line, logged.
summary() { log "round $1 $2 $3${4:+ $4}: $(tail -1 "$RAW" | cut -f"${SUMMARY_FIELDS:-5,6,7,10}" | tr '\t' ' ')"; }

# machine_desc: cores, CPU model, memory and kernel, for the report.
machine_desc() {
    echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r)"
}

# round_start ROUND [NOTE]: ORDER, this round's server order (SERVER_LIST rotated by ROUND, so
# drift on a shared machine spreads over every server), logged with the load average, which
# also goes into the raw file. round_end ROUND: the restarts so far, logged.
round_start() {
    local n=${#SERVER_LIST[@]} k
    ORDER=()
    for ((k = 0; k < n; k++)); do ORDER+=("${SERVER_LIST[$(((k + $1) % n))]}"); done
    log "round $1 of $ROUNDS${2:-}: ${ORDER[*]}; load $(cut -d' ' -f1-3 /proc/loadavg)"
    PS line "$1" machine load load load "$(cut -d' ' -f1 /proc/loadavg)" 0 0 0 0 0 "" "1-minute load average" >>"$RAW"
}
round_end() {
    local s
    for s in "${SERVER_LIST[@]}"; do
        if ((RESTARTS[$s] > 0)); then log "note: $s restarted ${RESTARTS[$s]}× so far (see its log)"; fi
    done
    log "round $1 done after $((SECONDS - start_time)) s"
}

# ---- curl rows -----------------------------------------------------------------------------
url() { echo "ftp://$USER_NAME:$USER_PASS@127.0.0.1:${PORT[$1]}/$2"; } # SERVER PATH
curl_() { timeout "$RUN_LIMIT" "${CURL[@]}" "${CURL_ARGS[@]}" --connect-timeout 10 --max-time "$RUN_LIMIT" "$@"; }

# curl_get ROUND SERVER ROW EXTRA-ARGS...: one download of big.bin to /dev/null; MB/s from
# curl's own figures (size_download / time_total).
curl_get() {
    local rnd=$1 s=$2 row=$3 rc=0 out
    shift 3
    cpu_begin "$s"
    out=$(curl_ -sS -o /dev/null -w '%{size_download} %{time_total}' "$@" "$(url "$s" big.bin)" 2>"$WORK/curl.err") || rc=$?
    cpu_end "$s"
    curl_line "$rnd" "$s" "$row" "$CPU0" "$CPU1" "$rc" "$out"
}

# curl_put ROUND SERVER: one upload of big.bin as up/curl.bin (row stor).
curl_put() {
    local rnd=$1 s=$2 rc=0 out got note=""
    rm -f "$DATA/up/curl.bin"
    cpu_begin "$s"
    out=$(curl_ -sS -T "$DATA/big.bin" -w '%{size_upload} %{time_total}' "$(url "$s" up/curl.bin)" 2>"$WORK/curl.err") || rc=$?
    cpu_end "$s"
    if [[ -n ${EXPECT_BYTES:-} ]]; then
        got=$(stat -c %s "$DATA/up/curl.bin" 2>/dev/null || echo 0)
        ((got == EXPECT_BYTES)) || note="stored $got bytes; "
    fi
    rm -f "$DATA/up/curl.bin"
    curl_line "$rnd" "$s" stor "$CPU0" "$CPU1" "$rc" "$out" "$note"
}

curl_line() { # ROUND SERVER ROW CPU0 CPU1 RC "BYTES SECONDS" [NOTE]
    local bytes secs value note=${8:-} bad
    read -r bytes secs <<<"${7:-0 0}"
    value=$(awk -v b="$bytes" -v t="$secs" 'BEGIN { if (t > 0 && b > 0) printf "%.2f", b / t / 1e6 }')
    bad=$(($6 != 0))
    if [[ -n ${EXPECT_BYTES:-} ]] && ((bytes != EXPECT_BYTES)); then bad=1; fi
    if (($6 != 0)); then note+="exit $6: $(head -c 200 "$WORK/curl.err")"; fi
    PS line "$1" "$2" "$3" "$CURL_CLIENT" MB/s "$value" "$4" "$5" "$bytes" 1 "$bad" "$secs" "$note" "$CLIENT_CPU" >>"$RAW"
    summary "$1" "$2" "$3" "$CURL_CLIENT"
}

# publish RESULTS RAW-NAME: prints $OUT/results.md and, unless NO_COMMIT_FILES=1, copies it to
# benches/RESULTS and $OUT/raw.tsv to benches/compare-raw/RAW-NAME.
publish() {
    cat "$OUT/results.md"
    if [[ ${NO_COMMIT_FILES:-0} != 1 ]]; then
        mkdir -p "$ROOT/benches/compare-raw"
        cp "$OUT/raw.tsv" "$ROOT/benches/compare-raw/$2"
        cp "$OUT/results.md" "$ROOT/benches/$1"
        log "results: benches/$1, benches/compare-raw/$2"
    fi
}
