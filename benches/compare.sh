#!/usr/bin/env bash
# ringftpd against vsftpd and pyftpdlib on loopback, with the same ringftp-bench workloads.
#
# The servers run side by side on distinct ports with equal, non-overlapping passive ranges,
# on a tmpfs data directory, and each round runs every workload against every server in turn
# (interleaved, so drift on a shared machine spreads over all of them). Round 0 is a warm-up
# and is not reported. For each workload and server: the median and min..max over the rounds,
# the server's CPU time (utime+stime of its process tree, reaped children included) per GB or
# per operation, and its peak RSS (VmRSS summed over the tree: vsftpd forks per session, so
# shared pages count once per process; PSS is reported beside it for the idle test).
#
# Usage (as root: installs packages, adds a local user `bench`, raises limits):
#   benches/compare.sh                 # ROUNDS=5 after a warm-up round, full sizes (~10 min)
#   QUICK=1 benches/compare.sh         # small sizes, 1 round: a smoke run (~2 min)
# Knobs: ROUNDS, QUICK, OUT (results dir), SERVERS ("ringftpd vsftpd pyftpdlib"),
#   IDLE_SESSIONS, RINGFTPD / BENCH (prebuilt binaries instead of building), KEEP=1 (keep data).
# Results: $OUT/results.md (Markdown table for the README), $OUT/results.json, $OUT/raw.jsonl.
#
# RETR 1G runs with the client reading the data in (`--sink buffer`, as curl or lftp do) and
# with it splicing the data to /dev/null (`--sink null`: the client never copies a byte). On
# loopback the second favours a sender that never pauses between chunks, such as one
# sendfile(2) call per file: the receiver then never sleeps and the sender never wakes it.
#
# The idle test restarts each server first, so its memory is a fresh server's plus the
# sessions' (peers that keep freed memory would otherwise hide the per-session cost).
#
# Safety: everything listens on 127.0.0.1 only; every bench run has --timeout and is under
# `timeout`; the trap stops every server (by pid, with its process tree) and removes the data.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    ROUNDS=${ROUNDS:-1}
    BIG=${BIG:-64M}
    MULTI_SESSIONS=${MULTI_SESSIONS:-8}
    MULTI_SIZE=${MULTI_SIZE:-4M}
    SMALL_COUNT=${SMALL_COUNT:-100}
    IDLE_SESSIONS=${IDLE_SESSIONS:-300}
    LOGIN_SECS=${LOGIN_SECS:-1}
    IDLE_HOLD=${IDLE_HOLD:-2}
    IPERF_SECS=${IPERF_SECS:-1}
else
    ROUNDS=${ROUNDS:-5}
    BIG=${BIG:-1G}
    MULTI_SESSIONS=${MULTI_SESSIONS:-64}
    MULTI_SIZE=${MULTI_SIZE:-16M}
    SMALL_COUNT=${SMALL_COUNT:-1000}
    IDLE_SESSIONS=${IDLE_SESSIONS:-10000}
    LOGIN_SECS=${LOGIN_SECS:-5}
    IDLE_HOLD=${IDLE_HOLD:-5}
    IPERF_SECS=${IPERF_SECS:-3}
fi
SMALL_SIZE=4K
LOGIN_SESSIONS=32
SERVERS=${SERVERS:-"ringftpd vsftpd pyftpdlib"}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$TARGET/compare}
BENCH_TIMEOUT=30        # ringftp-bench --timeout: any single wait
RUN_LIMIT=900           # wall-clock limit of one bench run

# Control port and passive range per server (loopback only).
declare -A PORT=([ringftpd]=21210 [vsftpd]=21211 [pyftpdlib]=21212)
declare -A PASV=([ringftpd]=40000-40999 [vsftpd]=41000-41999 [pyftpdlib]=42000-42999)
IPERF_PORT=21219
declare -A PID=()
declare -A RESTARTS=([ringftpd]=0 [vsftpd]=0 [pyftpdlib]=0)

