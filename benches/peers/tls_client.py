"""FTPS (explicit, AUTH TLS) client for benches/tls-compare.sh: Python stdlib only.

A small FTP-over-TLS control client of its own (not ftplib), so that every test sends exactly
the same commands to every server: connect, 220, AUTH TLS, PBSZ 0, PROT P, USER, PASS, and
QUIT or nothing. Certificates are not verified (the benchmark's one self-signed cert); every
socket operation has a timeout. Each subcommand prints one JSON object.

Common options: --host, --timeout, --curve GROUP (offer only that key exchange group).

  ping       --port P                      the 220 greeting arrives (exit 0) or not (exit 1)
  probe      --port P --user U --pass W --path FILE
             TLS version and cipher of the control connection and of one PROT P data
             connection (EPSV, RETR FILE) that offers the control connection's session, and
             whether the server resumed it
  handshakes --port P --user U --pass W --workers 32 --procs 2 --warmup W --duration S
             connect + AUTH TLS + PBSZ 0 + PROT P + USER + PASS + QUIT in a loop, in `workers`
             concurrent connections (threads spread over `procs` processes, so the client is
             not held back by one interpreter lock); counts the loops that completed in the
             S-second window after W seconds of warm-up
  idle       --port P --user U --pass W --sessions N --concurrency C --ready-file F
             --release-file R --hold-max S
             opens N logged-in TLS sessions (C at a time), writes the number held to F, waits
             until R exists (at most S seconds), checks every session with NOOP and exits
"""
import argparse
import json
import multiprocessing
import os
import resource
import socket
import ssl
import sys
import threading
import time


CURVE = None  # --curve: offer only this key exchange group (e.g. prime256v1)


def context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if CURVE:
        ctx.set_ecdh_curve(CURVE)
    return ctx


class FtpError(Exception):
    pass


class Control:
    """One control connection; `sock` becomes an SSLSocket after `auth`."""

    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.expect("220")

    def line(self):
        while b"\n" not in self.buf:
            d = self.sock.recv(4096)
            if not d:
                raise FtpError("connection closed")
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("latin-1")

    def reply(self):
        first = self.line()
        code, text = first[:3], first
        if first[3:4] == "-":
            while True:
                ln = self.line()
                if ln[:3] == code and ln[3:4] == " ":
                    text = ln
                    break
        return code, text

    def expect(self, prefix, text=None):
        code, reply = self.reply()
        if not code.startswith(prefix):
            raise FtpError(f"{text or 'greeting'}: {reply[:120]}")
        return reply

    def cmd(self, text, prefix):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.expect(prefix, text.split()[0])

    def auth(self, ctx):
        self.cmd("AUTH TLS", "234")
        if self.buf:
            raise FtpError("bytes in clear after 234")
        self.sock = ctx.wrap_socket(self.sock)

    def login(self, ctx, user, password):
        self.auth(ctx)
        self.cmd("PBSZ 0", "2")
        self.cmd("PROT P", "2")
        code, reply = self.cmd_any(f"USER {user}")
        if code == "331":
            self.cmd(f"PASS {password}", "230")
        elif code != "230":
            raise FtpError(f"USER: {reply[:120]}")

    def cmd_any(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def ping(a):
    try:
        Control(a.host, a.port, a.timeout).close()
        print(json.dumps({"ok": True}))
    except (OSError, FtpError) as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        sys.exit(1)


def probe(a):
    ctx = context()
    c = Control(a.host, a.port, a.timeout)
    c.login(ctx, a.user, a.password)
    out = {"control": {"version": c.sock.version(), "cipher": c.sock.cipher()[0]}}
    c.cmd("TYPE I", "200")
    reply = c.cmd("EPSV", "229")
    port = int(reply.split("(")[1].split("|")[3])
    data = socket.create_connection((a.host, port), timeout=a.timeout)
    c.sock.sendall(f"RETR {a.path}\r\n".encode())
    # TLS 1.3 tickets reach the client with the replies that follow the handshake; by now
    # (after PASS, TYPE, EPSV) the control connection has them.
    d = ctx.wrap_socket(data, session=c.sock.session)
    got = {"version": d.version(), "cipher": d.cipher()[0], "resumed": d.session_reused}
    n = 0
    while True:
        chunk = d.recv(1 << 16)
        if not chunk:
            break
        n += len(chunk)
    d.close()
    code, text = c.reply()
    if code == "150" or code == "125":
        code, text = c.reply()
    out["data"] = dict(got, bytes=n, reply=text[:80])
    c.cmd_any("QUIT")
    c.close()
    print(json.dumps(out))


# ---- handshakes/s --------------------------------------------------------------------------

def hs_proc(a, threads, start, window, stop, q):
    ctx = context()
    lock = threading.Lock()
    stats = {"ops": 0, "total": 0, "errors": 0, "samples": [], "lat": []}

    def worker():
        while time.time() < start:
            time.sleep(0.001)
        while True:
            t0 = time.time()
            if t0 >= stop:
                return
            try:
                c = Control(a.host, a.port, a.timeout)
                try:
                    c.login(ctx, a.user, a.password)
                    c.cmd("QUIT", "221")
                finally:
                    c.close()
                t1 = time.time()
                with lock:
                    stats["total"] += 1
                    if window <= t1 <= stop:
                        stats["ops"] += 1
                        stats["lat"].append(t1 - t0)
            except (OSError, FtpError, ssl.SSLError) as e:
                with lock:
                    stats["errors"] += 1
                    if len(stats["samples"]) < 5:
                        stats["samples"].append(str(e)[:160])
                time.sleep(0.01)

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(stop - time.time() + 2 * a.timeout + 5)
    q.put(stats)


def handshakes(a):
    """The rate counts the loops that end inside [start + warmup, start + warmup + duration]
    (at full concurrency, not the ramp-up: a slow password check takes over a second under
    32 clients); loops in flight at the end are finished, and `total` (every completed loop,
    warm-up and tail included) is what the server's CPU time over the whole run is divided by."""
    procs = max(1, min(a.procs, a.workers))
    per = [a.workers // procs + (1 if i < a.workers % procs else 0) for i in range(procs)]
    start = time.time() + 0.5
    window = start + a.warmup
    stop = window + a.duration
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=hs_proc, args=(a, n, start, window, stop, q)) for n in per]
    for p in ps:
        p.start()
    res = []
    for _ in ps:
        try:
            res.append(q.get(timeout=a.warmup + a.duration + 2 * a.timeout + 30))
        except Exception:  # a stuck process: its counts are lost, the others still report
            break
    for p in ps:
        p.join(5)
        if p.is_alive():
            p.kill()
    ops = sum(r["ops"] for r in res)
    total = sum(r["total"] for r in res)
    errors = sum(r["errors"] for r in res) + (len(ps) - len(res))
    lat = sorted(x for r in res for x in r["lat"])
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3 if lat else None
    print(json.dumps({"ops": ops, "total": total, "errors": errors, "ops_per_s": ops / a.duration,
                      "duration_s": a.duration, "warmup_s": a.warmup, "p99_ms": p99,
                      "samples": [s for r in res for s in r["samples"]][:5]}))


