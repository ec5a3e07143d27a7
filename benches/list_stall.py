#!/usr/bin/env python3
"""Longest stall of a shard's other session while one session LISTs a 100,000-entry directory.
usage: list_stall.py RINGFTPD [ENGINE_ARGS...]"""
import ftplib, os, socket, subprocess, sys, threading, time
binary = sys.argv[1]; extra = sys.argv[2:]
root = "/dev/shm/ringlist"
big = os.path.join(root, "big")
if not os.path.isdir(big) or len(os.listdir(big)) < 100000:
    os.makedirs(big, exist_ok=True)
    for i in range(100000):
        open(os.path.join(big, f"f{i:06d}.dat"), "wb").close()
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
srv = subprocess.Popen([binary, "--root", root, "--listen", f"127.0.0.1:{port}", "--cores", "1",
                        "--anonymous", "--log-level", "warn", *extra],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close(); break
        except OSError:
            time.sleep(0.05)
    pinger = ftplib.FTP(); pinger.connect("127.0.0.1", port, timeout=30); pinger.login()
    lister = ftplib.FTP(); lister.connect("127.0.0.1", port, timeout=60); lister.login()
    done = threading.Event(); worst = [0.0]; samples = [0]
    def ping():
        while not done.is_set():
            t = time.perf_counter(); pinger.voidcmd("NOOP"); d = time.perf_counter() - t
            worst[0] = max(worst[0], d); samples[0] += 1
            time.sleep(0.002)
    th = threading.Thread(target=ping); th.start()
    lines = 0; t0 = time.perf_counter()
    for _ in range(3):
        out = []
        lister.retrlines("LIST big", out.append); lines = len(out)
    elapsed = time.perf_counter() - t0
    done.set(); th.join()
    print(f"{os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(binary))))}: 3 LIST of {lines} entries in {elapsed:.2f}s; "
          f"longest NOOP {worst[0]*1000:.1f} ms over {samples[0]} NOOPs")
finally:
    srv.kill(); srv.wait()
