#!/usr/bin/env bash
# ringftpd serving an S3 bucket (moto's S3 server on loopback), against boto3 talking to the
# same server directly. A benchmark, not a test: it prints numbers and fails only on errors.
#
#   1. Throughput: a 256 MiB file uploaded and downloaded through ringftpd with curl, and with
#      boto3 straight to moto (upload_file/download_file, boto3's default multipart settings),
#      ROUNDS rounds in rotated order, medians with min..max.
#      Ratio = ringftpd / boto3 (target >= 0.8: ringftpd must not be the bottleneck). boto3
#      runs twice: with its defaults (10 parts in flight) and one 8 MiB part at a time
#      (ringftpd keeps two in flight, one of them streaming as it arrives, within two parts
#      of memory).
#   2. Memory: ringftpd's peak RSS (VmHWM, reset through /proc/PID/clear_refs) over its idle
#      RSS, during 1 and during 8 concurrent 64 MiB uploads, each on a fresh server warmed up
#      with a few 1 KiB uploads; per upload (target <= 2 parts + 64 KiB = 16448 KiB with
#      8 MiB parts). VmHWM also counts the binary's code paged in by the first multipart
#      upload (megabytes, once per server, not per upload), so beside it the peak of RssAnon
#      (heap and stacks only), sampled every 5 ms, over its idle value.
#   3. 32 concurrent 16 MiB uploads all complete (curl exit 0) and are all in the bucket at
#      the right size (checked with boto3).
#   4. --hash-uploads: the BIG upload without it, with sha256 and with crc32 (ROUNDS interleaved
#      rounds, fresh server each: MiB/s and the server's CPU seconds per GiB, medians), then
#      HASH of that object answered from its metadata and, with the metadata removed,
#      computed by downloading it (ftplib, median of 3 each).
#
# Usage: benches/s3.sh            (needs curl, python3 with moto[server] and boto3, root for
#                                  clear_refs; builds ringftpd in release mode)
# Knobs: RINGFTPD (a prebuilt binary), BIG (MiB, default 256), KEEP=1 (keep the work dir),
#        SECTIONS (which to run, default "1 2 3 4"; e.g. SECTIONS=2 for memory only),
#        ROUNDS (sections 1 and 4, default 3), S3S_FS (an s3s-fs binary to serve the bucket
#        instead of moto), GARAGE (a garage binary, `cargo install garage@2.5.0 --locked`,
#        about 11 minutes on 2 cores: Garage, a production object store, one node on loopback).
# Everything listens on 127.0.0.1; every client runs under `timeout`; the trap stops the
# servers by pid.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIG=${BIG:-256}
SECTIONS=${SECTIONS:-1 2 3 4}
ROUNDS=${ROUNDS:-3}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
WORK=$(mktemp -d /tmp/ringftp-s3bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT

python3 -c 'import moto.server, boto3' 2>/dev/null || python3 -m pip install --quiet 'moto[server]' boto3
if [[ -z ${RINGFTPD:-} ]]; then
    (cd "$ROOT" && cargo build --release --quiet --bin ringftpd)
    RINGFTPD=$ROOT/target/release/ringftpd
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1
S3_PORT=$(free_port)
CREATE_BUCKET=1
if [[ -n ${GARAGE:-} ]]; then
    # Garage (garagehq.deuxfleurs.fr): a distributed object store people run in production,
    # here as one node with replication 1 and its own metadata and data directories. Its S3
    # keys are its own (imported below), the bucket is made with its CLI.
    export AWS_ACCESS_KEY_ID=GK0123456789abcdef01234567
    export AWS_SECRET_ACCESS_KEY=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    mkdir -p "$WORK/garage"
    RPC_PORT=$(free_port)
    cat >"$WORK/garage/garage.toml" <<EOF
metadata_dir = "$WORK/garage/meta"
data_dir = "$WORK/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.localhost"
EOF
    G=("$GARAGE" -c "$WORK/garage/garage.toml")
    "${G[@]}" server >"$WORK/garage.log" 2>&1 &
    STORE=$!
    PIDS+=("$STORE")
    wait_port "$S3_PORT"
    node=
    for _ in $(seq 100); do
        node=$("${G[@]}" node id -q 2>/dev/null | cut -d@ -f1) && [[ -n $node ]] && break
        sleep 0.1
    done
    "${G[@]}" layout assign -z dc1 -c 100G "$node" >/dev/null
    "${G[@]}" layout apply --version 1 >/dev/null
    "${G[@]}" key import --yes -n bench "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null
    "${G[@]}" bucket create bench >/dev/null
    "${G[@]}" bucket allow --read --write --owner bench --key bench >/dev/null
    CREATE_BUCKET=0
elif [[ -n ${S3S_FS:-} ]]; then
    # s3s-fs (`cargo install s3s-fs --features binary`): a Rust S3 server over a directory,
    # far faster than moto, so what it measures is the client and ringftpd more than the store.
    mkdir -p "$WORK/store"
    "$S3S_FS" --host 127.0.0.1 --port "$S3_PORT" --access-key bench --secret-key bench "$WORK/store" \
        >"$WORK/s3s.log" 2>&1 &
else
    python3 -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
fi
if [[ -z ${GARAGE:-} ]]; then
    STORE=$!
    PIDS+=("$STORE")
    wait_port "$S3_PORT"
fi
export S3_URL=http://127.0.0.1:$S3_PORT BUCKET=bench
BOTO="import boto3, os, sys, time
from botocore.config import Config
s3 = boto3.client('s3', endpoint_url=os.environ['S3_URL'], config=Config(s3={'addressing_style': 'path'}))
B = os.environ['BUCKET']"
[[ $CREATE_BUCKET == 0 ]] || python3 -c "$BOTO
s3.create_bucket(Bucket=B)"

# Starts (or restarts) ringftpd on a fresh port: SERVER is its pid, URL its base URL;
# EXTRA holds more flags.
SERVER=
EXTRA=()
start_server() {
    if [[ -n $SERVER ]]; then kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; fi
    FTP_PORT=$(free_port)
    "$RINGFTPD" --storage "s3://$BUCKET/ftp" --s3-endpoint "$S3_URL" --s3-path-style \
        --listen "127.0.0.1:$FTP_PORT" --user bench:bench --log-level warn --max-sessions-per-ip 0 "${EXTRA[@]}" \
        >"$WORK/ringftpd.out" 2>>"$WORK/ringftpd.log" &
    SERVER=$!
    PIDS+=("$SERVER")
    wait_port "$FTP_PORT"
    URL="ftp://bench:bench@127.0.0.1:$FTP_PORT"
}
start_server

now() { date +%s.%N; }
mibps() { python3 -c "print(f'{$1 / ($3 - $2):.1f}')"; }

if want 1; then
head -c "$((BIG * 1024 * 1024))" /dev/urandom >"$WORK/big"
SUM=$(sha256sum "$WORK/big" | cut -d' ' -f1)

echo "== 1. throughput, ${BIG} MiB (MiB/s; median (min..max) of $ROUNDS rounds, order rotated)"
# boto3 is timed inside Python, from the call to its return (its interpreter's start and
# imports left out); curl from its start to its exit (login and the transfer's 226
# included). Each measurement starts after `sync`, so one's written-back files do not slow
# the next. CPU seconds of each part are taken too: the client's (getrusage around boto3's
# call; curl's own rusage), ringftpd's and the store's (/proc/PID/stat), so the cost table
# shows what each path costs in all and whose CPU it is, on a machine where the client, the
# store and ringftpd share the same cores.
ONE="from boto3.s3.transfer import TransferConfig
one = TransferConfig(max_concurrency=1, multipart_chunksize=8 << 20)"
# Both print "WALL CLIENT-CPU" in seconds.
boto_time() { # $1: the call, timed
    python3 -c "$BOTO
$ONE
import resource
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c = cpu(); t = time.monotonic(); $1; print(time.monotonic() - t, cpu() - c)"
}
ftp_time() { # curl arguments
    python3 -c "import resource, subprocess, sys, time
t = time.monotonic()
subprocess.run(['timeout', '600', 'curl', '-sS'] + sys.argv[1:], check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(time.monotonic() - t, r.ru_utime + r.ru_stime)" "$@"
}
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
declare -A SAMPLES COST
measure() { # $1: round, $2: what
    local t c out f0 s0 f1 s1
    sync
    f0=$(ticks "$SERVER")
    s0=$(ticks "$STORE")
    case $2 in
    boto_up) out=$(boto_time "s3.upload_file('$WORK/big', B, 'direct/big$1')") ;;
    boto1_up) out=$(boto_time "s3.upload_file('$WORK/big', B, 'direct/one$1', Config=one)") ;;
    ftp_up) out=$(ftp_time -T "$WORK/big" "$URL/big$1") ;;
    boto_down) out=$(boto_time "s3.download_file(B, 'direct/big$1', '$WORK/big.boto')") ;;
    boto1_down) out=$(boto_time "s3.download_file(B, 'direct/one$1', '$WORK/big.boto1', Config=one)") ;;
    ftp_down)
        out=$(ftp_time -o "$WORK/big.ftp" "$URL/big$1")
        [[ $(sha256sum "$WORK/big.ftp" | cut -d' ' -f1) == "$SUM" ]] || { echo "download differs" >&2; exit 1; }
        ;;
    esac
    # The store may still be finishing the request (writing back, releasing): let it settle.
    sleep 0.5
    f1=$(ticks "$SERVER")
    s1=$(ticks "$STORE")
    read -r t c <<<"$out"
    SAMPLES[$2]+="$(python3 -c "print(f'{$BIG / $t:.1f}')") "
    # wall,client,ringftpd,store CPU seconds (clock ticks are 1/100 s here)
    COST[$2]+="$t,$c,$(((f1 - f0)))e-2,$(((s1 - s0)))e-2 "
}
for round in $(seq "$ROUNDS"); do
    ups=(boto_up boto1_up ftp_up)
    downs=(boto_down boto1_down ftp_down)
    for i in 0 1 2; do measure "$round" "${ups[$(((i + round) % 3))]}"; done
    for i in 0 1 2; do measure "$round" "${downs[$(((i + round) % 3))]}"; done
