#!/usr/bin/env bash
# FTPS: ringftpd (both engines) against vsftpd with ssl_enable=YES, on loopback, in one run
# (issue 11, section 5). Explicit FTPS (AUTH TLS), PROT P on every data connection, TLS session
# reuse enforced by both servers, one self-signed certificate shared by both.
#
# Rows (each round runs every row against every server, the server order rotated by one each
# round so drift on a shared machine spreads over all of them):
#   RETR BIG over PROT P (EPSV): curl 8 --ssl-reqd -k, to /dev/null; MB/s and server CPU s/GB
#   STOR BIG over PROT P (EPSV): curl 8 -T from tmpfs; MB/s and server CPU s/GB
#   handshakes/s: connect + AUTH TLS + PBSZ 0 + PROT P + USER/PASS + QUIT in a loop, HS_WORKERS
#     (32) concurrent connections, counted over HS_SECS after a warm-up, with the password
#     user and with anonymous (the password row also measures each server's password check:
#     PAM/yescrypt on every login for vsftpd, argon2id once and then a verified-credential
#     cache for ringftpd; the anonymous row is the TLS handshake and session set-up alone)
#   idle: IDLE_RINGFTPD (10,000) logged-in TLS sessions (anonymous, AUTH TLS + PBSZ + PROT P)
#     held on a freshly started ringftpd, IDLE_VSFTPD (1,000) on vsftpd (it forks three
#     processes per TLS session); PSS of the server's process tree (/proc/PID/smaps_rollup,
#     summed over every process) while they are held, minus before, per session
# Server CPU comes from /proc/PID/stat of the process tree (utime+stime+cutime+cstime; a
# forking server's reaped sessions are in the parent's cutime), read before and after each
# measurement, "after" once the tree has shrunk back (benches/peers/stats.py, shared with
# compare.sh). vsftpd runs under a child subreaper (peers/tls_reaper.py), since some of its
# session processes outlive their parent and their CPU time would otherwise go to init. The
# negotiated TLS version, cipher and key exchange of the control and data connections, and
# whether the data connection resumed the control session, are checked once per server at
# the start (curl -v and peers/tls_client.py probe) and reported.
#
# Usage (as root: adds a local user `tlsbench`, installs vsftpd if missing, raises limits):
#   benches/tls-compare.sh           # ROUNDS=3, BIG=1G, full sizes
#   SMOKE=1 benches/tls-compare.sh   # (or QUICK=1) 16M, 1 round, 2 s handshake loops, 200 idle
#                                    # sessions (100 on vsftpd); writes no files under benches/
# Knobs:
#   ROUNDS (3), BIG (1G)
#   HS_SECS (4), HS_WARMUP (2 s at full concurrency before counting), HS_WORKERS (32),
#     HS_PROCS (client processes the workers are spread over; default nproc)
#   IDLE_RINGFTPD (10000), IDLE_VSFTPD (1000), IDLE_CONC (sessions opened at a time, 16)
#   ENGINE=uring|epoll|both (both), SERVERS (default "ringftpd vsftpd")
#   RINGFTPD (default target/release/ringftpd; when that is missing, or RELEASE_READY=FILE is
#     given, waits up to 20 min for FILE, default /tmp/release-ready)
#   KTLS (off: the rustls path, which the issue's targets are about; auto: kTLS where the
#     kernel has it)
#   CERT_KEY (rsa: RSA 2048, what `openssl req` users make; ec: ECDSA P-256)
#   CLIENT_CURVE (e.g. prime256v1: curl and the Python client offer only that group. vsftpd
#     accepts P-256 alone, so the clients' default X25519 key share costs it a
#     HelloRetryRequest on every handshake; default: the clients' defaults)
#   VSFTPD_REAPER (1), PEERS (where compare.sh unpacked curl 8; default benches/.peers, else
#     the system curl), NO_COMMIT_FILES=1 (results only under target/tls-compare)
# Results: benches/tls-compare-results.md and benches/compare-raw/tls-<date>.tsv (also under
#   target/tls-compare/). REPORT_ONLY=1 rebuilds the tables from target/tls-compare/raw.tsv.
#
# Ports: control 21300-21302 (21303 for a ringftpd without --engine), passive ranges
# 29000-29999 (uring), 30000-30999 (epoll), 31000-31999 (vsftpd); 127.0.0.1 only. Every
# client call runs under `timeout`; the trap stops every server this script started (by pid,
# with its process tree), removes the data and work directories, and the user if it made it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMOKE=${SMOKE:-${QUICK:-0}}
if [[ $SMOKE == 1 ]]; then
    ROUNDS=${ROUNDS:-1}
    BIG=${BIG:-16M}
    HS_SECS=${HS_SECS:-2}
    HS_WARMUP=${HS_WARMUP:-0.5}
    IDLE_RINGFTPD=${IDLE_RINGFTPD:-200}
    IDLE_VSFTPD=${IDLE_VSFTPD:-100}
    NO_COMMIT_FILES=${NO_COMMIT_FILES:-1}
