#!/usr/bin/env python3
"""An ftplib-driven FTP client for ringftp's end-to-end tests.

usage: ftpclient.py --host H --port P [--user U --password PW] [--active] [--timeout S]
                    STEP [STEP...]

With --user, the client logs in before the first step (and exits 2 if it cannot). --active
uses PORT (IPv4) / EPRT (IPv6) instead of PASV / EPSV; with an IPv6 host ftplib uses EPSV and
EPRT by itself.

Each STEP is one argument: a name and its arguments, shell-quoted ("put '/tmp/a b' 'a b'").
Every step prints lines "NAME: RESULT" (listings also "NAME| LINE" per data line). Error
replies are printed, not raised: "NAME: ERR 550 ...". A connection failure prints
"NAME: EXC <ExceptionType> <message>". The exit status is 0 unless the script itself breaks,
so the Rust test decides what each line must say.

Steps:
  login USER PASS          USER + PASS; prints the reply and the time it took (ms=...)
  raw LINE...              send one command line, print the (possibly multi-line) reply
  get REMOTE LOCAL [REST]  retrbinary (TYPE I); with REST, LOCAL is kept up to REST and
                           the rest is appended (a resumed download)
  put LOCAL REMOTE [REST]  storbinary (TYPE I); with REST, sends REST and the file from REST
  appe LOCAL REMOTE        storbinary with APPE
  stou LOCAL [NAME]        STOU; prints "stou-150: <the 150 reply>" and the final reply
  aget REMOTE LOCAL        TYPE A, RETR, saves the bytes as they arrive on the wire
  list|nlst|mlsd [PATH]    the listing, one "NAME| line" per line
  abor REMOTE              starts RETR, reads 1 MiB, sends a plain ABOR, prints the replies
  abor_oob REMOTE          starts RETR, reads 1 MiB, uses ftplib's FTP.abort() (Telnet IP +
                           Synch, ABOR with MSG_OOB), prints the replies
  foreign_pasv REMOTE LOCAL  PASV; RETR; a connection from 127.0.0.2 to the passive port
                           (must get closed, no data); then the real one from 127.0.0.1
  concurrent N SIZE DIR    N more sessions at once (threads), each uploads its own SIZE-byte
                           file (also written to DIR/src_I.bin) as c_I.bin and downloads it
                           back, comparing SHA-256
  wait_reply               waits for one unsolicited reply (e.g. 421 at shutdown)
  put_stall LOCAL REMOTE N [SECS]
                           TYPE I, STOR; prints "put_stall-control: IP:PORT" (the control
                           connection's local address), sends the first N bytes of LOCAL,
                           prints "put_stall: stalled after N bytes", waits SECS (default 60;
                           the test kills the client meanwhile), then closes the data
                           connection and prints the final reply
  quit                     QUIT
"""

import argparse
import ftplib
import hashlib
import os
import random
import shlex
import socket
import sys
import threading
import time

TIMEOUT = 20


def one_line(resp):
    return resp.replace("\r", "").replace("\n", " | ")


def out(name, text):
    print(f"{name}: {text}", flush=True)


def ntransfer(ftp, cmd, rest=None):
    """ftplib's ntransfercmd, but returning the preliminary reply too."""
    if ftp.passiveserver:
        host, port = ftp.makepasv()
        conn = socket.create_connection((host, port), ftp.timeout)
        try:
            if rest is not None:
                ftp.sendcmd("REST %s" % rest)
            resp = ftp.sendcmd(cmd)
            if resp[0] == "2":
                resp = ftp.getresp()
            if resp[0] != "1":
                raise ftplib.error_reply(resp)
        except BaseException:
            conn.close()
            raise
    else:
        with ftp.makeport() as sock:
            if rest is not None:
                ftp.sendcmd("REST %s" % rest)
            resp = ftp.sendcmd(cmd)
            if resp[0] == "2":
                resp = ftp.getresp()
            if resp[0] != "1":
                raise ftplib.error_reply(resp)
            conn, _ = sock.accept()
            conn.settimeout(ftp.timeout)
    return conn, resp


def step_login(ftp, args):
    t0 = time.monotonic()
    try:
        resp = ftp.login(args[0], args[1])
    except ftplib.all_errors as e:
        ms = int((time.monotonic() - t0) * 1000)
        return f"ERR {one_line(str(e))} ms={ms}"
    ms = int((time.monotonic() - t0) * 1000)
    return f"{one_line(resp)} ms={ms}"