done
python3 - "${SAMPLES[ftp_up]}" "${SAMPLES[boto_up]}" "${SAMPLES[boto1_up]}" \
    "${SAMPLES[ftp_down]}" "${SAMPLES[boto_down]}" "${SAMPLES[boto1_down]}" <<'PY'
import statistics, sys
rows = [[float(x) for x in a.split()] for a in sys.argv[1:]]
med = [statistics.median(r) for r in rows]
cell = lambda r: f"{statistics.median(r):.1f} ({min(r):.0f}..{max(r):.0f})"
print(f"{'':9} {'ringftpd':>20} {'boto3':>20} {'ratio':>6} {'boto3 1-part':>20} {'ratio':>6}")
for name, i in (("upload", 0), ("download", 3)):
    print(f"{name:9} {cell(rows[i]):>20} {cell(rows[i + 1]):>20} {med[i] / med[i + 1]:6.2f} "
          f"{cell(rows[i + 2]):>20} {med[i] / med[i + 2]:6.2f}")
PY
echo "-- cost per ${BIG} MiB (seconds, medians): wall, CPU of the client, ringftpd and the store, and"
echo "   all CPU over the wall time (2 would be both cores busy the whole time on a 2-core machine)"
python3 - "$(nproc)" \
    "ftp up=${COST[ftp_up]}" "boto3 up=${COST[boto_up]}" "boto3 1-part up=${COST[boto1_up]}" \
    "ftp down=${COST[ftp_down]}" "boto3 down=${COST[boto_down]}" "boto3 1-part down=${COST[boto1_down]}" <<'PY'
