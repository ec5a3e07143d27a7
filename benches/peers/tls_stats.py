"""The Markdown report of benches/tls-compare.sh, from its raw TSV (stats.py's columns) and
meta.json: medians (min..max) per row and server, ringftpd / vsftpd per row, server CPU per GB
or per handshake, the issue's targets, and what each server negotiated.

  python3 benches/peers/tls_stats.py RAW.tsv META.json ELAPSED RAW-LINK > results.md
"""
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stats import cell, cpu_cell, num, read_raw, server_cell  # noqa: E402

# row, label, higher is better, target (ringftpd / vsftpd), "min" or "max"
ROWS = [
    ("retr", "RETR {big}, PROT P, EPSV (MB/s)", True, (1.3, "min")),
    ("stor", "STOR {big}, PROT P, EPSV (MB/s)", True, (1.3, "min")),
    ("hs-pass", "connect + AUTH TLS + login + QUIT, {w} clients, password (/s)", True, None),
    ("hs-anon", "connect + AUTH TLS + login + QUIT, {w} clients, anonymous (/s)", True, None),
    ("idle", "idle logged-in TLS session, PSS per session (KiB)", False, (0.1, "max")),
]
CLIENT = {"retr": "curl", "stor": "curl", "hs-pass": "python", "hs-anon": "python",
          "idle": "python"}