log() { printf '[compare %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (installs packages, adds user bench, raises limits)"

# ---- tools ---------------------------------------------------------------------------------
apt_updated=0
need_apt() {
    command -v "$1" >/dev/null && return
    if [[ $apt_updated == 0 ]]; then
        log "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
    log "installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need_apt vsftpd vsftpd
need_apt iperf3 iperf3
command -v python3 >/dev/null || need_apt python3 python3
if ! python3 -c 'import pyftpdlib' 2>/dev/null; then
    log "installing pyftpdlib"
    python3 -m pip install -q pyftpdlib 2>/dev/null ||
        python3 -m pip install -q --break-system-packages pyftpdlib
fi

if [[ -z ${RINGFTPD:-} || -z ${BENCH:-} ]]; then
    log "building ringftpd and ringftp-bench (release)"
    (cd "$ROOT" && cargo build --release --bin ringftpd --bin ringftp-bench)
fi
RINGFTPD=${RINGFTPD:-$TARGET/release/ringftpd}
BENCH=${BENCH:-$TARGET/release/ringftp-bench}
[[ -x $RINGFTPD && -x $BENCH ]] || die "missing $RINGFTPD or $BENCH"

# Every session is a socket on both sides; vsftpd is two processes per session.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "open files limit $(ulimit -n), pid_max $(cat /proc/sys/kernel/pid_max)"

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/ringftp-compare.XXXXXX)
DATA=$(mktemp -d /dev/shm/ringftp-compare.XXXXXX)
: >"$OUT/raw.jsonl"
rm -f "$OUT"/{ringftpd,vsftpd,pyftpdlib}.log

created_user=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for s in "${!PID[@]}"; do
        stop_tree "${PID[$s]}"
    done
    [[ -n ${IPERF_PID:-} ]] && kill "$IPERF_PID" 2>/dev/null
    if [[ ${KEEP:-0} != 1 ]]; then
        rm -rf "$DATA"
    fi
    rm -rf "$WORK"
    [[ $created_user == 1 ]] && userdel bench 2>/dev/null
    exit "$rc"
}
trap cleanup EXIT INT TERM

# ---- process tree statistics ---------------------------------------------------------------
cat >"$WORK/procstat.py" <<'PY'
"""Process-tree CPU and memory from /proc, and the result tables."""
import json, os, statistics, sys, time

def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    # comm may contain spaces and parentheses: the fields start after the last ')'.
    return s[s.rindex(")") + 2:].split()

