#!/usr/bin/python3
"""Report step of bench/http.sh: parse the wrk outputs it left in its temp dir,
print a table, and write one JSON file.

  http_report.py summary FILE [TICKS HZ]   one-line summary of one wrk output
  http_report.py report --tmp DIR --out FILE [--meta K=V ...]

runs.tsv in DIR: config, size, round, wrk output path, wrk exit code ("dead" if the
proxy was gone), proxy CPU ticks (utime+stime delta, "-" for direct), clock ticks
per second, connections the origin accepted during the run, requests it served,
busy ticks of the proxy CPU and of the load CPU (all processes) during the run, and
ticks used by our own origin + wrk during the run.
checks.tsv in DIR: config, size, "ok" or the problem the curl check found.
"""

import argparse
import json
import os
import re
import statistics
import sys

CONFIGS = ["direct", "reversed", "nginx", "haproxy"]
PROXIES = ["reversed", "nginx", "haproxy"]
SIZES = ["small", "big"]
# a run where other jobs took more than this share of a CPU we use is flagged
OTHER_CPU_WARN_PCT = 10.0
# CPU per request targets from the issue: reversed <= 0.75x nginx, <= 0.85x haproxy
CPU_TARGETS = {"nginx": 0.75, "haproxy": 0.85}

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def parse_wrk(path):
    """Figures from one `wrk --latency` output; "parse_error" if it has no summary."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError as e:
        return {"parse_error": f"unreadable wrk output: {e}"}
    r = {}
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h), ([0-9.]+\w+) read", text, re.M)
    if m:
        r["requests"] = int(m.group(1))
        r["seconds"] = float(m.group(2)) * UNITS[m.group(3)] / 1e3
        r["read"] = m.group(4)
    m = re.search(r"^Requests/sec:\s*([0-9.]+)", text, re.M)
    if m:
        r["rps"] = float(m.group(1))
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s*{pct}(?:\.0+)?%\s+(\S+)", text, re.M)
        if m:
            r[f"p{pct}_ms"] = to_ms(m.group(1))
    m = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    if m:
        r["avg_ms"], r["max_ms"] = to_ms(m.group(1)), to_ms(m.group(3))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errs = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()))) if m else {}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["non_2xx_3xx"] = int(m.group(1)) if m else 0
    r["socket_errors"] = errs
    r["errors_total"] = sum(errs.values()) + r["non_2xx_3xx"]
    if "requests" not in r or "rps" not in r or "p99_ms" not in r:
        tail = " | ".join(text.strip().splitlines()[-3:])
        r["parse_error"] = f"no wrk summary in output: {tail[:300]}"
    return r


def fmt(v, spec):
    return format(v, spec) if v is not None else "-"


def ratio(a, b):
    return a / b if a is not None and b else None


def cpu_us_per_req(r, ticks, hz):
    if ticks in ("-", None) or not r.get("requests"):
        return None
    return int(ticks) / int(hz) / r["requests"] * 1e6


def error_text(r):
    parts = [f"{k} {v}" for k, v in r.get("socket_errors", {}).items() if v]
    if r.get("non_2xx_3xx"):
        parts.append(f"non-2xx/3xx {r['non_2xx_3xx']}")
    return ", ".join(parts)


def cmd_summary(args):
    r = parse_wrk(args.file)
    if "parse_error" in r:
        print(f"FAILED ({r['parse_error']})")
        return
    cpu = cpu_us_per_req(r, args.ticks, args.hz)
    txt = f"{r['rps']:.0f} req/s, p99 {fmt(r.get('p99_ms'), '.2f')} ms"
    if cpu is not None:
        txt += f", proxy CPU {cpu:.2f} us/req ({args.ticks} ticks)"
    if r["errors_total"]:
        txt += f", ERRORS: {error_text(r)}"
    print(txt)


def cmd_report(args):
    runs = []
    with open(os.path.join(args.tmp, "runs.tsv")) as f:
        for line in f:
            (cfg, size, rnd, path, rc, ticks, hz, dacc, dreq, busy, lbusy,
             lours) = line.rstrip("\n").split("\t")
            run = {"config": cfg, "size": size, "round": int(rnd), "ok": False}
            if rc == "dead":
                run["error"] = "process was not running"
                runs.append(run)
                continue
            w = parse_wrk(path)
            run.update({k: v for k, v in w.items() if k != "parse_error"})
            run["proxy_cpu_s"] = int(ticks) / int(hz) if ticks != "-" else None
            run["proxy_cpu_us_per_req"] = cpu_us_per_req(w, ticks, hz)
            run["origin_conns_opened"] = int(dacc) if dacc != "-" else None
            run["origin_requests"] = int(dreq) if dreq != "-" else None
            # busy ticks of each CPU not spent by our processes: other jobs, kernel threads.
            # (direct has nothing of ours on the proxy CPU, so there it only shows load.)
            run["proxy_cpu_other_pct"] = run["load_cpu_other_pct"] = None
            if busy != "-" and w.get("seconds"):
                span = int(hz) * w["seconds"] / 100
                ours = int(ticks) if ticks != "-" else 0
                run["proxy_cpu_other_pct"] = max(0, int(busy) - ours) / span
                run["load_cpu_other_pct"] = max(0, int(lbusy) - int(lours)) / span
            if "parse_error" in w:
                run["error"] = w["parse_error"]
            elif rc != "0":
                run["error"] = f"wrk exit code {rc}"
            else:
                run["ok"] = True  # usable figures; errors inside the run are flagged below
            if w.get("errors_total"):
                run["warning"] = error_text(w)
            runs.append(run)

    checks = {}
    p = os.path.join(args.tmp, "checks.tsv")
    if os.path.exists(p):
        with open(p) as f:
            for line in f:
                cfg, size, res = line.rstrip("\n").split("\t", 2)
                checks.setdefault(cfg, {})[size] = res

    def med(cfg, size, key):
        vals = [r[key] for r in runs if r["config"] == cfg and r["size"] == size and r["ok"]
                and r.get(key) is not None]
        return statistics.median(vals) if vals else None

    summary = {}
    for size in SIZES:
        for cfg in CONFIGS:
            sel = [r for r in runs if r["config"] == cfg and r["size"] == size]
            if not sel:
                continue
            summary.setdefault(size, {})[cfg] = {
                "runs": len(sel),
                "failed_runs": sum(1 for r in sel if not r["ok"]),
                "runs_with_errors": sum(1 for r in sel if r.get("warning")),
                "rps_median": med(cfg, size, "rps"),
                "p50_ms_median": med(cfg, size, "p50_ms"),
                "p99_ms_median": med(cfg, size, "p99_ms"),
                "proxy_cpu_us_per_req_median": med(cfg, size, "proxy_cpu_us_per_req"),
                "origin_conns_opened_median": med(cfg, size, "origin_conns_opened"),
                "proxy_cpu_other_pct_max": max((r["proxy_cpu_other_pct"] for r in sel
                                                if r.get("proxy_cpu_other_pct") is not None), default=None),
                "load_cpu_other_pct_max": max((r["load_cpu_other_pct"] for r in sel
                                               if r.get("load_cpu_other_pct") is not None), default=None),
            }

    ratios = {}
    for size, s in summary.items():
        rev = s.get("reversed")
        if not rev:
            continue
        for peer in ("nginx", "haproxy"):
            p = s.get(peer)
            if not p:
                continue
            cpu = ratio(rev["proxy_cpu_us_per_req_median"], p["proxy_cpu_us_per_req_median"])
            ratios.setdefault(size, {})[f"reversed/{peer}"] = {
                "cpu_per_req": cpu,
                "cpu_per_req_target": CPU_TARGETS[peer],
                "cpu_per_req_meets_target": (cpu <= CPU_TARGETS[peer]) if cpu is not None else None,
                "rps": ratio(rev["rps_median"], p["rps_median"]),
                "p99": ratio(rev["p99_ms_median"], p["p99_ms_median"]),
            }

    meta = dict(kv.split("=", 1) for kv in args.meta)
    doc = {"benchmark": "http", "meta": meta, "runs": runs, "checks": checks,
           "summary": summary, "ratios": ratios}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    # ---- human-readable table
    print()
    print(f"HTTP reverse-proxy benchmark  {meta.get('timestamp', '')}")
    print(f"  wrk -t1 -c{meta.get('connections', '?')} --latency, keep-alive, "
          f"{meta.get('duration_s', '?')} s x {meta.get('rounds', '?')} rounds (alternating, median); "
          f"proxy on CPU {meta.get('proxy_cpu', '?')}, wrk + origin nginx on CPU {meta.get('load_cpu', '?')}; "
          f"1 worker/thread per proxy")
    print(f"  small = {meta.get('small_bytes', '?')} B body, big = {meta.get('big_bytes', '?')} B body; "
          f"CPU/req = proxy utime+stime / requests")
    print()
    hdr = (f"{'size':<7}{'config':<10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
           f"{'CPU us/req':>12}{'origin conns':>14}{'other%':>11}  notes")
    print(hdr)
    print("-" * (len(hdr) + 10))
    for size in SIZES:
        for cfg in CONFIGS:
            s = summary.get(size, {}).get(cfg)
            if s is None:
                if cfg == "reversed":
                    print(f"{size:<7}{cfg:<10}{'(skipped)':>10}")
                continue
            notes = []
            if s["failed_runs"]:
                notes.append(f"{s['failed_runs']} run(s) failed")
            if s["runs_with_errors"]:
                notes.append(f"{s['runs_with_errors']} run(s) with errors")
            o0, o1 = s["proxy_cpu_other_pct_max"], s["load_cpu_other_pct_max"]
            other = f"{'-' if cfg == 'direct' else fmt(o0, '.0f')}/{fmt(o1, '.0f')}"
            chk = checks.get(cfg, {}).get(size)
            if chk and chk != "ok":
                notes.append(f"check: {chk}")
            print(f"{size:<7}{cfg:<10}{fmt(s['rps_median'], '.0f'):>10}{fmt(s['p50_ms_median'], '.2f'):>9}"
                  f"{fmt(s['p99_ms_median'], '.2f'):>9}{fmt(s['proxy_cpu_us_per_req_median'], '.2f'):>12}"
                  f"{fmt(s['origin_conns_opened_median'], '.0f'):>14}"
                  f"{other:>11}  {'; '.join(notes)}")
    if ratios:
        print()
        print(f"{'size':<7}{'ratio':<19}{'CPU/req':>9}{'target':>9}{'':>6}{'req/s':>8}{'p99':>8}")
        for size in SIZES:
            for name, r in ratios.get(size, {}).items():
                verdict = {True: "ok", False: "MISS", None: "-"}[r["cpu_per_req_meets_target"]]
                print(f"{size:<7}{name:<19}{fmt(r['cpu_per_req'], '.2f'):>9}"
                      f"{'<= ' + format(r['cpu_per_req_target'], '.2f'):>9}{verdict:>6}"
                      f"{fmt(r['rps'], '.2f'):>8}{fmt(r['p99'], '.2f'):>8}")
    print()
    print("per run (req/s): " + "  ".join(
        f"{r['config']}/{r['size']}#{r['round']}={fmt(r.get('rps') if r['ok'] else None, '.0f')}" for r in runs))
    print("origin conns = connections the origin accepted during a run, median (upstream "
          "keep-alive: <= connections is good, ~requests means no reuse)")
    print(f"other% = highest share of CPU {meta.get('proxy_cpu', '?')} / CPU {meta.get('load_cpu', '?')} "
          f"taken by anything but our proxy / origin + wrk in a run (other jobs on the box, "
          f"kernel threads; > {OTHER_CPU_WARN_PCT:.0f}% is flagged)")
    bad = False
    for cfg, per in checks.items():
        for size, res in per.items():
            if res != "ok":
                bad = True
                print(f"WARNING check {cfg} {size}: {res}")
    for r in runs:
        if r.get("error"):
            bad = True
            print(f"WARNING {r['config']} {r['size']} round {r['round']}: {r['error']}")
        elif r.get("warning"):
            bad = True
            print(f"WARNING {r['config']} {r['size']} round {r['round']}: wrk reported {r['warning']}"
                  f" (of {r.get('requests')} requests)")
    for r in runs:
        busy = []
        for key, cpu in (("proxy_cpu_other_pct", "proxy_cpu"), ("load_cpu_other_pct", "load_cpu")):
            o = r.get(key)
            if r["config"] == "direct" and cpu == "proxy_cpu":
                continue  # direct does not use the proxy CPU
            if o is not None and o > OTHER_CPU_WARN_PCT:
                busy.append(f"{o:.0f}% of CPU {meta.get(cpu, '?')}")
        if busy:
            print(f"NOTE {r['config']} {r['size']} round {r['round']}: other work took "
                  f"{' and '.join(busy)}; figures may be disturbed")
    print(f"\nJSON: {args.out}")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("summary")
    p.add_argument("file")
    p.add_argument("ticks", nargs="?", default="-")
    p.add_argument("hz", nargs="?", default="100")
    p.set_defaults(fn=cmd_summary)
    p = sub.add_parser("report")
    p.add_argument("--tmp", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--meta", action="append", default=[], help="KEY=VALUE")
    p.set_defaults(fn=cmd_report)
    args = ap.parse_args()
    sys.exit(args.fn(args) or 0)


if __name__ == "__main__":
    main()