else
    ROUNDS=${ROUNDS:-3}
    BIG=${BIG:-1G}
    HS_SECS=${HS_SECS:-4}
    HS_WARMUP=${HS_WARMUP:-2}
    IDLE_RINGFTPD=${IDLE_RINGFTPD:-10000}
    IDLE_VSFTPD=${IDLE_VSFTPD:-1000}
fi
HS_WORKERS=${HS_WORKERS:-32}
HS_PROCS=${HS_PROCS:-$(nproc)}
IDLE_CONC=${IDLE_CONC:-16}
ENGINE=${ENGINE:-both}
KTLS=${KTLS:-off}
CERT_KEY=${CERT_KEY:-rsa}
VSFTPD_REAPER=${VSFTPD_REAPER:-1}
CLIENT_CURVE=${CLIENT_CURVE:-}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET/tls-compare
RUN_LIMIT=600 # wall-clock limit of one client run
USER_NAME=tlsbench
USER_PASS=tlsbench
LOG_TAG=tls-compare
# shellcheck source=peers/harness.sh
source "$ROOT/benches/peers/harness.sh"

# finish ELAPSED: the tables from $OUT/raw.tsv and $OUT/meta.json, printed and (unless
# NO_COMMIT_FILES=1) copied to benches/.
finish() {
    local date
    date=$(cat "$OUT/date")
    python3 "$ROOT/benches/peers/tls_stats.py" "$OUT/raw.tsv" "$OUT/meta.json" "$1" "compare-raw/tls-$date.tsv" \
        >"$OUT/results.md"
    publish tls-compare-results.md "tls-$date.tsv"
}
if [[ ${REPORT_ONLY:-0} == 1 ]]; then
    finish "${REPORT_ELAPSED:-stopped early; see the rounds in the raw file}"
    exit 0
fi

[[ $(id -u) == 0 ]] || die "run as root (adds user $USER_NAME, runs vsftpd, raises limits)"
START_DATE=$(date -u +%Y-%m-%dT%H%MZ)
COMMAND="$(env | { grep -E '^(ROUNDS|SMOKE|ENGINE|SERVERS|BIG|HS_SECS|HS_WARMUP|HS_WORKERS|IDLE_RINGFTPD|IDLE_VSFTPD|KTLS|CERT_KEY|CLIENT_CURVE|VSFTPD_REAPER)=' || true; } | sort | tr '\n' ' ')benches/tls-compare.sh $*"

# ---- tools ---------------------------------------------------------------------------------
need_apt vsftpd vsftpd
need_apt openssl openssl
need_apt python3 python3

# curl 8 as compare.sh's benches/peers/setup.sh unpacks it (bookworm-backports); else the
# system curl (7.88 on Debian 12: fine for one file per invocation, which is all this needs).
PEERS=${PEERS:-$ROOT/benches/.peers}
if have_curl8; then
    CURL_NOTE="curl $("${CURL[@]}" --version | awk 'NR == 1 {print $2}') (bookworm-backports, unpacked by compare.sh)"
else
    need_apt curl curl
    CURL=(curl)
    CURL_NOTE="curl $(curl --version | awk 'NR == 1 {print $2}') (system; run compare.sh once for curl 8)"
fi
CURL_NOTE+=" with $("${CURL[@]}" --version | grep -Eo 'OpenSSL/[0-9.]+' | head -1)"
CURL_CLIENT=curl

# vsftpd under a child subreaper (see peers/tls_reaper.py) unless VSFTPD_REAPER=0.
REAPER=$VSFTPD_REAPER
# shellcheck source=peers/servers.sh
source "$ROOT/benches/peers/servers.sh"

# The release binary: the one given, or target/release's once its build says it is done.
if [[ -z ${RINGFTPD:-} ]]; then
    RINGFTPD=$TARGET/release/ringftpd
    # A build elsewhere (this machine's sessions touch /tmp/release-ready when it is done).
    if [[ -n ${RELEASE_READY:-} || ! -x $RINGFTPD ]]; then
        ready=${RELEASE_READY:-/tmp/release-ready}
        log "waiting (at most 20 min) for $ready"
        for _ in $(seq 120); do [[ -e $ready ]] && break; sleep 10; done
        [[ -e $ready ]] || die "$ready did not appear within 20 min"
    fi