def step_get(ftp, args):
    remote, local = args[0], args[1]
    rest = int(args[2]) if len(args) > 2 else None
    if rest is None:
        f = open(local, "wb")
    else:
        f = open(local, "r+b" if os.path.exists(local) else "wb")
        f.truncate(rest)
        f.seek(rest)
    with f:
        return one_line(ftp.retrbinary("RETR " + remote, f.write, blocksize=1 << 16, rest=rest))


def step_put(ftp, args):
    local, remote = args[0], args[1]
    rest = int(args[2]) if len(args) > 2 else None
    with open(local, "rb") as f:
        if rest is not None:
            f.seek(rest)
        return one_line(ftp.storbinary("STOR " + remote, f, blocksize=1 << 16, rest=rest))


def step_appe(ftp, args):
    with open(args[0], "rb") as f:
        return one_line(ftp.storbinary("APPE " + args[1], f, blocksize=1 << 16))


def step_stou(ftp, args):
    ftp.voidcmd("TYPE I")
    cmd = "STOU" if len(args) < 2 else "STOU " + args[1]
    with open(args[0], "rb") as f:
        data = f.read()
    conn, resp = ntransfer(ftp, cmd)
    out("stou-150", one_line(resp))
    with conn:
        conn.sendall(data)
    return one_line(ftp.voidresp())


def step_aget(ftp, args):
    ftp.voidcmd("TYPE A")
    conn, _ = ntransfer(ftp, "RETR " + args[0])
    with conn, open(args[1], "wb") as f:
        while True:
            b = conn.recv(1 << 16)
            if not b:
                break
            f.write(b)
    resp = ftp.voidresp()
    ftp.voidcmd("TYPE I")
    return one_line(resp)


def listing(ftp, name, verb, args):
    cmd = verb if not args else verb + " " + " ".join(args)
    lines = []
    resp = ftp.retrlines(cmd, lines.append)
    for line in lines:
        print(f"{name}| {line}", flush=True)
    return one_line(resp)


def start_big_retr(ftp, remote):
    ftp.voidcmd("TYPE I")
    conn, resp = ntransfer(ftp, "RETR " + remote)
    out("abor-150", one_line(resp))
    got = 0
    while got < (1 << 20):
        b = conn.recv(1 << 16)
        if not b:
            break
        got += len(b)
    out("abor-read", str(got))
    return conn


def drain(conn):
    """Reads the data connection to its end: the server must close it after an abort."""
    conn.settimeout(10)
    n = 0
    try:
        while True:
            b = conn.recv(1 << 20)
            if not b:
                return f"closed after {n} more bytes"
            n += len(b)
    except ConnectionResetError:
        return f"reset after {n} more bytes"
    except socket.timeout:
        return f"still open after {n} more bytes"


def step_abor(ftp, args):
    conn = start_big_retr(ftp, args[0])
    ftp.sock.sendall(b"ABOR\r\n")
    first = ftp.getmultiline()
    out("abor-reply", one_line(first))
    if first.startswith("426") or (first.startswith("226") and "ABOR" not in first):
        out("abor-reply", one_line(ftp.getmultiline()))
    out("abor-data", drain(conn))
    conn.close()
    return "done"


def step_abor_oob(ftp, args):
    conn = start_big_retr(ftp, args[0])
    first = ftp.abort()
    out("abor-reply", one_line(first))
    if first.startswith("426") or (first.startswith("226") and "ABOR" not in first):
        out("abor-reply", one_line(ftp.getmultiline()))
    out("abor-data", drain(conn))
    conn.close()
    return "done"


def step_foreign_pasv(ftp, args):
    remote, local = args[0], args[1]
    ftp.voidcmd("TYPE I")
    resp = ftp.sendcmd("PASV")
    out("pasv", one_line(resp))
    host, port = ftplib.parse227(resp)
    ftp.putcmd("RETR " + remote)
    foreign = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    foreign.settimeout(5)
    foreign.bind(("127.0.0.2", 0))
    try:
        foreign.connect((host, port))
        try:
            b = foreign.recv(1 << 16)
            out("foreign", "closed" if not b else f"got {len(b)} bytes")
        except ConnectionResetError:
            out("foreign", "closed (reset)")
        except socket.timeout:
            out("foreign", "still open")
    except OSError as e:
        out("foreign", f"connect failed {type(e).__name__} {e}")
    finally:
        foreign.close()
    conn = socket.create_connection((host, port), TIMEOUT, source_address=("127.0.0.1", 0))
    out("retr-150", one_line(ftp.getresp()))
    with conn, open(local, "wb") as f:
        while True:
            b = conn.recv(1 << 16)
            if not b:
                break
            f.write(b)
    return one_line(ftp.voidresp())


