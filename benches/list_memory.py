#!/usr/bin/env python3
"""Peak RSS of ringftpd while one client lists a 100,000-entry directory (LIST, NLST, MLSD on
the data connection, STAT on the control connection).
usage: [LIST_N=100000] [VERBS="LIST NLST MLSD STAT"] list_memory.py RINGFTPD [ENGINE_ARGS...]

Prints VmHWM (the process's peak resident set) after login and after each listing, so the
growth is what the listings cost; a peak only grows, so to see one verb's own cost run it
alone (VERBS=STAT). The directory is made once in /dev/shm/ringlist/big (the one
benches/list_stall.py uses; another LIST_N gets its own)."""
import ftplib, os, socket, subprocess, sys, time
binary = sys.argv[1]; extra = sys.argv[2:]
N = int(os.environ.get("LIST_N", "100000"))
VERBS = os.environ.get("VERBS", "LIST NLST MLSD STAT").split()
root = "/dev/shm/ringlist"
name = "big" if N == 100000 else f"big{N}"
big = os.path.join(root, name)
if not os.path.isdir(big) or len(os.listdir(big)) < N:
    os.makedirs(big, exist_ok=True)
    for i in range(N):
        open(os.path.join(big, f"f{i:06d}.dat"), "wb").close()
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
srv = subprocess.Popen([binary, "--root", root, "--listen", f"127.0.0.1:{port}", "--cores", "1",
                        "--anonymous", "--log-level", "warn", *extra],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def hwm_kib():
    with open(f"/proc/{srv.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")

try:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close(); break
        except OSError:
            time.sleep(0.05)
    ftp = ftplib.FTP(); ftp.connect("127.0.0.1", port, timeout=120); ftp.login()
    ftp.voidcmd("NOOP")
    base = hwm_kib()
    report = [f"after login {base} KiB"]
    for what in VERBS:
        if what == "STAT":
            # One multi-line 213 reply: a first line, a line per entry, a last line. ftplib
            # stops at the first line that starts "213 ", so a middle one would show here.
            lines = ftp.sendcmd(f"STAT {name}").split("\n")
            assert lines[0].startswith("213-") and lines[-1] == "213 End of status", lines[-1]
            count = len(lines) - 2
        else:
            seen = [0]
            ftp.retrlines(f"{what} {name}", lambda _line: seen.__setitem__(0, seen[0] + 1))
            count = seen[0]
        assert count == N, f"{what}: {count} lines"
        report.append(f"{what} {hwm_kib()} KiB")
    peak = hwm_kib()
    print(f"{binary}, {N} entries: {'; '.join(report)}; listing cost {peak - base} KiB of peak RSS")
    ftp.quit()
finally:
    srv.kill(); srv.wait()
