# Sourced by benches/compare.sh and benches/tls-compare.sh (ringftpd and vsftpd): one
# start_<server> function per server. Each writes its config into $WORK, starts the server in
# the foreground (so $! is the server and its process tree is what the CPU and memory figures
# add up), and sets PID[server].
#
# Common settings, as far as each server offers them: listen on 127.0.0.1 only, on its own
# control port and passive range; one read-write user USER_NAME/USER_PASS whose home is $DATA,
# confined to it (chroot or virtual root); anonymous login allowed read-only (only the anonymous
# login row uses it); no TLS unless VSFTPD_TLS_CERT is set (ringftpd takes its TLS flags in
# RINGFTPD_ARGS); no bandwidth limits; logging off; sendfile on where offered; 1000+ clients and
# no per-IP limit; no reverse DNS.
#
# Privileges: vsftpd, pure-ftpd and proftpd run as root, as they are built to (they check
# passwords against /etc/shadow, chroot, and drop to the logged-in user per session).
# pyftpdlib and ringftpd run as root too (both keep their own user lists; nothing needs
# dropping on a benchmark box), so all five start the same way.

# The forking servers run under a child subreaper (peers/tls_reaper.py): some of their session
# processes outlive their parent, would be re-parented to init and take their CPU time out of
# the measured tree; the subreaper reaps them, so their CPU counts. REAPER=0 turns it off.
if [[ ${REAPER:-1} == 1 ]]; then
    REAPER=(python3 "$ROOT/benches/peers/tls_reaper.py")
else
    REAPER=()
fi

range_lo() { echo "${1%-*}"; }
range_hi() { echo "${1#*-}"; }

# ringftpd and ringftpd-uring / ringftpd-epoll: a private copy named ringftp-server (on a
# shared machine another job's `pkill ringftpd` once stopped it mid-run), with RINGFTPD_ARGS
# added.
start_ringftpd_engine() { # NAME ENGINE-or-empty
    local s=$1 engine=()
    [[ -n $2 ]] && engine=(--engine "$2")
    "$WORK/ringftp-server" --root "$DATA" --listen "127.0.0.1:${PORT[$s]}" --user "$USER_NAME:$USER_PASS" \
        --anonymous --passive-ports "${PASV[$s]}" --log-level warn "${engine[@]}" \
        --max-sessions 0 --max-sessions-per-ip 0 "${RINGFTPD_ARGS[@]}" \
        >>"$LOGS/$s.log" 2>&1 </dev/null &
    PID[$s]=$!
}
start_ringftpd() { start_ringftpd_engine ringftpd ""; }
start_ringftpd-uring() { start_ringftpd_engine ringftpd-uring uring; }
start_ringftpd-epoll() { start_ringftpd_engine ringftpd-epoll epoll; }

# vsftpd's TLS settings, with VSFTPD_TLS_CERT and VSFTPD_TLS_KEY set (tls-compare.sh):
# ssl_enable with that certificate, TLS required for logins and data for local and anonymous
# users, session reuse required (ringftpd enforces it too), no client certificate requested
# (ringftpd asks for none).
# TLS 1.3 is negotiated: vsftpd 3.0.3 as Debian 12 builds it uses TLS_server_method against
# OpenSSL 3 and so has no upper bound; ssl_ciphers only applies to TLS 1.2 and is set to the
# TLS 1.2 equivalent of the TLS 1.3 suite both servers pick (AES-256-GCM), in case a client
# falls back. use_sendfile does not apply under TLS (vsftpd reads and SSL_writes).
vsftpd_tls() {
    if [[ -z ${VSFTPD_TLS_CERT:-} ]]; then
        echo ssl_enable=NO
        return
    fi
    cat <<EOF
ssl_enable=YES
rsa_cert_file=$VSFTPD_TLS_CERT
rsa_private_key_file=$VSFTPD_TLS_KEY
force_local_logins_ssl=YES
force_local_data_ssl=YES
allow_anon_ssl=YES
force_anon_logins_ssl=YES
force_anon_data_ssl=YES
require_ssl_reuse=YES
ssl_request_cert=NO
ssl_sslv2=NO
ssl_sslv3=NO
ssl_tlsv1=YES
ssl_ciphers=ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384
EOF
}

start_vsftpd() {
    # use_sendfile=YES is the default; written out so it is visible. max_clients=0: no limit.
    # Anonymous (the ftp user) gets $DATA too, read-only. isolate=NO: no network namespace per
    # session.
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
chroot_local_user=YES
allow_writeable_chroot=YES
local_umask=022
pasv_enable=YES
pasv_min_port=$(range_lo "${PASV[vsftpd]}")
pasv_max_port=$(range_hi "${PASV[vsftpd]}")
port_enable=YES
connect_from_port_20=NO
use_sendfile=YES
max_clients=0
max_per_ip=0
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
xferlog_enable=NO
vsftpd_log_file=/dev/null
dirmessage_enable=NO
pam_service_name=vsftpd
secure_chroot_dir=/var/run/vsftpd/empty
idle_session_timeout=600
data_connection_timeout=300
ftpd_banner=vsftpd ready
$(vsftpd_tls)
EOF
    mkdir -p /var/run/vsftpd/empty
    "${REAPER[@]}" vsftpd "$WORK/vsftpd.conf" >>"$LOGS/vsftpd.log" 2>&1 </dev/null &
    PID[vsftpd]=$!
}