def tree(root):
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                children.setdefault(int(stat_fields(d)[1]), []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out

def cpu(root):
    """utime+stime+cutime+cstime over the live tree: reaped children are in their parent's
    cutime/cstime, live ones are counted themselves, so nothing counts twice."""
    ticks = 0
    for p in tree(root):
        try:
            f = stat_fields(p)
            ticks += sum(int(x) for x in f[11:15])
        except (OSError, ValueError, IndexError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")

def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

def mem(root, pss=False):
    r = p = n = 0
    for pid in tree(root):
        try:
            r += rss_kb(pid)
            p += pss_kb(pid) if pss else 0
            n += 1
        except OSError:
            pass
    return {"rss_kb": r, "pss_kb": p if pss else None, "procs": n}

def peak(root, stop, limit=3600):
    """Samples the tree's RSS until `stop` exists; prints the peak."""
    best = mem(root)
    end = time.time() + limit
    while not os.path.exists(stop) and time.time() < end:
        time.sleep(0.25)
        m = mem(root)
        if m["rss_kb"] > best["rss_kb"]:
            best = m
    print(json.dumps(best))

def record(args):
    rnd, server, wl, cpu0, cpu1, peak_file, bench_file, rc, extra = args
    try:
        with open(bench_file) as f:
            result = json.loads(f.read().strip() or "null")
    except (OSError, ValueError):
        result = None
    try:
        with open(peak_file) as f:
            pk = json.loads(f.read().strip() or "null")
    except (OSError, ValueError):
        pk = None
    cpu_s = float(cpu1) - float(cpu0)
    row = {"round": int(rnd), "server": server, "workload": wl,
           # Negative: the server stopped during the run and its CPU time went with it.
           "server_cpu_s": round(cpu_s, 3) if cpu_s >= 0 else None,
           "server_mem": pk, "rc": int(rc), "result": result}
    if extra:
        row.update(json.loads(extra))
    print(json.dumps(row))

# What each workload is judged by: (label, unit, value function, higher is better, cost unit)
def mbps(r): return r["result"]["mb_per_s"]
def opsps(r): return r["result"]["ops_per_s"]
def idle_mem(r):
    # PSS: vsftpd's RSS sum counts its shared pages once per process (~20,000 of them).
    m = r["hold_mem"]
    return (m.get("pss_kb") or m["rss_kb"]) / 1024
WORKLOADS = [
    ("retr-epsv", "RETR {big}, 1 session, EPSV, client reads", "MB/s", mbps, True, "gb"),
    ("retr-eprt", "RETR {big}, 1 session, EPRT, client reads", "MB/s", mbps, True, "gb"),
    ("retr-null", "RETR {big}, 1 session, EPSV, client splices to /dev/null", "MB/s", mbps, True, "gb"),
    ("stor", "STOR {big}, 1 session, EPSV", "MB/s", mbps, True, "gb"),
    ("small", "{small_count} x 4 KiB RETR, 1 control connection", "files/s", opsps, True, "op"),
    ("login", "login+QUIT, 32 clients, password", "logins/s", opsps, True, "op"),
    ("login-anon", "login+QUIT, 32 clients, anonymous", "logins/s", opsps, True, "op"),
    ("multi", "{multi_sessions} sessions x {multi_size} RETR (client splices)", "MB/s", mbps, True, "gb"),
    ("idle", "{idle} idle sessions: server memory", "MiB PSS", idle_mem, False, None),
]

def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"

def report(args):
    raw, out_json, out_md, servers, params = args
    servers = servers.split()
    params = json.loads(params)
    rows = [json.loads(l) for l in open(raw) if l.strip()]
    measured = [r for r in rows if r["round"] > 0] or rows
    rounds = sorted({r["round"] for r in measured})
    results = {"params": params, "rounds": rounds, "workloads": {}}
    lines = []
    head = "| workload | unit | " + " | ".join(servers) + " | ringftpd / best peer |"
    lines.append(head)
    lines.append("|" + "---|" * (len(servers) + 3))
    cost_lines = ["| workload | " + " | ".join(f"{s} CPU" for s in servers) + " | "
                  + " | ".join(f"{s} RSS MiB" for s in servers) + " |",
                  "|" + "---|" * (2 * len(servers) + 1)]
    notes = []
    for key, label, unit, value, higher, cost in WORKLOADS:
        label = label.format(**params)
        entry = {"label": label, "unit": unit, "higher_is_better": higher, "servers": {}}
        cells, costs, mems, medians = [], [], [], {}
        for s in servers:
            rs = [r for r in measured if r["server"] == s and r["workload"] == key]
            vals, cpu_per, peaks, errors, held = [], [], [], 0, []
            for r in rs:
                res = r.get("result")
                if res is None:
                    errors += 1
                    continue
                errors += res.get("error_count", 0)
                try:
                    vals.append(value(r))
                except (KeyError, TypeError, ZeroDivisionError):
                    continue
                if r["server_cpu_s"] is None:
                    pass
                elif cost == "gb" and res["bytes"] > 0:
                    cpu_per.append(r["server_cpu_s"] / (res["bytes"] / 1e9))
                elif cost == "op" and res["ops"] > 0:
                    cpu_per.append(r["server_cpu_s"] * 1e3 / res["ops"])
                if key == "idle":
                    peaks.append(r["hold_mem"]["rss_kb"] / 1024)
                    held.append(res.get("held", 0))
                elif r.get("server_mem"):
                    peaks.append(r["server_mem"]["rss_kb"] / 1024)
            e = {"values": vals, "errors": errors}
            if vals:
                med = statistics.median(vals)
                medians[s] = med
                e.update(median=med, min=min(vals), max=max(vals))
                cell = f"{fmt(med)} ({fmt(min(vals))}..{fmt(max(vals))})"
            else:
                cell = "failed"
            if key == "idle" and held:
                e["held"] = held
                cell += f", held {min(held)}"
                rss = [r["hold_mem"]["rss_kb"] / 1024 for r in rs if r.get("hold_mem")]
                if rss:
                    e["rss_mib"] = statistics.median(rss)
                    cell += f", RSS {fmt(statistics.median(rss))}"
                # Per session from PSS: RSS counts vsftpd's shared pages once per process.
                per = [(r["hold_mem"]["pss_kb"] - r["base_mem"]["pss_kb"]) / r["result"]["held"]
                       for r in rs if r.get("hold_mem") and r.get("base_mem") and r.get("result")
                       and r["result"].get("held") and r["hold_mem"].get("pss_kb")]
                if per:
                    e["pss_kib_per_session"] = statistics.median(per)
                    cell += f", {fmt(statistics.median(per))} KiB/session"
            if errors:
                cell += f" ⚠{errors} err"
                notes.append(f"{s} {key}: {errors} errors "
                             + json.dumps([r['result'].get('errors') if r.get('result') else 'no result' for r in rs]))
            cells.append(cell)
            if cpu_per:
                e["server_cpu"] = statistics.median(cpu_per)
                e["server_cpu_unit"] = "s/GB" if cost == "gb" else "ms/op"
                costs.append(f"{fmt(statistics.median(cpu_per))} {e['server_cpu_unit']}")
            else:
                costs.append("-")
            if peaks:
                e["server_rss_mib"] = statistics.median(peaks)
                mems.append(fmt(statistics.median(peaks)))
            else:
                mems.append("-")
            entry["servers"][s] = e
        ratio = "-"
        peers = [v for s, v in medians.items() if s != "ringftpd"]
        if "ringftpd" in medians and peers:
            best = max(peers) if higher else min(peers)
            if best:
                entry["ratio"] = medians["ringftpd"] / best
                ratio = f"{entry['ratio']:.2f}x " + ("(>1 better)" if higher else "(<1 better)")
        results["workloads"][key] = entry
        lines.append(f"| {label} | {unit} | " + " | ".join(cells) + f" | {ratio} |")
        cost_lines.append(f"| {label} | " + " | ".join(costs) + " | " + " | ".join(mems) + " |")
    ip = [r["result"]["mb_per_s"] for r in measured if r["workload"] == "iperf3" and r.get("result")]
    if ip:
        results["iperf3_mb_per_s"] = {"median": statistics.median(ip), "min": min(ip), "max": max(ip)}
        lines.append(f"| loopback TCP ceiling (iperf3, 1 stream) | MB/s | "
                     + f"{fmt(statistics.median(ip))} ({fmt(min(ip))}..{fmt(max(ip))})"
                     + " | " * len(servers) + " |")
    md = [f"Median (min..max) over {len(rounds)} round(s) after a warm-up; "
          f"{params['machine']}.", ""] + lines + ["", "Server cost (medians): CPU time of the "
          "server's process tree per GB moved or per operation; peak RSS during the run "
          "(idle: at hold).", ""] + cost_lines
    restarts = [x for x in params.get("restarts", "").split() if not x.endswith("=0")]
    if restarts:
        md += ["", "Servers restarted after stopping mid-run (outside signal or crash; see "
               "their logs): " + ", ".join(restarts) + "."]
    if notes:
        md += ["", "Errors:"] + [f"- {n}" for n in notes]
    text = "\n".join(md) + "\n"
    with open(out_md, "w") as f:
        f.write(text)
    with open(out_json, "w") as f:
        json.dump(results, f, indent=1)
    print(text)

def summary(args):
    with open(args[0]) as f:
        r = json.loads(f.readlines()[-1])
    res = r["result"]
    if res is None:
        print("no result")
        return
    cpu = "-" if r["server_cpu_s"] is None else f"{r['server_cpu_s']:.2f}"
    text = (f"{res['mb_per_s']:.1f} MB/s, {res['ops_per_s']:.1f} ops/s, "
            f"errors {res['error_count']}, server cpu {cpu} s")
    if "held" in res:
        text += f", held {res['held']}"
    if (r.get("server_mem") or r.get("hold_mem")):
        text += f", rss {(r.get('hold_mem') or r.get('server_mem'))['rss_kb'] // 1024} MiB"
    print(text)

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "cpu":
        print(cpu(int(args[0])))
    elif cmd == "mem":
        print(json.dumps(mem(int(args[0]), pss=len(args) > 1)))
    elif cmd == "tree":
        print(" ".join(str(p) for p in tree(int(args[0]))))
    elif cmd == "peak":
        peak(int(args[0]), args[1])
    elif cmd == "record":
        record(args)
    elif cmd == "report":
        report(args)
    elif cmd == "summary":
        summary(args)
PY
PS() { python3 "$WORK/procstat.py" "$@"; }

stop_tree() {
    local pids
    pids=$(PS tree "$1" 2>/dev/null) || return 0
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
}

# ---- data ----------------------------------------------------------------------------------
log "data in $DATA (tmpfs): $BIG file, $SMALL_COUNT x $SMALL_SIZE files, upload dir"
chmod 755 "$DATA"
head -c "$BIG" /dev/urandom >"$DATA/big.bin"
head -c "$MULTI_SIZE" /dev/urandom >"$DATA/multi.bin"
mkdir "$DATA/small" "$DATA/up"
python3 - "$DATA/small" "$SMALL_COUNT" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, f"f{i:06d}.bin"), "wb") as f:
        f.write(os.urandom(4096))