def main():
    raw, meta_path, elapsed, link = sys.argv[1:5]
    meta = json.load(open(meta_path))
    rows = read_raw(raw)
    servers = meta["servers"]
    ours = [s for s in servers if s.startswith("ringftpd")]
    peer = "vsftpd" if "vsftpd" in servers else None
    out = []
    smoke = meta.get("smoke")
    out.append("# FTPS benchmark: ringftpd against vsftpd (ssl_enable=YES)" + (" — SMOKE RUN" if smoke else ""))
    out.append("")
    if smoke:
        out += ["**Smoke run** (tiny sizes, one round, on a machine busy with another benchmark): "
                "it shows that the script works, not how fast anything is.", ""]
    out.append(f"Recorded {meta['date']} with `{meta['command'].strip()}`; run time {elapsed}.")
    out.append("")
    out.append(f"- Machine: {meta['machine']}. Client and servers share the cores on loopback; "
               "tmpfs data.")
    out.append(f"- Versions: {meta['versions']}.")
    out.append(f"- Certificate: {meta['cert']}. ringftpd: `--tls required --tls-data required "
               f"--ktls {meta['ktls']}` (session reuse enforced, the default); vsftpd: "
               "`ssl_enable=YES`, `force_local_logins_ssl`, `force_local_data_ssl`, "
               "`force_anon_*_ssl`, `require_ssl_reuse=YES`, `ssl_request_cert=NO`.")
    out.append("- Negotiated (curl -v: control connection / PROT P data connection; Python "
               "client: whether the data connection resumed the control connection's session):")
    for s in servers:
        t = meta.get("tls", {}).get(s)
        if not t:
            continue
        p = t.get("probe", {})
        d = p.get("data", {})
        hrr = "; **HelloRetryRequest** on every handshake (the client's X25519 key share is refused)" \
            if t.get("hello_retry") else ""
        out.append(f"  - {s}: control `{t['curl_control']}`, data `{t['curl_data']}`; "
                   f"data resumed: curl {'yes' if t.get('curl_reuse') else 'no'}, Python "
                   f"{'yes' if d.get('resumed') else 'no'} ({d.get('version')}, {d.get('cipher')}){hrr}.")
    out.append(f"- Clients: curl --ssl-reqd -k (RETR to /dev/null, STOR from tmpfs; MB/s from curl's "
               f"size / time_total); benches/peers/tls_client.py (Python ssl) for the handshake "
               f"loop ({meta['hs_workers']} concurrent connections, counted over {meta['hs_secs']} s "
               f"after {meta.get('hs_warmup', 0)} s at full concurrency: connect, "
               f"AUTH TLS, PBSZ 0, PROT P, USER, PASS, QUIT) and for the idle sessions "
               f"({meta['idle_ringftpd']} on ringftpd, {meta['idle_vsftpd']} on vsftpd, which forks "
               f"three processes per TLS session; anonymous logins; the figure is per session).")
    orphans = os.path.join(os.path.dirname(os.path.abspath(meta_path)), "orphans")
    if "vsftpd" in servers and os.path.exists(orphans):
        out.append("- vsftpd runs under a child subreaper (benches/peers/tls_reaper.py): some of its "
                   "session processes outlive their parent and would be re-parented to init, taking "
                   "their CPU time out of the tree's (about half of a TLS RETR's, measured); the "
                   f"subreaper reaps them, so they count. This run: {open(orphans).read().strip()}.")
    if meta.get("client_curve"):
        out.append(f"- Both clients offered only the `{meta['client_curve']}` key exchange group "
                   "(CLIENT_CURVE).")
    out.append("- Password logins measure each server's password check too: PAM/yescrypt on every "
               "login (vsftpd); argon2id once, then ringftpd's verified-credential cache (a keyed "
               "MAC, microseconds) for the same user and password again (ringftpd). The anonymous "
               "row is TLS and session set-up alone.")
    out.append(f"- Raw per-round numbers: [{link}]({link}).")
    out.append("")

    measured = [r for r in rows if r["server"] in servers]
    done = sorted({r["round"] for r in measured})
    out.append(f"Median (min..max) over {len(done)} interleaved round(s) (of {meta['rounds']} "
               "planned), server order rotated each round.")
    out.append("")
    out.append("| workload | " + " | ".join(servers) + "".join(f" | {s} / vsftpd" for s in ours)
               + " | target |")
    out.append("|" + "---|" * (2 + len(servers) + len(ours)))
    cost = ["| workload | " + " | ".join(servers) + " |", "|" + "---|" * (1 + len(servers))]
    checks, notes = [], []
    fmtargs = {"big": meta["big"], "w": meta["hs_workers"]}
    for key, label, higher, target in ROWS:
        cells, meds, cpus = [], {}, []
        for s in servers:
            rs = [r for r in measured if r["server"] == s and r["row"] == key]
            med, text = server_cell(rs, f"{s} {key}", notes)
            if med is not None:
                meds[s] = med
            cells.append(text)
            cpus.append(cpu_cell(rs, "s/GB" if key in ("retr", "stor") else "ms/handshake"))
        ratios = []
        for s in ours:
            if s in meds and peer in meds and meds[peer]:
                r = meds[s] / meds[peer]
                ratios.append(f"{r:.2f}×")
                if target:
                    t, kind = target
                    ok = r >= t if kind == "min" else r <= t
                    checks.append(f"- {label.format(**fmtargs)}, {s}: {r:.2f}× vsftpd, target "
                                  f"{'≥' if kind == 'min' else '≤'} {t}×: "
                                  f"**{'met' if ok else 'not met'}**.")
            else:
                ratios.append("—")
        tgt = "—" if not target else f"{'≥' if target[1] == 'min' else '≤'} {target[0]}×"
        lab = label.format(**fmtargs) + ("" if higher else " (lower is better)")
        out.append(f"| {lab} | " + " | ".join(cells) + "".join(f" | {x}" for x in ratios)
                   + f" | {tgt} |")
        if key != "idle":
            cost.append(f"| {label.format(**fmtargs)} | " + " | ".join(cpus) + " |")
    loads = [num(r["value"]) for r in rows if r["row"] == "load" and num(r["value"]) is not None]
    if loads:
        out += ["", f"1-minute load average at the start of each round: {cell(loads)[1]}."]
    out += ["", "Server CPU (medians): CPU time of the server's process tree (reaped session "
            "processes included) per GB moved or per completed handshake loop (warm-up included), from "
            "/proc/PID/stat before and after each run.", ""] + cost
    idle_notes = [f"- {r['server']} round {r['round']}: {r['note']}" for r in measured
                  if r["row"] == "idle"]
    if idle_notes:
        out += ["", "Idle sessions (per round):"] + idle_notes
    if checks:
        out += ["", "Targets (issue 11 § 5, ringftpd / vsftpd on medians):"] + checks
    if notes:
        out += ["", "Errors:"] + [f"- {n}" for n in notes]
    print("\n".join(out))


if __name__ == "__main__":
    main()
