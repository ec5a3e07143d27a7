"""Helpers for benches/compare.sh: process-tree CPU and memory from /proc, one raw TSV line per
measurement, and the Markdown report built from the raw lines.

Subcommands:
  count PID                    how many processes the tree has
  settle PID N0 SECS           wait until the tree has N0 processes again, then print its CPU
  cpu PID                      CPU seconds of PID's process tree (utime+stime+cutime+cstime)
  tree PID                     the pids of the tree
  pss PID                      summed PSS (KiB) of the tree
  bench ROUND SERVER ROW CLIENT UNIT CPU0 CPU1 RC JSON [NOTE [CLIENT_CPU]]   a TSV line from
                               ringftp-bench --json
  line ROUND SERVER ROW CLIENT UNIT VALUE CPU0 CPU1 BYTES OPS ERRORS WALL [NOTE [CLIENT_CPU]]
                               a TSV line (CLIENT_CPU: the client's CPU seconds in the run)
  report RAW.tsv META.json OUT.md   the tables
"""
import json
import os
import statistics
import sys
import time

COLUMNS = ["round", "server", "row", "client", "value", "unit", "server_cpu_s", "bytes", "ops",
           "errors", "p99_ms", "wall_s", "note", "client_cpu_s"]


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    # comm may contain spaces and parentheses: the fields start after the last ')'.
    return s[s.rindex(")") + 2:].split()