def step_concurrent(opts, args):
    n, size, directory = int(args[0]), int(args[1]), args[2]
    barrier = threading.Barrier(n, timeout=60)
    results = [None] * n

    def worker(i):
        try:
            data = random.Random(i).randbytes(size)
            src = os.path.join(directory, f"src_{i}.bin")
            with open(src, "wb") as f:
                f.write(data)
            ftp = connect(opts)
            ftp.login(opts.user, opts.password)
            barrier.wait()
            with open(src, "rb") as f:
                ftp.storbinary(f"STOR c_{i}.bin", f, blocksize=1 << 16)
            chunks = []
            ftp.retrbinary(f"RETR c_{i}.bin", chunks.append, blocksize=1 << 16)
            got = b"".join(chunks)
            barrier.wait()
            ftp.quit()
            if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
                results[i] = f"FAIL checksum ({len(got)} of {size} bytes)"
            else:
                results[i] = "ok"
        except Exception as e:  # noqa: BLE001 - reported to the test
            barrier.abort()
            results[i] = f"FAIL {type(e).__name__} {e}"

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    ok = 0
    for i, r in enumerate(results):
        if r is None:
            r = "FAIL still running"
        if r == "ok":
            ok += 1
        print(f"conc {i} {r}", flush=True)
    return f"ok={ok} fail={n - ok}"


def step_put_stall(ftp, args):
    local, remote, n = args[0], args[1], int(args[2])
    secs = float(args[3]) if len(args) > 3 else 60.0
    ftp.voidcmd("TYPE I")
    conn, resp = ntransfer(ftp, "STOR " + remote)
    out("put_stall-150", one_line(resp))
    out("put_stall-control", "%s:%d" % ftp.sock.getsockname()[:2])
    with open(local, "rb") as f:
        data = f.read(n)
    conn.sendall(data)
    out("put_stall", f"stalled after {len(data)} bytes")
    time.sleep(secs)
    conn.close()
    return one_line(ftp.voidresp())


def step_wait_reply(ftp, args):
    return one_line(ftp.getmultiline())


def connect(opts):
    ftp = ftplib.FTP(timeout=opts.timeout)
    ftp.connect(opts.host, opts.port)
    if opts.active:
        ftp.set_pasv(False)
    return ftp


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user")
    p.add_argument("--password", default="")
    p.add_argument("--active", action="store_true")
    p.add_argument("--timeout", type=float, default=TIMEOUT)
    p.add_argument("steps", nargs="*")
    opts = p.parse_args()

    ftp = connect(opts)
    out("greeting", one_line(ftp.welcome or ""))
    if opts.user is not None:
        r = step_login(ftp, [opts.user, opts.password])
        out("login", r)
        if r.startswith("ERR"):
            sys.exit(2)

    simple = {
        "login": step_login,
        "get": step_get,
        "put": step_put,
        "appe": step_appe,
        "stou": step_stou,
        "aget": step_aget,
        "abor": step_abor,
        "abor_oob": step_abor_oob,
        "foreign_pasv": step_foreign_pasv,
        "wait_reply": step_wait_reply,
        "put_stall": step_put_stall,
    }
    for step in opts.steps:
        name, _, rest = step.strip().partition(" ")
        try:
            if name == "raw":
                result = one_line(ftp.sendcmd(rest))
            elif name in ("list", "nlst", "mlsd"):
                result = listing(ftp, name, name.upper(), [rest] if rest else [])
            elif name == "quit":
                result = one_line(ftp.quit())
            elif name == "concurrent":
                result = step_concurrent(opts, shlex.split(rest))
            elif name in simple:
                result = simple[name](ftp, shlex.split(rest))
            else:
                print(f"unknown step {name!r}", file=sys.stderr)
                sys.exit(64)
        except ftplib.Error as e:
            result = "ERR " + one_line(str(e))
        except (OSError, EOFError) as e:
            result = f"EXC {type(e).__name__} {e}"
        out(name, result)


if __name__ == "__main__":
    main()