PY
if ! id bench >/dev/null 2>&1; then
    useradd -M -d "$DATA" -s /bin/bash bench
    created_user=1
fi
echo bench:bench | chpasswd
chown bench "$DATA/up"

# ---- servers -------------------------------------------------------------------------------
range_lo() { echo "${1%-*}"; }
range_hi() { echo "${1#*-}"; }

# ringftpd runs as a private copy named ringftp-server: on a shared machine another job's
# `pkill ringftpd` stopped it mid-run. If it stops anyway it is restarted, and reported.
cp "$RINGFTPD" "$WORK/ringftp-server"

start_ringftpd() {
    # Warnings, and the binary's own lines (a shutdown signal is logged there).
    "$WORK/ringftp-server" --root "$DATA" --listen "127.0.0.1:${PORT[ringftpd]}" --user bench:bench \
        --anonymous --passive-ports "${PASV[ringftpd]}" --log-level warn,ringftpd=info \
        --max-sessions 0 --max-sessions-per-ip 0 \
        >>"$OUT/ringftpd.log" 2>&1 </dev/null &
    PID[ringftpd]=$!
}

start_vsftpd() {
    cat >"$WORK/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=${PORT[vsftpd]}
background=NO
anonymous_enable=YES
anon_root=$DATA
local_enable=YES
write_enable=YES
local_root=$DATA
local_umask=022
pasv_enable=YES
pasv_min_port=$(range_lo "${PASV[vsftpd]}")
pasv_max_port=$(range_hi "${PASV[vsftpd]}")
port_enable=YES
connect_from_port_20=NO
max_clients=0
max_per_ip=0
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
xferlog_enable=NO
dirmessage_enable=NO
pam_service_name=vsftpd
secure_chroot_dir=/var/run/vsftpd/empty
idle_session_timeout=600
data_connection_timeout=300
ftpd_banner=vsftpd ready
EOF
    mkdir -p /var/run/vsftpd/empty
    vsftpd "$WORK/vsftpd.conf" >>"$OUT/vsftpd.log" 2>&1 </dev/null &
    PID[vsftpd]=$!
}