fi
[[ -x $RINGFTPD ]] || die "missing $RINGFTPD (cargo build --release --bin ringftpd, or RINGFTPD=path)"
"$RINGFTPD" --help | grep -q -- --tls-cert || die "$RINGFTPD has no --tls-cert: too old for this benchmark"

ringftpd_columns
SERVER_LIST=()
for s in ${SERVERS:-ringftpd vsftpd}; do
    case $s in
    ringftpd) read -r -a ours <<<"$OURS" && SERVER_LIST+=("${ours[@]}") ;;
    ringftpd-uring | ringftpd-epoll | vsftpd) SERVER_LIST+=("$s") ;;
    *) die "unknown server $s (ringftpd, ringftpd-uring, ringftpd-epoll, vsftpd)" ;;
    esac
done
SERVERS="${SERVER_LIST[*]}"

declare -A PORT=([ringftpd-uring]=21300 [ringftpd-epoll]=21301 [vsftpd]=21302 [ringftpd]=21303)
declare -A PASV=([ringftpd-uring]=29000-29999 [ringftpd-epoll]=30000-30999 [vsftpd]=31000-31999
    [ringftpd]=29000-29999)
declare -A PID=() RESTARTS=()
for s in "${SERVER_LIST[@]}"; do RESTARTS[$s]=0; done

raise_limits

mkdir -p "$OUT"
rm -f "$OUT/orphans"
WORK=$(mktemp -d /tmp/ringftp-tls.XXXXXX)
DATA=$(mktemp -d /dev/shm/ringftp-tls.XXXXXX)
LOGS=$WORK/logs
mkdir -p "$LOGS"
RAW=$OUT/raw.tsv

trap cleanup EXIT INT TERM
PS header >"$RAW"

# ---- data, user, certificate ---------------------------------------------------------------
log "data in $DATA (tmpfs): $BIG file, upload dir"
chmod 755 "$DATA"
head -c "$BIG" /dev/urandom >"$DATA/big.bin"
BIG_BYTES=$(stat -c %s "$DATA/big.bin")
head -c 65536 /dev/urandom >"$DATA/probe.bin"
mkdir "$DATA/up"
use_user

case $CERT_KEY in
rsa) keyopt=(-newkey rsa:2048) CERT_NOTE="RSA 2048" ;;
ec) keyopt=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) CERT_NOTE="ECDSA P-256" ;;
*) die "CERT_KEY must be rsa or ec" ;;
esac
openssl req -x509 "${keyopt[@]}" -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 7 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
CERT_NOTE+=", self-signed (openssl req -x509), the same file for both servers"

# ---- servers -------------------------------------------------------------------------------
# A private copy (another job's `pkill ringftpd` must not stop it mid-run); peers/servers.sh
# starts both servers. TLS required on control and data connections (USER in clear refused,
# PROT P needed), for anonymous too; session reuse enforced (the default). ringftpd's idle
# timeout is vsftpd's idle_session_timeout, so that opening 10,000 sessions slowly drops none.
cp "$RINGFTPD" "$WORK/ringftp-server"
RINGFTPD_ARGS=(--idle-timeout 600 --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
    --tls required --tls-data required --ktls "$KTLS")
VSFTPD_TLS_CERT=$WORK/cert.pem
VSFTPD_TLS_KEY=$WORK/key.pem

CURVE_ARGS=() CURL_CURVE=()
if [[ -n $CLIENT_CURVE ]]; then
    CURVE_ARGS=(--curve "$CLIENT_CURVE")
    CURL_CURVE=(--curves "$CLIENT_CURVE")
fi
CURL_ARGS=(--ssl-reqd -k "${CURL_CURVE[@]}")
TC() { timeout "$RUN_LIMIT" python3 "$ROOT/benches/peers/tls_client.py" --timeout 30 "${CURVE_ARGS[@]}" "$@"; }
server_answers() { timeout 5 python3 "$ROOT/benches/peers/tls_client.py" ping --port "${PORT[$1]}" --timeout 2 >/dev/null 2>&1; }

start_servers

