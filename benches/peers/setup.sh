# Sourced by benches/compare.sh (after peers/harness.sh, whose need_apt and have_curl8 it
# uses): puts the four peer servers, curl 8 and iperf3 on this machine.
#
# vsftpd and iperf3 come from apt. pure-ftpd and proftpd conflict with each other and with
# vsftpd as Debian packages (each Provides/Conflicts ftp-server), so they are fetched with
# `apt-get download` and unpacked with `dpkg -x` into $PEERS (default benches/.peers,
# git-ignored), together with the libraries they need that this system lacks. curl 8 comes the
# same way from bookworm-backports (Debian 12's curl 7.88 stalls on many URLs over one
# connection), with its libcurl4 from backports, and runs with LD_LIBRARY_PATH; backports is
# read through a private sources list and private apt state, so the system's apt setup is not
# touched. pyftpdlib goes into a venv under $PEERS.
#
# Sets: PURE_FTPD, PROFTPD, PEER_LIBS (LD_LIBRARY_PATH for the unpacked servers), CURL (a
# command array), CURL_NOTE, PYFTPD_PYTHON, PEER_VERSIONS.

PEERS=${PEERS:-$ROOT/benches/.peers}
mkdir -p "$PEERS/debs" "$PEERS/root"

# deb_unpack DEST PACKAGE[=VERSION]... [-- APT-OPTIONS...]: download and unpack into DEST.
deb_unpack() {
    local dest=$1
    shift
    local pkgs=() opts=()
    while [[ $# -gt 0 && $1 != -- ]]; do pkgs+=("$1"); shift; done
    [[ ${1:-} == -- ]] && { shift; opts=("$@"); }
    mkdir -p "$dest"
    # (apt warns that root downloads unsandboxed into a root-owned directory: harmless.)
    (cd "$PEERS/debs" && apt-get "${opts[@]}" download "${pkgs[@]}" >"$PEERS/download.log" 2>&1) || {
        cat "$PEERS/download.log" >&2
        return 1
    }
    local p name
    for p in "${pkgs[@]}"; do
        name=${p%%=*}
        local deb
        deb=$(ls -t "$PEERS/debs/${name}"_*.deb 2>/dev/null | sed -n 1p)
        [[ -n $deb ]] || return 1
        dpkg -x "$deb" "$dest"
    done
}

# missing_libs BINARY: the sonames ldd cannot find (with PEER_LIBS).
missing_libs() {
    LD_LIBRARY_PATH=$PEER_LIBS ldd "$1" 2>/dev/null | awk '/not found/ {print $1}'
}

# Unpacked servers: the package plus whichever of its libraries this system lacks (found by
# soname with apt-cache's package of the same name, e.g. libhashkit.so.2 -> libhashkit2).
PEER_LIBS=$PEERS/root/usr/lib/x86_64-linux-gnu:$PEERS/root/usr/lib
fetch_unpacked() { # BINARY PACKAGES...
    local bin=$1
    shift
    if [[ ! -x $PEERS/root$bin ]]; then
        apt_update_once
        log "fetching $* (apt-get download + dpkg -x into $PEERS/root)"
        deb_unpack "$PEERS/root" "$@" || die "could not fetch $*"
    fi
    local round lib pkg
    for round in 1 2 3; do
        local missing
        missing=$(missing_libs "$PEERS/root$bin")
        [[ -z $missing ]] && return 0
        for lib in $missing; do
            # libfoo.so.2 -> libfoo2, libfoo-bar.so.0.14 -> libfoo-bar0.14
            pkg=$(echo "$lib" | sed -E 's/\.so\.?/ /; s/ ([0-9])/\1/; s/ $//')
            pkg=${pkg// /}
            apt_update_once
            log "fetching $pkg for $lib"
            deb_unpack "$PEERS/root" "$pkg" || die "could not fetch $pkg (for $lib of $bin)"
        done
    done
    [[ -z $(missing_libs "$PEERS/root$bin") ]] || die "$bin still lacks $(missing_libs "$PEERS/root$bin")"
}

need_apt vsftpd vsftpd
need_apt iperf3 iperf3
need_apt python3 python3
fetch_unpacked /usr/sbin/pure-ftpd pure-ftpd pure-ftpd-common
fetch_unpacked /usr/sbin/proftpd proftpd-core
PURE_FTPD=$PEERS/root/usr/sbin/pure-ftpd
PROFTPD=$PEERS/root/usr/sbin/proftpd

# curl 8 from bookworm-backports, read through private apt state.
BPO=$PEERS/apt
BPO_OPTS=(-o "Dir::Etc::sourcelist=$BPO/backports.sources" -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$BPO/lists" -o "Dir::Cache=$BPO/cache")
CURL8=$PEERS/curl8
if [[ ! -x $CURL8/usr/bin/curl ]]; then
    mkdir -p "$BPO/lists/partial" "$BPO/cache/archives/partial"
    cat >"$BPO/backports.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    log "fetching curl 8 from bookworm-backports"
    if apt-get "${BPO_OPTS[@]}" update -qq 2>/dev/null; then
        # sed, not head: an early reader would end apt-cache with SIGPIPE, fatal under pipefail.
        apt-cache "${BPO_OPTS[@]}" policy curl | sed -n 1,6p >&2
        ver=$(apt-cache "${BPO_OPTS[@]}" show curl 2>/dev/null | awk '/^Version: 8/ && !v {v = $2} END {print v}')
        if [[ -n $ver ]]; then
            deb_unpack "$CURL8" "curl=$ver" "libcurl4=$ver" -- "${BPO_OPTS[@]}" ||
                log "warning: could not fetch curl $ver from backports"
        fi
    fi
fi
if have_curl8; then
    CURL_CLIENT=curl
    CURL_NOTE="curl $("${CURL[@]}" --version | awk 'NR == 1 {print $2}') (bookworm-backports, unpacked privately)"
else
    need_apt curl curl
    CURL=(curl)
    CURL_CLIENT=curl-system
    CURL_NOTE="curl $(curl --version | awk 'NR == 1 {print $2}') (system; backports could not be reached: it may stall on many URLs over one connection)"
    log "warning: $CURL_NOTE"
fi

# pyftpdlib in a venv (the system Python is left alone).
if [[ ! -x $PEERS/venv/bin/python ]] || ! "$PEERS/venv/bin/python" -c 'import pyftpdlib' 2>/dev/null; then
    log "installing pyftpdlib into $PEERS/venv"
    python3 -m venv "$PEERS/venv"
    "$PEERS/venv/bin/pip" install -q pyftpdlib
fi
PYFTPD_PYTHON=$PEERS/venv/bin/python

PEER_VERSIONS="vsftpd $(dpkg-query -W -f='${Version}' vsftpd 2>/dev/null)"
PEER_VERSIONS+=", pure-ftpd $(ls "$PEERS"/debs/pure-ftpd_*.deb | sed -n 1p | sed -E 's/.*pure-ftpd_([^_]*)_.*/\1/')"
PEER_VERSIONS+=", proftpd $(LD_LIBRARY_PATH=$PEER_LIBS "$PROFTPD" --version 2>/dev/null | awk '{print $3}')"
PEER_VERSIONS+=", pyftpdlib $("$PYFTPD_PYTHON" -c 'import pyftpdlib; print(pyftpdlib.__ver__)')"
PEER_VERSIONS+=", $CURL_NOTE, iperf3 $(iperf3 --version | awk 'NR == 1 {print $2}')"