start_pyftpdlib() {
    cat >"$WORK/pyftpd.py" <<EOF
import logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
# Warnings only: the default logs every command, which would be measured too.
logging.basicConfig(level=logging.WARNING)
auth = DummyAuthorizer()
auth.add_user("bench", "bench", "$DATA", perm="elradfmwMT")
auth.add_anonymous("$DATA")
FTPHandler.authorizer = auth
FTPHandler.passive_ports = range($(range_lo "${PASV[pyftpdlib]}"), $(range_hi "${PASV[pyftpdlib]}") + 1)
server = FTPServer(("127.0.0.1", ${PORT[pyftpdlib]}), FTPHandler, backlog=1024)
server.max_cons = 0
server.max_cons_per_ip = 0
server.serve_forever()
EOF
    python3 "$WORK/pyftpd.py" >>"$OUT/pyftpdlib.log" 2>&1 </dev/null &
    PID[pyftpdlib]=$!
}

bench() { timeout "$RUN_LIMIT" "$BENCH" --host 127.0.0.1 --timeout "$BENCH_TIMEOUT" "$@"; }

# Listening TCP ports in LO..HI. A leftover server would share ringftpd's port silently
# (SO_REUSEPORT) and answer half the connections, so the ports must be free.
listening_in() {
    ss -Hltn | awk -v lo="$1" -v hi="$2" '{ n = split($4, a, ":"); p = a[n] + 0; if (p >= lo && p <= hi) print p }'
}

