#!/usr/bin/env bash
# Runs tests/ktls.rs inside a QEMU guest booted with Debian 12's kernel, which has kTLS (this
# host's kernel does not), with KTLS_REQUIRED=1 so a missing kTLS fails instead of skipping.
# The guest sees this machine's / read-only (--hostroot), so the test finds the ringftpd that
# cargo built, curl and python3 where they are here. Uses the recipe in ../shared/ktls-vm
# (README there); installs its packages when missing and running as root.
#   tests/ktls-vm.sh [--bench MIB]   --bench: also time a RETR and a STOR of MIB on kTLS and on rustls
#                                    (a release build of the tests; slow under TCG)
#   tests/ktls-vm.sh [--bench MIB] [ARGS...]   ARGS go to the test binary, e.g. a test name filter
# KTLS_VM_MEM: the guest's memory in MB (1536). The bench keeps its file and the upload in the
# guest's /tmp, a tmpfs of half the memory, so a bench of N MiB wants over 4 N MiB
# (KTLS_VM_MEM=6144 for --bench 1024).
# KTLS_VM_TIMEOUT: seconds the whole guest run may take (600).
# KTLS_GUEST=1 tells the tests they run in a throwaway guest, where one of them may unload a
# cipher's module to play a kernel without it.
# Exit status: the test binary's (0 = passed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VM=${KTLS_VM_DIR:-$ROOT/../shared/ktls-vm}
[ -x "$VM/run-guest.sh" ] || VM=/work/shared/ktls-vm
[ -x "$VM/run-guest.sh" ] || { echo "ktls-vm.sh: no ktls-vm recipe found (set KTLS_VM_DIR)" >&2; exit 2; }

if ! command -v qemu-system-x86_64 >/dev/null || ! ls /boot/vmlinuz-*-amd64 >/dev/null 2>&1 || [ ! -x /bin/busybox ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "ktls-vm.sh: installing qemu-system-x86, linux-image-amd64, busybox-static" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            qemu-system-x86 linux-image-amd64 busybox-static >/dev/null
    else
        echo "ktls-vm.sh: qemu-system-x86_64 / linux-image-amd64 / busybox-static missing" >&2
        exit 2
    fi
fi

bench=() profile=()
if [ "${1:-}" = --bench ]; then
    bench=(--env "KTLS_BENCH_MIB=${2:?--bench needs a size in MiB}")
    profile=(--release)
    shift 2
fi

cd "$ROOT"
bin=$(cargo test "${profile[@]}" --test ktls --no-run --message-format=json 2>/dev/null |
    grep '"kind":\["test"\]' | grep '"name":"ktls"' |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -n "$bin" ] && [ -x "$bin" ] || { echo "ktls-vm.sh: could not build the ktls test binary" >&2; exit 1; }
echo "ktls-vm.sh: running $bin in the kTLS guest" >&2
# The guest sees this machine's / read-only, but with its own tmpfs on /tmp, /run and /dev/shm:
# a checkout there (CI's clone may be one) is shared into the guest at the same path.
share=()
case "$ROOT/" in /tmp/* | /run/* | /dev/shm/*) share=(--share "$ROOT") ;; esac
"$VM/run-guest.sh" --hostroot "${share[@]}" --mem "${KTLS_VM_MEM:-1536}" --env KTLS_REQUIRED=1 --env KTLS_GUEST=1 --env RINGFTP_TEST_STARTUP_SECS=90 --env "KTLS_TEST_MIB=${KTLS_TEST_MIB:-8}" "${bench[@]}" --timeout "${KTLS_VM_TIMEOUT:-600}" \
    "$bin" --test-threads=1 --nocapture "$@"
