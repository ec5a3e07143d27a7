#!/usr/bin/env bash
# The object-storage suites (tests/s3.rs, tests/haproxy.rs) against Garage, a distributed
# object store people run in production, instead of moto. Installs Garage from crates.io when
# it is missing (`cargo install garage --locked`, 11-13 minutes on 2 cores; kept under
# GARAGE_ROOT for the next run), then runs tests/run.sh with RINGFTP_TEST_GARAGE set, which
# starts one fresh single-node Garage per test on loopback (tests/moto/mod.rs):
#
#   tests/garage.sh                          # both suites
#   RINGFTP_TEST_ENGINE=epoll tests/garage.sh
#   GARAGE=/path/to/garage tests/garage.sh   # a garage binary already built
set -euo pipefail
cd "$(dirname "$0")/.."

GARAGE_VERSION=2.5.0
GARAGE_ROOT=${GARAGE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/ringftp/garage-$GARAGE_VERSION}
GARAGE=${GARAGE:-$GARAGE_ROOT/bin/garage}

if [ ! -x "$GARAGE" ]; then
  echo "== cargo install garage@$GARAGE_VERSION --locked (into $GARAGE_ROOT)"
  log=$(mktemp)
  # Its own target directory, so the project's build is left alone. Quiet unless it fails.
  if ! cargo install "garage@$GARAGE_VERSION" --locked --root "$GARAGE_ROOT" \
    --target-dir "$GARAGE_ROOT/target" >"$log" 2>&1; then
    tail -50 "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  rm -rf "$GARAGE_ROOT/target"
fi
"$GARAGE" --version 2>/dev/null | head -1 || true

RINGFTP_TEST_GARAGE=$GARAGE exec tests/run.sh --test s3 --test haproxy "$@"