# start_and_wait SERVER: starts it and waits until a login works.
start_and_wait() {
    local s=$1 ok=0
    "start_$s"
    for _ in $(seq 40); do
        if bench --port "${PORT[$s]}" --user bench --pass bench --timeout 2 login >/dev/null 2>&1; then
            ok=1
            break
        fi
        kill -0 "${PID[$s]}" 2>/dev/null || break
        sleep 0.25
    done
    [[ $ok == 1 ]] || { tail -5 "$OUT/$s.log" >&2; die "$s did not start"; }
    log "$s up on 127.0.0.1:${PORT[$s]} (pid ${PID[$s]}, passive ${PASV[$s]})"
}

# ensure_up SERVER: restarts a server that died (its log tells why; the run it died in is
# recorded with its errors).
ensure_up() {
    kill -0 "${PID[$1]}" 2>/dev/null && return
    log "warning: $1 (pid ${PID[$1]}) is gone; last log lines: $(tail -3 "$OUT/$1.log" | tr '\n' ' ')"
    RESTARTS[$1]=$((RESTARTS[$1] + 1))
    wait "${PID[$1]}" 2>/dev/null || true
    stop_tree "${PID[$1]}"
    start_and_wait "$1"
}

for s in $SERVERS; do
    busy=$(listening_in "${PORT[$s]}" "${PORT[$s]}")
    busy+=$(listening_in "$(range_lo "${PASV[$s]}")" "$(range_hi "${PASV[$s]}")")
    [[ -z $busy ]] || die "ports for $s are in use: $(echo $busy | tr '\n' ' ')(stop that server first)"
    start_and_wait "$s"
done

# ---- workloads -----------------------------------------------------------------------------
# run ROUND SERVER WORKLOAD BENCH-ARGS...: one bench run with CPU and peak RSS of the server.
run() {
    local rnd=$1 s=$2 wl=$3
    shift 3
    ensure_up "$s"
    local pid=${PID[$s]} cpu0 cpu1 rc=0
    rm -f "$WORK/stop"
    PS peak "$pid" "$WORK/stop" >"$WORK/peak.json" &
    local sampler=$!
    cpu0=$(PS cpu "$pid")
    bench --port "${PORT[$s]}" --json "$@" >"$WORK/bench.json" 2>"$WORK/bench.err" || rc=$?
    cpu1=$(PS cpu "$pid")
    touch "$WORK/stop"
    wait "$sampler" || true
    PS record "$rnd" "$s" "$wl" "$cpu0" "$cpu1" "$WORK/peak.json" "$WORK/bench.json" "$rc" "" >>"$OUT/raw.jsonl"
    if ! kill -0 "$pid" 2>/dev/null; then
        log "warning: $s stopped during $wl; its CPU time for this run is not counted"
    fi
    summary "$rnd" "$s" "$wl" "$rc"
}

summary() {
    local extra=""
    [[ $4 != 0 ]] && extra=" (exit $4: $(head -c 200 "$WORK/bench.err"))"
    log "round $1 $2 $3: $(PS summary "$OUT/raw.jsonl")$extra"
}

# idle ROUND SERVER: open IDLE_SESSIONS anonymous sessions, measure the server while held.
idle() {
    ensure_up "$2"
    stop_tree "${PID[$2]}"
    wait "${PID[$2]}" 2>/dev/null || true
    start_and_wait "$2"
    local rnd=$1 s=$2 pid=${PID[$2]} rc=0 base hold='null' cpu0 cpu1
    rm -f "$WORK/ready"
    base=$(PS mem "$pid" pss)
    cpu0=$(PS cpu "$pid")
    bench --port "${PORT[$s]}" --json --user anonymous --pass bench@ --sessions "$IDLE_SESSIONS" \
        --connect-concurrency 16 --duration "$IDLE_HOLD" idle --noop-interval 60 --ready-file "$WORK/ready" \
        >"$WORK/bench.json" 2>"$WORK/bench.err" &
    local bpid=$!
    # The hold starts when the ready file appears (or the bench gave up).
    while [[ ! -s $WORK/ready ]] && kill -0 "$bpid" 2>/dev/null; do sleep 0.2; done
    if [[ -s $WORK/ready ]]; then
        hold=$(PS mem "$pid" pss)
    fi
    wait "$bpid" || rc=$?
    cpu1=$(PS cpu "$pid")
    echo null >"$WORK/peak.json"
    PS record "$rnd" "$s" idle "$cpu0" "$cpu1" "$WORK/peak.json" "$WORK/bench.json" "$rc" \
        "{\"base_mem\": $base, \"hold_mem\": $hold}" >>"$OUT/raw.jsonl"
    summary "$rnd" "$s" idle "$rc"
    # Let the server reap and free the sessions before the next test.
    sleep 1
}