def tree(root):
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                children.setdefault(int(stat_fields(d)[1]), []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu(root):
    """utime+stime+cutime+cstime over the live tree: reaped children are in their parent's
    cutime/cstime (when the parent waits for them), live ones count themselves, so nothing
    counts twice."""
    ticks = 0
    for p in tree(root):
        try:
            ticks += sum(int(x) for x in stat_fields(p)[11:15])
        except (OSError, ValueError, IndexError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def settle(root, n0, limit):
    """Waits (up to `limit` s) until the tree is back to `n0` processes: a forking server's
    session processes exit after the client has gone, and their CPU time reaches the tree
    (the parent's cutime) only once they are reaped."""
    end = time.time() + limit
    while len(tree(root)) > n0 and time.time() < end:
        time.sleep(0.05)
    time.sleep(0.05)


def pss(root):
    total = 0
    for p in tree(root):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def tsv(fields):
    return "\t".join("" if v is None else str(v).replace("\t", " ").replace("\n", " ")
                     for v in fields)


def cpu_delta(cpu0, cpu1):
    d = float(cpu1) - float(cpu0)
    # Negative: the server stopped during the run and its CPU time went with it.
    return round(d, 3) if d >= 0 else None


def client_cpu(v):
    c = num(v)
    return round(c, 3) if c is not None and c >= 0 else None


def bench_line(args):
    rnd, server, row, client, unit, cpu0, cpu1, rc, path = args[:9]
    note = args[9] if len(args) > 9 else ""
    ccpu = client_cpu(args[10] if len(args) > 10 else None)
    try:
        with open(path) as f:
            r = json.loads(f.read().strip() or "null")
    except (OSError, ValueError):
        r = None
    if not r:
        print(tsv([rnd, server, row, client, None, unit, cpu_delta(cpu0, cpu1), 0, 0, 1, None,
                   None, f"no result (exit {rc}) {note}".strip(), ccpu]))
        return
    if unit == "MB/s":
        value = r.get("mb_per_s")
    elif unit == "KiB/session":
        value = None  # filled in by the caller's note (PSS); see idle in compare.sh
    else:
        value = r.get("ops_per_s")
    lat = r.get("latency_ms") or {}
    errors = r.get("error_count", 0)
    if errors:
        note = (note + " errors: " + json.dumps(r.get("errors"))[:300]).strip()
    if rc != "0":
        note = (note + f" exit {rc}").strip()
    extra = {k: r[k] for k in ("held",) if k in r}
    if extra:
        note = (note + " " + json.dumps(extra)).strip()
    print(tsv([rnd, server, row, client, None if value is None else round(value, 2), unit,
               cpu_delta(cpu0, cpu1), r.get("bytes", 0), r.get("ops", 0), errors,
               lat.get("p99"), r.get("elapsed_s") or r.get("duration_s"), note, ccpu]))


def plain_line(args):
    rnd, server, row, client, unit, value, cpu0, cpu1, nbytes, ops, errors, wall = args[:12]
    note = args[12] if len(args) > 12 else ""
    ccpu = client_cpu(args[13] if len(args) > 13 else None)
    print(tsv([rnd, server, row, client, value or None, unit, cpu_delta(cpu0, cpu1), nbytes, ops,
               errors, None, wall, note, ccpu]))


# ---- report --------------------------------------------------------------------------------

def read_raw(path):
    rows = []
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            if not line.strip():
                continue
            vals = line.rstrip("\n").split("\t")
            rows.append(dict(zip(head, vals + [""] * (len(head) - len(vals)))))
    return rows


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def fmt(v):
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(vals):
    if not vals:
        return None, "failed"
    med = statistics.median(vals)
    if len(vals) == 1:
        return med, fmt(med)
    return med, f"{fmt(med)} ({fmt(min(vals))}..{fmt(max(vals))})"


def server_cell(rs, what, notes):
    """The median (None without one) and the table cell of one server's raw lines `rs` for a
    row; their errors are flagged in the cell and told in `notes`, under `what`."""
    vals = [num(r["value"]) for r in rs if num(r["value"]) is not None]
    med, text = cell(vals)
    if not rs:
        text = "—"
    errs = sum(int(num(r["errors"]) or 0) for r in rs)
    if errs:
        text += f" ⚠{errs} err"
        notes.append(f"{what}: {errs} errors; "
                     + "; ".join(r["note"] for r in rs if r["note"])[:400])
    return med, text


def cpu_cell(rs, unit, column="server_cpu_s"):
    """The median CPU time in `column` (the server's, or the client's) of `rs`: per GB moved on
    MB/s lines, else in ms per operation; `unit` names it."""
    per = []
    for r in rs:
        c, b, o = num(r.get(column)), num(r["bytes"]), num(r["ops"])
        if c is None:
            continue
        if r["unit"] == "MB/s" and b:
            per.append(c / (b / 1e9))
        elif o:
            per.append(c * 1e3 / o)
    return f"{fmt(statistics.median(per))} {unit}" if per else "—"


CLIENT_LABEL = {"curl": "curl 8", "curl-system": "curl (system)", "bench-buffer": "bench, buffer",
                "bench-null": "bench, null", "bench": "bench"}


def report(args):
    raw, meta_path, out_md = args
    meta = json.load(open(meta_path))
    rows = read_raw(raw)
    measured = [r for r in rows if r["round"] != "0"] or rows
    servers = meta["servers"]
    ours = [s for s in servers if s.startswith("ringftpd")]
    peers = [s for s in servers if not s.startswith("ringftpd")]
    order = meta["rows"]  # [[row, label, higher_is_better, [clients]]]
    out = []
    done = sorted({r["round"] for r in measured})
    warm = " after a warm-up round" if meta.get("warmup") else ""
    out.append(f"Median (min..max) over {len(done)} interleaved round(s){warm} "
               f"(of {meta['rounds']} planned); server order rotated each round.")
    out.append("")
    head = "| workload | client | " + " | ".join(servers) + " | " + " | ".join(
        f"{s} / best peer" for s in ours) + " |"
    out.append(head)
    out.append("|" + "---|" * (2 + len(servers) + len(ours)))
    cost = ["| workload | client | " + " | ".join(servers) + " |",
            "|" + "---|" * (2 + len(servers))]
    client_cost = list(cost)
    notes = []
    for key, label, higher, clients in order:
        for client in clients:
            cells, meds, cpus, client_cpus = [], {}, [], []
            any_data = False
            for s in servers:
                rs = [r for r in measured if r["server"] == s and r["row"] == key
                      and r["client"] == client]
                any_data = any_data or bool(rs)
                med, text = server_cell(rs, f"{s} {key} {client}", notes)
                if med is not None:
                    meds[s] = med
                cells.append(text)
                # Server and client CPU per GB (bytes rows) or per operation.
                unit = "s/GB" if rs and rs[0]["unit"] == "MB/s" else "ms/op"
                cpus.append(cpu_cell(rs, unit))
                client_cpus.append(cpu_cell(rs, unit, "client_cpu_s"))
            if not any_data:
                continue
            ratios = []
            pm = [meds[p] for p in peers if p in meds]
            for s in ours:
                if s in meds and pm:
                    best = max(pm) if higher else min(pm)
                    ratios.append(f"{meds[s] / best:.2f}×" if best else "—")
                else:
                    ratios.append("—")
            lab = label + ("" if higher else " (lower is better)")
            out.append(f"| {lab} | {CLIENT_LABEL.get(client, client)} | " + " | ".join(cells)
                       + " | " + " | ".join(ratios) + " |")
            if key != "idle":
                cost.append(f"| {label} | {CLIENT_LABEL.get(client, client)} | "
                            + " | ".join(cpus) + " |")
                if any(c != "—" for c in client_cpus):
                    client_cost.append(f"| {label} | {CLIENT_LABEL.get(client, client)} | "
                                       + " | ".join(client_cpus) + " |")
    ip = [num(r["value"]) for r in measured if r["row"] == "iperf3" and num(r["value"])]
    med, text = cell(ip)
    out.append("")
    out.append(f"Loopback TCP ceiling (iperf3, 1 stream, every round): {text} MB/s.")
    loads = [num(r["value"]) for r in measured if r["row"] == "load" and num(r["value"]) is not None]
    if loads:
        out.append("")
        out.append(f"1-minute load average at the start of each round: {cell(loads)[1]} "
                   f"(other jobs on the shared machine).")
    # Concurrency sweep: MB/s (p99 ms).
    sweep = meta.get("sweep") or []
    if sweep:
        out += ["", "Concurrency sweep (ringftp-bench `retr --sink buffer`, "
                f"{meta['sweep_size']} file fetched again and again for {meta['sweep_secs']} s): "
                "MB/s median (min..max), p99 latency ms median.", "",
                "| sessions | " + " | ".join(servers) + " | " + " | ".join(
                    f"{s} / best peer" for s in ours) + " |",
                "|" + "---|" * (1 + len(servers) + len(ours))]
        for n in sweep:
            key = f"sweep-{n}"
            cells, meds, p99s = [], {}, {}
            for s in servers:
                rs = [r for r in measured if r["server"] == s and r["row"] == key]
                vals = [num(r["value"]) for r in rs if num(r["value"]) is not None]
                lat = [num(r["p99_ms"]) for r in rs if num(r["p99_ms"]) is not None]
                med, text = cell(vals)
                if not rs:
                    text = "—"
                if lat:
                    p99s[s] = statistics.median(lat)
                    text += f", p99 {fmt(p99s[s])}"
                errs = sum(int(num(r["errors"]) or 0) for r in rs)
                if errs:
                    text += f" ⚠{errs} err"
                if med is not None:
                    meds[s] = med
                cells.append(text)
            ratios = []
            pm = [meds[p] for p in peers if p in meds]
            pl = [p99s[p] for p in peers if p in p99s]
            for s in ours:
                if s in meds and pm and max(pm):
                    t = f"{meds[s] / max(pm):.2f}×"
                    if s in p99s and pl and min(pl):
                        t += f", p99 {p99s[s] / min(pl):.2f}× best"
                    ratios.append(t)
                else:
                    ratios.append("—")
            out.append(f"| {n} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    out += ["", "Server CPU (medians): CPU time of the server's process tree per GB moved or "
            "per operation, from /proc/PID/stat before and after each run.", ""] + cost
    if len(client_cost) > 2:
        out += ["", "Client CPU (medians): CPU time of the client (curl or ringftp-bench, with the "
                "`timeout` around it) per GB or per operation, from bash's `times` before and after "
                "each run. Beside the wall time per GB (1000 / MB/s) it shows whose CPU sets the "
                "pace: a single client near one CPU-second per second of wall time is the limit for "
                "every server alike.", ""] + client_cost
    if notes:
        out += ["", "Errors:"] + [f"- {n}" for n in notes]
    text = "\n".join(out) + "\n"
    with open(out_md, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "cpu":
        print(cpu(int(a[0])))
    elif cmd == "tree":
        print(" ".join(str(p) for p in tree(int(a[0]))))
    elif cmd == "count":
        print(len(tree(int(a[0]))))
    elif cmd == "settle":
        settle(int(a[0]), int(a[1]), float(a[2]))
        print(cpu(int(a[0])))
    elif cmd == "pss":
        print(pss(int(a[0])))
    elif cmd == "header":
        print(tsv(COLUMNS))
    elif cmd == "bench":
        bench_line(a)
    elif cmd == "line":
        plain_line(a)
    elif cmd == "report":
        report(a)
    else:
        sys.exit(f"unknown subcommand {cmd}")