# What each server negotiates, on the control and on a PROT P data connection, with curl (the
# "SSL connection using" lines: version / cipher / key exchange group / signature) and with the
# Python client (whether the data connection resumed the control connection's session). A
# HelloRetryRequest shows as a second ClientHello before the server's first EncryptedExtensions.
declare -A TLS_INFO=()
for s in "${SERVER_LIST[@]}"; do
    v=$(curl_ -v -o /dev/null "$(url "$s" probe.bin)" 2>&1) || die "$s: curl over TLS failed: $(tail -3 <<<"$v")"
    using=$(grep -o 'SSL connection using .*' <<<"$v" | sed 's/SSL connection using //' | head -2 | paste -sd '|')
    hellos=$(awk '/Client hello/ {n++} /Encrypted Extensions/ {print n; exit}' <<<"$v")
    reused=$(grep -c 'SSL reusing session' <<<"$v" || true)
    p=$(TC probe --port "${PORT[$s]}" --user "$USER_NAME" --pass "$USER_PASS" --path probe.bin) ||
        die "$s: python probe failed: $p"
    TLS_INFO[$s]=$(python3 - "$using" "${hellos:-0}" "$reused" "$p" <<'PY'
import json, sys
using, hellos, reused, probe = sys.argv[1].split("|"), int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
print(json.dumps({"curl_control": using[0] if using else "?", "curl_data": using[1] if len(using) > 1 else "?",
                  "hello_retry": hellos > 1, "curl_reuse": reused > 0, "probe": probe}))
PY
)
    log "$s TLS: ${TLS_INFO[$s]}"
done

# ---- measurements --------------------------------------------------------------------------
EXPECT_BYTES=$BIG_BYTES
SUMMARY_FIELDS=5,6,7,9,10,13

# handshakes ROUND SERVER ROW USER PASS: the Python client's login loop.
handshakes() {
    local rnd=$1 s=$2 row=$3 rc=0
    cpu_begin "$s"
    TC handshakes --port "${PORT[$s]}" --user "$4" --pass "$5" --workers "$HS_WORKERS" --procs "$HS_PROCS" \
        --warmup "$HS_WARMUP" --duration "$HS_SECS" >"$WORK/hs.json" 2>"$WORK/hs.err" || rc=$?
    cpu_end "$s"
    python3 - "$rnd" "$s" "$row" "$CPU0" "$CPU1" "$rc" "$WORK/hs.json" "$WORK/hs.err" <<'PY' >>"$RAW"
import json, sys
rnd, s, row, cpu0, cpu1, rc, path, err = sys.argv[1:]
try:
    r = json.load(open(path))
except ValueError:
    r = {"ops": 0, "errors": 1, "samples": [open(err).read()[-200:]]}
d = float(cpu1) - float(cpu0)
# ops: every completed loop (what the run's server CPU time is divided by); the rate counts
# only those in the window after the warm-up.
note = (f"{r.get('ops', 0)} in the {r.get('duration_s')} s window, {r.get('total', 0)} in all; "
        + "; ".join(r.get("samples") or []) + (f" exit {rc}" if rc != "0" else ""))
print("\t".join(str(x) for x in [rnd, s, row, "python", round(r.get("ops_per_s") or 0, 1) or "", "handshakes/s",
      round(d, 3) if d >= 0 else "", 0, r.get("total", 0), r.get("errors", 0),
      round(r["p99_ms"], 1) if r.get("p99_ms") else "", r.get("duration_s", ""), note.replace("\t", " ")]))
PY
    summary "$rnd" "$s" "$row"
}

# idle ROUND SERVER: N logged-in anonymous TLS sessions on a freshly started server; the PSS of
# its tree before and while they are held. Anonymous, so that the password check (yescrypt
# for vsftpd) does not decide how long the row takes; the TLS handshake is the same.
idle() {
    local rnd=$1 s=$2 rc=0 base hold=0 procs=0 n=$IDLE_RINGFTPD
    [[ $s == vsftpd ]] && n=$IDLE_VSFTPD
    restart "$s"
    rm -f "$WORK/ready" "$WORK/release"
    sleep 0.5
    base=$(PS pss "${PID[$s]}")
    cpu_begin "$s"
    TC idle --port "${PORT[$s]}" --sessions "$n" --concurrency "$IDLE_CONC" \
        --ready-file "$WORK/ready" --release-file "$WORK/release" --hold-max 120 \
        >"$WORK/idle.json" 2>"$WORK/idle.err" &
    CLIENT_PID=$!
    while [[ ! -s $WORK/ready ]] && kill -0 "$CLIENT_PID" 2>/dev/null; do sleep 0.2; done
    if [[ -s $WORK/ready ]]; then
        sleep 1 # let the last sessions' set-up settle
        hold=$(PS pss "${PID[$s]}")
        procs=$(PS count "${PID[$s]}")
    fi
    touch "$WORK/release"
    wait "$CLIENT_PID" || rc=$?
    CLIENT_PID=
    cpu_end "$s" 60
    python3 - "$rnd" "$s" "$n" "$base" "$hold" "$procs" "$CPU0" "$CPU1" "$rc" "$WORK/idle.json" "$WORK/idle.err" <<'PY' >>"$RAW"
import json, sys
rnd, s, n, base, hold, procs, cpu0, cpu1, rc, path, err = sys.argv[1:]
n, base, hold = int(n), int(base), int(hold)
try:
    r = json.load(open(path))
except ValueError:
    r = {"held": 0, "alive": 0, "errors": 1, "samples": [open(err).read()[-200:]]}
held = r.get("held", 0)
per = round((hold - base) / held, 2) if held and hold else ""
note = (f"sessions {n}, held {held}, alive after the hold {r.get('alive')}, opened in {r.get('open_s')} s (client RSS {r.get('client_max_rss_kib')} KiB), "
        f"PSS base {base} KiB, held {hold} KiB, {procs} processes; "
        + "; ".join(r.get("samples") or []) + (f" exit {rc}" if rc != "0" else ""))
d = float(cpu1) - float(cpu0)
# Sessions not opened, and opened ones that did not answer NOOP after the hold.
errors = (n - held) + (held - (r.get("alive") or 0))
print("\t".join(str(x) for x in [rnd, s, "idle", "python", per, "KiB/session", round(d, 3) if d >= 0 else "",
      0, held, errors, "", "", note.replace("\t", " ")]))
PY
    summary "$rnd" "$s" idle
    sleep 1
}