iperf() {
    local rnd=$1 rc=0
    iperf3 -s -1 -B 127.0.0.1 -p "$IPERF_PORT" >/dev/null 2>&1 &
    IPERF_PID=$!
    sleep 0.3
    timeout 60 iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t "$IPERF_SECS" -J >"$WORK/iperf.json" 2>/dev/null || rc=$?
    wait "$IPERF_PID" 2>/dev/null || true
    IPERF_PID=
    python3 - "$rnd" "$WORK/iperf.json" "$rc" >>"$OUT/raw.jsonl" <<'PY'
import json, sys
rnd, path, rc = sys.argv[1:]
try:
    bps = json.load(open(path))["end"]["sum_received"]["bits_per_second"]
    res = {"mb_per_s": bps / 8e6, "ops_per_s": 0, "error_count": 0, "bytes": 0, "ops": 0}
except (OSError, ValueError, KeyError):
    res = None
print(json.dumps({"round": int(rnd), "server": "loopback", "workload": "iperf3",
                  "server_cpu_s": 0, "server_mem": None, "rc": int(rc), "result": res}))
PY
    summary "$rnd" loopback iperf3 "$rc"
}

rw=(--user bench --pass bench)
start_time=$SECONDS
for rnd in $(seq 0 "$ROUNDS"); do
    log "round $rnd of $ROUNDS$([[ $rnd == 0 ]] && echo ' (warm-up, not reported)')"
    iperf "$rnd"
    for s in $SERVERS; do run "$rnd" "$s" retr-epsv "${rw[@]}" --sink buffer --mode epsv retr --path big.bin; done
    for s in $SERVERS; do run "$rnd" "$s" retr-eprt "${rw[@]}" --sink buffer --mode eprt retr --path big.bin; done
    for s in $SERVERS; do run "$rnd" "$s" retr-null "${rw[@]}" --sink null --mode epsv retr --path big.bin; done
    for s in $SERVERS; do run "$rnd" "$s" stor "${rw[@]}" --mode epsv stor --size "$BIG" --dir up --cleanup; done
    for s in $SERVERS; do run "$rnd" "$s" small "${rw[@]}" small --dir small --count "$SMALL_COUNT"; done
    for s in $SERVERS; do run "$rnd" "$s" login "${rw[@]}" --sessions "$LOGIN_SESSIONS" --duration "$LOGIN_SECS" login; done
    for s in $SERVERS; do run "$rnd" "$s" login-anon --user anonymous --pass bench@ --sessions "$LOGIN_SESSIONS" --duration "$LOGIN_SECS" login; done
    for s in $SERVERS; do run "$rnd" "$s" multi "${rw[@]}" --sessions "$MULTI_SESSIONS" retr --path multi.bin; done
    for s in $SERVERS; do idle "$rnd" "$s"; done
    log "round $rnd done after $((SECONDS - start_time)) s"
done

machine="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), Linux $(uname -r)"
versions="ringftpd $("$RINGFTPD" --version | awk '{print $2}'), vsftpd $(dpkg-query -W -f='${Version}' vsftpd 2>/dev/null), pyftpdlib $(python3 -c 'import pyftpdlib; print(pyftpdlib.__ver__)')"
params=$(python3 -c 'import json, sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
    big "$BIG" small_count "$SMALL_COUNT" multi_sessions "$MULTI_SESSIONS" multi_size "$MULTI_SIZE" \
    idle "$IDLE_SESSIONS" rounds "$ROUNDS" machine "$machine; $versions" \
    restarts "$(for s in $SERVERS; do printf '%s=%s ' "$s" "${RESTARTS[$s]}"; done)")
PS report "$OUT/raw.jsonl" "$OUT/results.json" "$OUT/results.md" "$SERVERS" "$params"
log "results: $OUT/results.md, $OUT/results.json (raw: $OUT/raw.jsonl); $((SECONDS - start_time)) s"
