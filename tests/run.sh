#!/usr/bin/env bash
# The test command (README's, and what .ci/run runs): installs what the end-to-end tests
# drive when it is missing (Debian's packages and PyPI; as root, or through sudo), then runs
# `cargo test` with any arguments given:
#
#   tests/run.sh                     # every test
#   tests/run.sh --test lftp         # one test file
#   tests/run.sh --lib session       # unit tests of one module
#
# Idempotent and quiet: once everything is there it only runs cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests run, as COMMAND:DEBIAN-PACKAGE.
APT_PACKAGES=(
  curl:curl
  lftp:lftp
  python3:python3
  wget:wget
  haproxy:haproxy
  rclone:rclone
)
# What the tests' Python scripts import, as MODULE:PYPI-PACKAGE (e.g. boto3:boto3).
PIP_PACKAGES=(
  moto.server:moto[server]
  boto3:boto3
  # libcurl 8 in its wheel: Debian 12's curl 7.88 cannot do active FTP over TLS (tests/ftps_active.rs).
  pycurl:pycurl
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "tests/run.sh: please install: $*" >&2
    exit 1
  fi
  echo "== installing $*"
  local log
  log=$(mktemp)
  # Quiet unless it fails.
  if ! { as_root apt-get update -qq &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
}

missing=()
for entry in "${APT_PACKAGES[@]}"; do
  command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
done
if ((${#PIP_PACKAGES[@]})) && ! python3 -m pip --version >/dev/null 2>&1; then
  missing+=(python3-pip)
fi
if ((${#missing[@]})); then
  apt_install "${missing[@]}"
fi

pip_missing=()
for entry in "${PIP_PACKAGES[@]}"; do
  python3 -c "import ${entry%%:*}" >/dev/null 2>&1 || pip_missing+=("${entry#*:}")
done
if ((${#pip_missing[@]})); then
  echo "== pip installing ${pip_missing[*]}"
  pip=(python3 -m pip install --quiet --disable-pip-version-check)
  # Debian 12 marks its Python as externally managed (PEP 668); these are test tools.
  as_root "${pip[@]}" --break-system-packages "${pip_missing[@]}" 2>/dev/null ||
    as_root "${pip[@]}" "${pip_missing[@]}"
fi

exec cargo test "$@"