# ---- idle sessions -------------------------------------------------------------------------

def idle(a):
    ctx = context()
    held, errors, samples = [], [0], []
    lock = threading.Lock()
    todo = [a.sessions]

    def opener():
        while True:
            with lock:
                if todo[0] <= 0:
                    return
                todo[0] -= 1
            try:
                c = Control(a.host, a.port, a.timeout)
                c.login(ctx, a.user, a.password)
                with lock:
                    held.append(c)
            except (OSError, FtpError, ssl.SSLError) as e:
                with lock:
                    errors[0] += 1
                    if len(samples) < 5:
                        samples.append(str(e)[:160])

    t0 = time.time()
    ts = [threading.Thread(target=opener, daemon=True) for _ in range(a.concurrency)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    opened = time.time() - t0
    with open(a.ready_file + ".tmp", "w") as f:
        f.write(f"{len(held)}\n")
    os.rename(a.ready_file + ".tmp", a.ready_file)
    end = time.time() + a.hold_max
    while not os.path.exists(a.release_file) and time.time() < end:
        time.sleep(0.1)
    alive = 0
    for c in held:
        try:
            c.cmd("NOOP", "200")
            alive += 1
        except (OSError, FtpError, ssl.SSLError):
            pass
    for c in held:
        c.close()
    print(json.dumps({"sessions": a.sessions, "held": len(held), "alive": alive,
                      "errors": errors[0], "open_s": round(opened, 2), "samples": samples,
                      "client_max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["ping", "probe", "handshakes", "idle"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", default="anonymous")
    p.add_argument("--pass", dest="password", default="bench@")
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--path")
    p.add_argument("--workers", type=int, default=32)
    p.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--duration", type=float, default=4)
    p.add_argument("--warmup", type=float, default=1)
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--ready-file")
    p.add_argument("--release-file")
    p.add_argument("--hold-max", type=float, default=60)
    p.add_argument("--curve")
    a = p.parse_args()
    global CURVE
    CURVE = a.curve
    {"ping": ping, "probe": probe, "handshakes": handshakes, "idle": idle}[a.cmd](a)


if __name__ == "__main__":
    main()
