#!/usr/bin/env bash
# Builds the ringftp fuzz targets and runs each for a while; exits non-zero if any target
# crashes, hangs, or runs out of memory (libFuzzer saves the input to fuzz/artifacts/TARGET/).
#
#   fuzz/run.sh                  every target, FUZZ_SECONDS (default 30) each   <- CI
#   fuzz/run.sh session reply    only these targets
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 30)
#   FUZZ_JOBS       libFuzzer processes per target, run with -fork=N (default 1: one process)
#   FUZZ_RSS_MB     -rss_limit_mb per process (default 2048)
#   FUZZ_TIMEOUT    seconds one input may take before it counts as a hang (default 10)
#   FUZZ_SANITIZER  none (default) or address. The code under test (src/proto, src/session,
#                   src/types.rs) is `#![forbid(unsafe_code)]`, so a memory sanitizer can only
#                   find bugs in dependencies' unsafe code, at a sixth of the speed (session
#                   target: ~1,000 against ~5,900 inputs/s). Without one, libFuzzer still catches
#                   panics, integer overflow (debug assertions are on), hangs and OOM.
#   ASAN_OPTIONS    with FUZZ_SANITIZER=address, default detect_stack_use_after_return=0: its
#                   fake stacks cost a fifth of the session target's time, for a class of bug
#                   safe Rust cannot have
#   FUZZ_ARGS       extra libFuzzer flags, e.g. "-max_len=8192 -dict=my.dict" (the session
#                   target runs with -max_len=1024 unless this sets it)
#
# Running for hours (outside CI), e.g. four hours of the session target on 8 cores:
#   FUZZ_SECONDS=14400 FUZZ_JOBS=8 fuzz/run.sh session
# The corpus grows in fuzz/corpus/TARGET/ (new entries are git-ignored hex names; copy an
# interesting one to a readable name to commit it). Then, from fuzz/:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET artifacts/TARGET/crash-...       reproduce
#   RUSTC_BOOTSTRAP=1 cargo fuzz tmin TARGET artifacts/TARGET/crash-...      minimise
#   RINGFTP_FUZZ_TRACE=1 target/x86_64-unknown-linux-gnu/release/session FILE  session transcript
# and keep the reproducer in fuzz/regressions/TARGET/NAME: every run replays those first.
#
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable toolchain provide them.
set -euo pipefail

cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-30}
jobs=${FUZZ_JOBS:-1}
rss=${FUZZ_RSS_MB:-2048}
timeout=${FUZZ_TIMEOUT:-10}
sanitizer=${FUZZ_SANITIZER:-none}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_stack_use_after_return=0}
read -r -a extra <<<"${FUZZ_ARGS:-}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in fuzz_targets/*.rs; do
        targets+=("$(basename "$f" .rs)")
    done
fi

echo "== building ${targets[*]} (sanitizer: $sanitizer)"
cargo fuzz build -s "$sanitizer"

mkdir -p logs
failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "regressions/$t"
    log="logs/$t.log"
    args=(-max_total_time="$seconds" -rss_limit_mb="$rss" -timeout="$timeout" -print_final_stats=1)
    if [ "$t" = session ]; then
        # A script of 1 KiB is dozens of steps; longer ones mostly make each run slower
        # (about twice as many runs per second). FUZZ_ARGS="-max_len=N" overrides it.
        args+=(-max_len=1024)
    fi
    if [ "$jobs" -gt 1 ]; then
        args+=(-fork="$jobs" -ignore_crashes=0)
    fi
    echo "== $t: ${seconds}s, $jobs job(s): cargo fuzz run -s $sanitizer $t corpus/$t regressions/$t -- ${args[*]} ${extra[*]}"
    status=0
    # The first corpus directory receives new inputs; regressions/ is only replayed.
    cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" "regressions/$t" -- \
        "${args[@]}" "${extra[@]}" >"$log" 2>&1 || status=$?
    runs=$(awk '/stat::number_of_executed_units:/ { n += $2; seen = 1 }
                /^#[0-9]+\t+DONE / { d = substr($1, 2) }
                END { if (seen) print n; else if (d) print d; else print "?" }' "$log")
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1 || true)
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        summary+=("$t: FAILED (exit $status) after $runs executions; log: fuzz/$log")
        echo "-- $t FAILED (exit $status); the end of its log:"
        tail -n 60 "$log"
        ls -1 "artifacts/$t" 2>/dev/null | sed 's/^/   artifact: fuzz\/artifacts\/'"$t"'\//' || true
    else
        summary+=("$t: ok, $runs executions in ${seconds}s ($cov)")
    fi
done

echo "== summary"
printf '   %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found problems in: ${failed[*]}"
    exit 1
fi
echo "${#targets[@]} passed, 0 failed"