start_pure-ftpd() {
    # pure-ftpd takes its configuration as flags (the Debian wrapper turns /etc/pure-ftpd/conf
    # into these); they are written to $WORK/pure-ftpd.args for the record. -l unix: bench's
    # password from /etc/shadow (crypt); -A: chroot everyone (bench's home is $DATA); -c/-C:
    # 2000 clients, 2000 per IP, but pure-ftpd caps this at 500 (measured: with -c 5000 the
    # 501st connection gets "421 500 users (the maximum) are already logged in"), so it
    # refuses part of the 512-session sweep and of the idle row; -H: no reverse DNS; -f none:
    # no syslog; no -t/-T: no
    # bandwidth limits. Anonymous is the ftp user, rooted at its own home (pure-ftpd has no
    # option to move it; only the login row uses it). pure-ftpd has no sendfile switch: its
    # default download path is used.
    local args=(-S "127.0.0.1,${PORT[pure-ftpd]}" -4 -c 2000 -C 2000
        -p "$(range_lo "${PASV[pure-ftpd]}"):$(range_hi "${PASV[pure-ftpd]}")"
        -A -H -l unix -f none)
    printf '%s\n' "${args[@]}" >"$WORK/pure-ftpd.args"
    "${REAPER[@]}" env LD_LIBRARY_PATH="$PEER_LIBS" "$PURE_FTPD" "${args[@]}" >>"$LOGS/pure-ftpd.log" 2>&1 </dev/null &
    PID[pure-ftpd]=$!
}

start_proftpd() {
    # One process per session (forked by the standalone daemon, which runs as root and drops
    # each session to the logged-in user); -n: stay in the foreground; -q: no log lines on
    # stderr. Only the modules compiled into proftpd-core (no LoadModule): mod_auth_unix checks
    # bench against /etc/shadow.
    cat >"$WORK/proftpd.conf" <<EOF
ServerType standalone
ServerName "proftpd"
DefaultAddress 127.0.0.1
SocketBindTight on
Port ${PORT[proftpd]}
PassivePorts $(range_lo "${PASV[proftpd]}") $(range_hi "${PASV[proftpd]}")
MaxInstances 2000
MaxClients none
MaxClientsPerHost none
MaxConnectionsPerHost none
MaxLoginAttempts 1000
User nobody
Group nogroup
Umask 022
UseIPv6 off
UseReverseDNS off
UseSendfile on
AllowOverwrite on
RequireValidShell off
DefaultRoot ~
WtmpLog off
TransferLog none
SystemLog none
ServerLog none
DelayTable none
ScoreboardFile $WORK/proftpd.scoreboard
PidFile $WORK/proftpd.pid
AuthOrder mod_auth_unix.c
TimeoutIdle 600
TimeoutNoTransfer 600
<Anonymous $DATA>
  User ftp
  Group nogroup
  UserAlias anonymous ftp
  RequireValidShell off
  <Limit WRITE>
    DenyAll
  </Limit>
</Anonymous>
EOF
    "${REAPER[@]}" env LD_LIBRARY_PATH="$PEER_LIBS" "$PROFTPD" -n -q -c "$WORK/proftpd.conf" >>"$LOGS/proftpd.log" 2>&1 </dev/null &
    PID[proftpd]=$!
}

start_pyftpdlib() {
    # FTPHandler.use_sendfile is on by default where os.sendfile exists; set explicitly.
    # max_cons = 0: no limit (pyftpdlib's default is 512).
    cat >"$WORK/pyftpd.py" <<EOF
import logging
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
# Warnings only: the default logs every command, which would be measured too.
logging.basicConfig(level=logging.WARNING)
auth = DummyAuthorizer()
auth.add_user("$USER_NAME", "$USER_PASS", "$DATA", perm="elradfmwMT")
auth.add_anonymous("$DATA")
FTPHandler.authorizer = auth
FTPHandler.use_sendfile = True
FTPHandler.passive_ports = range($(range_lo "${PASV[pyftpdlib]}"), $(range_hi "${PASV[pyftpdlib]}") + 1)
server = FTPServer(("127.0.0.1", ${PORT[pyftpdlib]}), FTPHandler, backlog=1024)
server.max_cons = 0
server.max_cons_per_ip = 0
server.serve_forever()
EOF
    "$PYFTPD_PYTHON" "$WORK/pyftpd.py" >>"$LOGS/pyftpdlib.log" 2>&1 </dev/null &
    PID[pyftpdlib]=$!
}