import statistics, sys
print(f"{'':18} {'wall':>6} {'client':>7} {'ringftpd':>9} {'store':>6} {'cpu/wall':>9}   ({sys.argv[1]} cores)")
for arg in sys.argv[2:]:
    name, samples = arg.split("=", 1)
    rows = [[float(x) for x in s.split(",")] for s in samples.split()]
    wall, client, ftp, store = (statistics.median(r[k] for r in rows) for k in range(4))
    load = statistics.median((r[1] + r[2] + r[3]) / r[0] for r in rows)
    print(f"{name:18} {wall:6.2f} {client:7.2f} {ftp:9.2f} {store:6.2f} {load:9.2f}")
PY
fi

if want 2; then
echo "== 2. memory during 64 MiB uploads (KiB)"
head -c "$((64 * 1024 * 1024))" /dev/urandom >"$WORK/m64"
head -c 1024 /dev/urandom >"$WORK/k1"
head -c "$((9 * 1024 * 1024))" /dev/urandom >"$WORK/m9"
rss() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SERVER/status"; }
# Prints the largest RssAnon of pid $1 until the file $2 exists (sampled every 5 ms).
SAMPLER="import sys, os, time
pid, stop, top = sys.argv[1], sys.argv[2], 0
while not os.path.exists(stop):
    for line in open(f'/proc/{pid}/status'):
        if line.startswith('RssAnon:'): top = max(top, int(line.split()[1]))
    time.sleep(0.005)
