#!/usr/bin/python3
"""Report step of bench/reverse.sh: parse the wrk outputs and counters it left in its
temp dir, judge every run, print tables, and write one JSON file.

  reverse_report.py report --tmp DIR --out FILE [--meta K=V ...]

DIR/runs.tsv: config, size, round, wrk output path, wrk exit code ("dead" if the proxy
was gone), proxy CPU ticks (utime+stime delta of its process tree), clock ticks per
second, connections the origins accepted during the run (less health checks and our
status request), health-check requests the origins answered during the run, data
requests each origin served during the run ("n1,n2,n3,n4"), busy ticks of the proxy
CPU and of the load CPU (all processes) during the run, ticks used by our origin
nginx + wrk during the run.
DIR/checks.tsv: config, size | "health", "ok" or the problem found ("passive only" for
nginx's health entry).
DIR/CONFIG-health.log: backend state changes the proxy logged (should be empty).
DIR/health.txt: "seconds S" (since the proxies started), then per origin
"originN REVERSED HAPROXY OTHER" /health requests it answered in that time.

A run with any error is a failed measurement: shown as "-", left out of the medians,
printed as ERROR, and the exit code is 1. Errors: wrk failed or printed no summary, a
dead proxy, wrk socket errors or non-2xx/3xx responses, the origins serving fewer
requests than wrk completed (the proxy answered some itself), no request completed.
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from http_report import cpu_us_per_req, error_text, fmt, parse_wrk, ratio  # noqa: E402

CONFIGS = ["reversed", "nginx", "haproxy"]
PEERS = ["nginx", "haproxy"]
SIZES = ["small", "big"]
OTHER_CPU_WARN_PCT = 10.0
# CPU per request targets from the issue: reversed <= 0.75x nginx, <= 0.85x haproxy
CPU_TARGETS = {"nginx": 0.75, "haproxy": 0.85}
# what the issue measured here per 64 KiB response (peers far off: a disturbed box)
BASELINE_BIG_US_PER_REQ = {"nginx": (52.0, 62.0), "haproxy": (62.0, 72.0)}
# a proxy's share of requests at any origin further than this from 1/N is flagged
SPREAD_TOLERANCE_PTS = 3.0
HEALTH_KIND = {"reversed": "active GET /health", "haproxy": "active GET /health (httpchk)",
               "nginx": "PASSIVE only (max_fails=3 fail_timeout=10s)"}


def judge(w, rc, per_origin):
    if rc == "dead":
        return "process was not running"
    if "parse_error" in w:
        return w["parse_error"]
    if rc != "0":
        return f"wrk exit code {rc}"
    problems = []
    if not w.get("requests"):
        problems.append("no request completed")
    if w.get("errors_total"):
        problems.append("wrk reported " + error_text(w))
    if per_origin is not None and sum(per_origin) < w["requests"]:
        problems.append(f"origins served {sum(per_origin)} requests, wrk completed "
                        f"{w['requests']}: the proxy answered some itself")
    return "; ".join(problems) or None


def read_runs(tmp):
    runs = []
    with open(os.path.join(tmp, "runs.tsv")) as f:
        for line in f:
            (cfg, size, rnd, path, rc, ticks, hz, dacc, dhealth, per, busy, lbusy,
             lours) = line.rstrip("\n").split("\t")
            run = {"config": cfg, "size": size, "round": int(rnd), "ok": False}
            w = parse_wrk(path) if rc != "dead" else {}
            per_origin = [int(x) for x in per.split(",")] if per not in ("-", "") else None
            run.update({k: v for k, v in w.items() if k != "parse_error"})
            run["proxy_cpu_s"] = int(ticks) / int(hz) if ticks != "-" else None
            run["proxy_cpu_us_per_req"] = cpu_us_per_req(w, ticks, hz)
            run["origin_conns_opened"] = int(dacc) if dacc != "-" else None
            run["health_checks_during_run"] = int(dhealth) if dhealth != "-" else None
            run["origin_requests"] = per_origin
            run["proxy_cpu_other_pct"] = run["load_cpu_other_pct"] = None
            if busy != "-" and w.get("seconds"):
                span = int(hz) * w["seconds"] / 100
                run["proxy_cpu_other_pct"] = max(0, int(busy) - int(ticks)) / span
                run["load_cpu_other_pct"] = max(0, int(lbusy) - int(lours)) / span
            err = judge(w, rc, per_origin)
            if err:
                run["error"] = err
            else:
                run["ok"] = True
            runs.append(run)
    return runs


def read_kv_tsv(path):
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                cfg, what, res = line.rstrip("\n").split("\t", 2)
                out.setdefault(cfg, {})[what] = res
    return out


def read_health(path):
    h = {"seconds": None, "per_origin": []}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if parts[0] == "seconds":
                    h["seconds"] = float(parts[1])
                else:
                    h["per_origin"].append({"origin": parts[0], "reversed": int(parts[1]),
                                            "haproxy": int(parts[2]), "other": int(parts[3])})
    return h


def spread(runs):
    """Sum of per-origin requests over the given runs -> (counts, shares in %)."""
    counts = None
    for r in runs:
        per = r.get("origin_requests")
        if per is None:
            continue
        counts = per[:] if counts is None else [a + b for a, b in zip(counts, per)]
    if not counts or not sum(counts):
        return counts, None
    total = sum(counts)
    return counts, [100.0 * c / total for c in counts]


def cmd_report(args):
    runs = read_runs(args.tmp)
    checks = read_kv_tsv(os.path.join(args.tmp, "checks.tsv"))
    health = read_health(os.path.join(args.tmp, "health.txt"))
    meta = dict(kv.split("=", 1) for kv in args.meta)
    norigins = int(meta.get("origins", 4))
    fair = 100.0 / norigins

    def med(cfg, size, key):
        vals = [r[key] for r in runs if r["config"] == cfg and r["size"] == size and r["ok"]
                and r.get(key) is not None]
        return statistics.median(vals) if vals else None

    def best(cfg, size, key, fn):
        vals = [r[key] for r in runs if r["config"] == cfg and r["size"] == size and r["ok"]
                and r.get(key) is not None]
        return fn(vals) if vals else None

    summary = {}
    for size in SIZES:
        for cfg in CONFIGS:
            sel = [r for r in runs if r["config"] == cfg and r["size"] == size]
            if not sel:
                continue
            counts, shares = spread([r for r in sel if r["ok"]])
            summary.setdefault(size, {})[cfg] = {
                "runs": len(sel),
                "failed_runs": sum(1 for r in sel if not r["ok"]),
                "rps_median": med(cfg, size, "rps"),
                "p50_ms_median": med(cfg, size, "p50_ms"),
                "p99_ms_median": med(cfg, size, "p99_ms"),
                "proxy_cpu_us_per_req_median": med(cfg, size, "proxy_cpu_us_per_req"),
                # other jobs only ever add CPU time per request: the best run is a second,
                # less disturbed estimate on a shared box
                "proxy_cpu_us_per_req_min": best(cfg, size, "proxy_cpu_us_per_req", min),
                "rps_max": best(cfg, size, "rps", max),
                "origin_conns_opened_median": med(cfg, size, "origin_conns_opened"),
                "origin_requests_total": counts,
                "origin_share_pct": shares,
                "origin_share_max_dev_pts": (max(abs(s - fair) for s in shares)
                                             if shares else None),
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
        for peer in PEERS:
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
                "cpu_per_req_best_runs": ratio(rev["proxy_cpu_us_per_req_min"], p["proxy_cpu_us_per_req_min"]),
                "rps_best_runs": ratio(rev["rps_max"], p["rps_max"]),
            }

    # backend state changes the proxies logged (reverse.sh greps them out of their logs):
    # a backend taken out during the benchmark would skew the spread and the figures
    changes = {}
    for cfg in CONFIGS:
        p = os.path.join(args.tmp, f"{cfg}-health.log")
        if os.path.exists(p):
            with open(p, errors="replace") as f:
                changes[cfg] = [ln.rstrip() for ln in f if ln.strip()]

    doc = {"benchmark": "reverse", "meta": meta, "runs": runs, "checks": checks,
           "health_checks_seen": health, "backend_state_changes": changes,
           "summary": summary, "ratios": ratios}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    # ---- human-readable table
    pc, lc = meta.get("proxy_cpu", "?"), meta.get("load_cpu", "?")
    print()
    print(f"Reverse-proxy benchmark, {norigins} backends, round-robin, health checks  "
          f"{meta.get('timestamp', '')}")
    print(f"  wrk -t1 -c{meta.get('connections', '?')} --latency, keep-alive, "
          f"{meta.get('duration_s', '?')} s x {meta.get('rounds', '?')} rounds (rotating order, median); "
          f"proxy on CPU {pc}, wrk + origin nginx ({norigins} ports, 1 worker) on CPU {lc}; "
          f"1 worker/thread per proxy")
    print(f"  small = {meta.get('small_bytes', '?')} B body, big = {meta.get('big_bytes', '?')} B body; "
          f"CPU/req = proxy utime+stime / requests; health interval "
          f"{meta.get('health_interval_ms', '?')} ms")
    print(f"  load average at start / end: {meta.get('loadavg_start', '?')} / {meta.get('loadavg_end', '?')} "
          f"({meta.get('nproc', '?')} CPUs)")
    print()
    split_w = 6 * norigins + 2
    hdr = (f"{'size':<7}{'proxy':<10}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
           f"{'CPU us/req':>11}{'o-conns':>8}  {'per origin %':<{split_w}}{'other%':>8}  "
           f"{'health checks':<14}notes")
    print(hdr)
    print("-" * (len(hdr) + 20))
    for size in SIZES:
        for cfg in CONFIGS:
            s = summary.get(size, {}).get(cfg)
            if s is None:
                chk = checks.get(cfg, {}).get(size)
                if chk and chk != "ok":
                    print(f"{size:<7}{cfg:<10}{'-':>9}  not measured, check failed: {chk}")
                elif cfg == "reversed":
                    print(f"{size:<7}{cfg:<10}{'(skipped)':>9}")
                continue
            notes = []
            if s["failed_runs"]:
                notes.append(f"{s['failed_runs']}/{s['runs']} run(s) failed")
            chk = checks.get(cfg, {}).get(size)
            if chk and chk != "ok":
                notes.append(f"check: {chk}")
            dev = s["origin_share_max_dev_pts"]
            if dev is not None and dev > SPREAD_TOLERANCE_PTS:
                notes.append(f"UNEVEN spread (off by {dev:.1f} pts)")
            shares = s["origin_share_pct"]
            split = "/".join(f"{x:.1f}" for x in shares) if shares else "-"
            other = f"{fmt(s['proxy_cpu_other_pct_max'], '.0f')}/{fmt(s['load_cpu_other_pct_max'], '.0f')}"
            hc = {"reversed": "active", "haproxy": "active", "nginx": "passive only"}[cfg]
            hres = checks.get(cfg, {}).get("health")
            if hres and hres not in ("ok", "passive only"):
                hc = "NOT SEEN"
                notes.append(f"health: {hres}")
            print(f"{size:<7}{cfg:<10}{fmt(s['rps_median'], '.0f'):>9}{fmt(s['p50_ms_median'], '.2f'):>8}"
                  f"{fmt(s['p99_ms_median'], '.2f'):>8}{fmt(s['proxy_cpu_us_per_req_median'], '.2f'):>11}"
                  f"{fmt(s['origin_conns_opened_median'], '.0f'):>8}  {split:<{split_w}}{other:>8}  "
                  f"{hc:<14}{'; '.join(notes)}")
    if ratios:
        print()
        print(f"{'size':<7}{'ratio (medians)':<19}{'CPU/req':>9}{'target':>9}{'':>6}{'req/s':>8}{'p99':>8}"
              f"   | best runs: {'CPU/req':>7}{'req/s':>7}")
        for size in SIZES:
            for name, r in ratios.get(size, {}).items():
                verdict = {True: "ok", False: "MISS", None: "-"}[r["cpu_per_req_meets_target"]]
                print(f"{size:<7}{name:<19}{fmt(r['cpu_per_req'], '.2f'):>9}"
                      f"{'<= ' + format(r['cpu_per_req_target'], '.2f'):>9}{verdict:>6}"
                      f"{fmt(r['rps'], '.2f'):>8}{fmt(r['p99'], '.2f'):>8}"
                      f"   | {'':>11}{fmt(r['cpu_per_req_best_runs'], '.2f'):>7}{fmt(r['rps_best_runs'], '.2f'):>7}")
        print("  best runs = each proxy's lowest CPU/req and highest req/s over its rounds (other jobs "
              "only add to CPU/req: a second estimate on a busy box; the verdict uses the medians)")

    print()
    secs = health["seconds"]
    if health["per_origin"]:
        print(f"health checks answered by the origins in {fmt(secs, '.0f')} s since the proxies started "
              f"(expected ~{fmt(secs / (int(meta.get('health_interval_ms', 2000)) / 1000) if secs else None, '.0f')} "
              f"per proxy and origin):")
        for who in ("reversed", "haproxy", "other"):
            per = [o[who] for o in health["per_origin"]]
            if who == "other" and not any(per):
                continue
            print(f"  {who:<9} " + " ".join(f"{o['origin']}={o[who]}" for o in health["per_origin"])
                  + (f"   ({HEALTH_KIND[who]})" if who in HEALTH_KIND else ""))
        print(f"  nginx     none: {HEALTH_KIND['nginx']}")
    print(f"per run (round: req/s, CPU us/req, other% CPU {pc}/{lc}):")
    for size in SIZES:
        for cfg in CONFIGS:
            sel = sorted((r for r in runs if r["config"] == cfg and r["size"] == size),
                         key=lambda r: r["round"])
            if sel:
                print(f"  {size:<6}{cfg:<9}" + "  ".join(
                    f"#{r['round']}: " + (f"{r['rps']:.0f}, {r['proxy_cpu_us_per_req']:.1f}, "
                                          f"{fmt(r['proxy_cpu_other_pct'], '.0f')}/{fmt(r['load_cpu_other_pct'], '.0f')}"
                                          if r["ok"] else "FAILED") for r in sel))
    print(f"per origin % = share of the data requests each origin served in the good runs "
          f"(counted by the origins; round-robin: {fair:.0f}% each, > {SPREAD_TOLERANCE_PTS:.0f} pts off is flagged)")
    print("o-conns = connections the origins accepted during a run, median, health-check "
          "connections not counted (upstream keep-alive: <= connections is good)")
    print(f"other% = highest share of CPU {pc} / CPU {lc} taken by anything but our proxy / "
          f"origin + wrk in a run (other jobs on the box; > {OTHER_CPU_WARN_PCT:.0f}% is flagged)")
    for peer, (lo, hi) in BASELINE_BIG_US_PER_REQ.items():
        v = summary.get("big", {}).get(peer, {}).get("proxy_cpu_us_per_req_median")
        if v is not None:
            where = "within" if lo <= round(v, 1) <= hi else "OUTSIDE"
            print(f"{peer} big: {v:.1f} us/req, {where} the issue's {lo:.0f}-{hi:.0f} us "
                  f"(measured there with ONE backend)")

    bad = False
    for cfg, per in checks.items():
        for what, res in per.items():
            if res not in ("ok", "passive only"):
                bad = True
                print(f"ERROR check {cfg} {what}: {res}")
    for cfg, lines in changes.items():
        if lines:
            bad = True
            print(f"ERROR {cfg} logged {len(lines)} backend state change(s), e.g.: "
                  + " | ".join(lines[:3]))
    for r in runs:
        if r.get("error"):
            bad = True
            print(f"ERROR {r['config']} {r['size']} round {r['round']}: {r['error']}")
    for size in SIZES:
        for cfg, s in summary.get(size, {}).items():
            dev = s["origin_share_max_dev_pts"]
            if s["origin_requests_total"] is not None and 0 in s["origin_requests_total"]:
                bad = True
                print(f"ERROR {cfg} {size}: an origin got no requests: {s['origin_requests_total']}")
            elif dev is not None and dev > SPREAD_TOLERANCE_PTS:
                bad = True
                print(f"ERROR {cfg} {size}: uneven spread over the origins: {s['origin_requests_total']}")
    for r in runs:
        busy = []
        for key, cpu in (("proxy_cpu_other_pct", pc), ("load_cpu_other_pct", lc)):
            o = r.get(key)
            if o is not None and o > OTHER_CPU_WARN_PCT:
                busy.append(f"{o:.0f}% of CPU {cpu}")
        if busy:
            print(f"NOTE {r['config']} {r['size']} round {r['round']}: other work took "
                  f"{' and '.join(busy)}; figures may be disturbed")
    print(f"\nJSON: {args.out}")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("report")
    p.add_argument("--tmp", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--meta", action="append", default=[], help="KEY=VALUE")
    p.set_defaults(fn=cmd_report)
    args = ap.parse_args()
    sys.exit(args.fn(args) or 0)


if __name__ == "__main__":
    main()
