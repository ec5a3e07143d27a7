"""Runs a forking server under a child subreaper, so that none of its CPU time escapes the
measurement: benches/compare.sh (vsftpd, pure-ftpd, proftpd) and benches/tls-compare.sh
(vsftpd) start it as `python3 tls_reaper.py SERVER ARGS...`.

vsftpd's session processes do not all wait for each other: a session process whose parent has
already exited is re-parented to init (the zombies show up under pid 1), and its CPU time then
reaches no process in the server's tree. With PR_SET_CHILD_SUBREAPER such orphans are
re-parented to this process instead, which reaps them, so its cutime/cstime hold them and the
tree's utime+stime+cutime+cstime (stats.py cpu) is complete. SIGTERM/SIGINT are passed to the
server; this exits with it once every descendant is reaped.
"""
import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    pid = os.fork()
    if pid == 0:
        os.execvp(sys.argv[1], sys.argv[1:])

    def forward(sig, _frame):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status, orphans = 0, 0
    while True:
        try:
            p, st = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if p == pid:
            status = os.waitstatus_to_exitcode(st)
        else:
            orphans += 1
    print(f"tls_reaper: {sys.argv[1]} exited ({status}); reaped {orphans} orphaned descendants",
          file=sys.stderr)
    sys.exit(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    main()