print(top)"
for n in 1 8; do
    # A fresh server, warmed up (each shard's S3 client, TLS roots and connections exist, and
    # the multipart path has run: two parts of 9 MiB), so the peak over the idle RSS is what
    # the uploads themselves take, not what the first multipart upload sets up once.
    start_server
    jobs_=()
    for i in 1 2 3 4; do timeout 60 curl -sS -T "$WORK/k1" "$URL/warm-$n-$i" & jobs_+=($!); done
    for i in 1 2 3 4; do timeout 60 curl -sS -T "$WORK/m9" "$URL/warm9-$n-$i" & jobs_+=($!); done
    for j in "${jobs_[@]}"; do wait "$j"; done
    sleep 1
    base=$(rss VmRSS)
    anon=$(rss RssAnon)
    rm -f "$WORK/stop"
    python3 -c "$SAMPLER" "$SERVER" "$WORK/stop" >"$WORK/anon" &
    sampler=$!
    PIDS+=("$sampler")
    echo 5 >"/proc/$SERVER/clear_refs"
    jobs_=()
    for i in $(seq "$n"); do
        timeout 600 curl -sS -T "$WORK/m64" "$URL/mem-$n-$i" &
        jobs_+=($!)
    done
    for j in "${jobs_[@]}"; do wait "$j"; done
    peak=$(rss VmHWM)
    touch "$WORK/stop"
    wait "$sampler"
    anon_peak=$(cat "$WORK/anon")
    echo "$n concurrent: idle RSS $base, peak $peak, per upload $(((peak - base) / n)) KiB;" \
        "RssAnon idle $anon, peak $anon_peak, per upload $(((anon_peak - anon) / n)) KiB" \
        "(target <= $((2 * 8 * 1024 + 64)) KiB)"
done
fi

if want 3; then

echo "== 3. 32 concurrent 16 MiB uploads"
head -c "$((16 * 1024 * 1024))" /dev/urandom >"$WORK/m16"
timeout 60 curl -sS -Q "MKD c32" "$URL/" >/dev/null
jobs_=()
t0=$(now)
for i in $(seq 32); do
    timeout 600 curl -sS -T "$WORK/m16" "$URL/c32/f$i" &
    jobs_+=($!)
done
failed=0
for j in "${jobs_[@]}"; do wait "$j" || failed=$((failed + 1)); done
t1=$(now)
found=$(python3 -c "$BOTO
r = s3.list_objects_v2(Bucket=B, Prefix='ftp/c32/')
print(sum(1 for o in r.get('Contents', []) if o['Size'] == 16 << 20))")
pending=$(python3 -c "$BOTO
print(len(s3.list_multipart_uploads(Bucket=B).get('Uploads', [])))")
echo "curl failures: $failed; objects of 16 MiB in the bucket: $found/32; pending multipart uploads: $pending; $(mibps 512 "$t0" "$t1") MiB/s total"
[[ $failed == 0 && $found == 32 && $pending == 0 ]]
fi

want 4 || exit 0

echo "== 4. --hash-uploads, ${BIG} MiB: upload cost, HASH from metadata vs computed"
[[ -f $WORK/big ]] || head -c "$((BIG * 1024 * 1024))" /dev/urandom >"$WORK/big"
printf x >"$WORK/one"
ticks=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$SERVER/stat"; }
median() { python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" "$@"; }
declare -A rate cost
for r in $(seq "$ROUNDS"); do
    for algo in off sha256 crc32; do
        EXTRA=()
        [[ $algo == off ]] || EXTRA=(--hash-uploads "$algo")
        start_server
        timeout 60 curl -sS -T "$WORK/one" "$URL/warm"
        c0=$(cpu); t0=$(now)
        timeout 600 curl -sS -T "$WORK/big" "$URL/h-$algo"
        t1=$(now); c1=$(cpu)
        rate[$algo]+=" $(mibps "$BIG" "$t0" "$t1")"
        cost[$algo]+=" $(python3 -c "print(($c1 - $c0) / $ticks / ($BIG / 1024))")"
    done
done
for algo in off sha256 crc32; do
    # shellcheck disable=SC2086
    echo "$algo: $(median ${rate[$algo]}) MiB/s, $(median ${cost[$algo]}) CPU s/GiB (rounds:${rate[$algo]})"
done
# The last server kept crc32; HASH asks for SHA-256 (the default), so a sha256 server again.
EXTRA=(--hash-uploads sha256)
start_server
timeout 600 curl -sS -T "$WORK/big" "$URL/h-hash"
HASH_TIME="import ftplib, os, statistics, sys, time
ftp = ftplib.FTP()
ftp.connect('127.0.0.1', int(os.environ['FTP_PORT']), timeout=600)
ftp.login('bench', 'bench')
times = []
for _ in range(3):
    t0 = time.monotonic(); reply = ftp.sendcmd('HASH h-hash'); times.append(time.monotonic() - t0)
print(f'{statistics.median(times) * 1000:.1f} ms ({reply.split()[3][:16]}...)')"
echo "HASH from metadata: $(FTP_PORT=$FTP_PORT python3 -c "$HASH_TIME")"
python3 -c "$BOTO
k = 'ftp/h-hash'
s3.copy_object(Bucket=B, Key=k, CopySource={'Bucket': B, 'Key': k}, Metadata={}, MetadataDirective='REPLACE')"
echo "HASH computed:      $(FTP_PORT=$FTP_PORT python3 -c "$HASH_TIME")"