# The report's layout, written first so a partial run can be reported too.
machine=$(machine_desc)
versions="ringftpd $("$RINGFTPD" --version | awk '{print $2}') ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')), vsftpd $(dpkg-query -W -f='${Version}' vsftpd 2>/dev/null) (libssl $(dpkg-query -W -f='${Version}' libssl3 2>/dev/null)), $CURL_NOTE, Python $(python3 -c 'import ssl, sys; print(sys.version.split()[0], "with", ssl.OPENSSL_VERSION)')"
echo "$START_DATE" >"$OUT/date"
tls_json=$(for s in "${SERVER_LIST[@]}"; do printf '%s\t%s\n' "$s" "${TLS_INFO[$s]}"; done)
python3 - "$OUT/meta.json" "$tls_json" <<PY
import json, sys
tls = {}
for line in sys.argv[2].splitlines():
    s, j = line.split("\t", 1)
    tls[s] = json.loads(j)
json.dump({"servers": "$SERVERS".split(), "rounds": $ROUNDS, "big": "$BIG", "smoke": $SMOKE == 1,
           "hs_workers": $HS_WORKERS, "hs_secs": "$HS_SECS", "hs_warmup": "$HS_WARMUP", "idle_ringftpd": $IDLE_RINGFTPD,
           "idle_vsftpd": $IDLE_VSFTPD, "date": "$START_DATE", "command": """$COMMAND""",
           "machine": """$machine""", "versions": """$versions""", "cert": "$CERT_NOTE",
           "ktls": "$KTLS", "client_curve": "$CLIENT_CURVE", "tls": tls}, open(sys.argv[1], "w"), indent=1)
PY

start_time=$SECONDS
for ((rnd = 1; rnd <= ROUNDS; rnd++)); do
    round_start "$rnd"
    for s in "${ORDER[@]}"; do curl_get "$rnd" "$s" retr; done
    for s in "${ORDER[@]}"; do curl_put "$rnd" "$s"; done
    for s in "${ORDER[@]}"; do handshakes "$rnd" "$s" hs-pass "$USER_NAME" "$USER_PASS"; done
    for s in "${ORDER[@]}"; do handshakes "$rnd" "$s" hs-anon anonymous bench@; done
    for s in "${ORDER[@]}"; do idle "$rnd" "$s"; done
    round_end "$rnd"
done
elapsed=$((SECONDS - start_time))

# How many of vsftpd's session processes outlived their parent (reaped by tls_reaper.py,
# which reports it when vsftpd exits): the CPU time a measurement without it would miss.
if [[ -n ${PID[vsftpd]:-} && $VSFTPD_REAPER == 1 ]]; then
    stop_tree "${PID[vsftpd]}"
    unset 'PID[vsftpd]'
    awk '/^tls_reaper:/ { n += $(NF - 2); k++ } END { printf "%d orphaned session processes over %d vsftpd runs\n", n, k }' \
        "$LOGS/vsftpd.log" >"$OUT/orphans"
else
    rm -f "$OUT/orphans"
fi

# ---- report --------------------------------------------------------------------------------
finish "$elapsed s"
log "done in $elapsed s"
