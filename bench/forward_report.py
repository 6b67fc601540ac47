#!/usr/bin/python3
"""Report step of bench/forward.sh: parse the wrk and curl outputs it left in its temp
dir, judge every run, print tables, and write one JSON file.

  forward_report.py summary FILE TICKS HZ ORIGIN_REQS CONNS_FOR_2 CONNS  one small-request run
  forward_report.py tsummary FILE TICKS HZ BIG_BYTES CONFIG RC     one tunnel run
  forward_report.py report --tmp DIR --out FILE [--meta K=V ...]

DIR/runs.tsv (small requests): config, round, wrk output path, wrk exit code ("dead" if
the proxy was gone), proxy CPU ticks (utime+stime delta, "-" for direct), clock ticks per
second, connections the origin accepted and requests it served during the run, busy
ticks of the proxy CPU and of the load CPU during the run, ticks of our origin + wrk,
wall time of the run in microseconds.
DIR/tunnel.tsv: config, round, curl -w output path (one line per download: CONNECT
status, HTTP status, bytes, seconds, bytes/s), exit code, proxy CPU ticks, ticks per
second, wall time of the run in microseconds, busy ticks of the proxy CPU and of the
load CPU, ticks of our origin + curl.
DIR/checks.tsv: config, "small" | "tunnel" | "keepalive", "ok" or the problem found
(keepalive: how many connections curl needed for two requests).

A run with any error is a failed measurement: it is shown as "-", left out of the
medians, and the script exits 1. Errors are wrk socket errors and non-2xx/3xx
responses, fewer requests at the origin than wrk completed (the proxy answered some
itself), and for tunnel runs any status other than 200 or a short body. The one
exception: a proxy that closes the client connection after every response (the curl
check needed two connections for two requests; tinyproxy does this) makes wrk count one
read error per response. For such a proxy, read errors up to requests + connections
are counted as closes, not as errors.
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from http_report import fmt, parse_wrk, ratio  # noqa: E402

CONFIGS = ["direct", "forwardd", "squid", "tinyproxy"]
PEERS = ["squid", "tinyproxy"]
OTHER_CPU_WARN_PCT = 10.0
# Figures measured on this machine before (from the issue): CPU per small request and
# the CONNECT tunnel's throughput as a share of direct.
BASELINE_US_PER_REQ = {"squid": (105.0, 113.0), "tinyproxy": (150.0, 190.0)}
BASELINE_TUNNEL_X_DIRECT = {"squid": (0.47, 0.65)}


def cpu_us_per_req(requests, ticks, hz):
    if ticks in ("-", None) or not requests:
        return None
    return int(ticks) / int(hz) / requests * 1e6


def judge_small(w, rc, dreq, conns_for_2, slack):
    """Returns (error or None, closes counted). w: parse_wrk() result; slack: wrk's
    connection count (requests still in flight when wrk stops)."""
    closes = 0
    if rc == "dead":
        return "process was not running", 0
    if "parse_error" in w:
        return w["parse_error"], 0
    if rc != "0":
        return f"wrk exit code {rc}", 0
    errs = dict(w.get("socket_errors", {}))
    closing = conns_for_2 not in (None, "", "-") and int(conns_for_2) >= 2
    if closing and errs.get("read"):
        # one EOF per response from a proxy that closes after each one (+ in flight at the end)
        if errs["read"] <= w["requests"] + slack:
            closes = errs.pop("read")
    problems = [f"{k} errors {v}" for k, v in errs.items() if v]
    if w.get("non_2xx_3xx"):
        problems.append(f"non-2xx/3xx responses {w['non_2xx_3xx']}")
    if dreq not in ("-", None) and int(dreq) < w["requests"]:
        problems.append(f"origin served {dreq} requests, wrk completed {w['requests']}: "
                        f"the proxy answered some itself")
    return ("; ".join(problems) or None), closes


def parse_tunnel(path, big_bytes, cfg, rc):
    """Returns dict with bytes, seconds, downloads and error (None if good)."""
    r = {"downloads": 0, "bytes": 0, "seconds": 0.0, "error": None}
    try:
        with open(path) as f:
            lines = [ln.split() for ln in f if ln.strip()]
    except OSError as e:
        r["error"] = f"unreadable curl output: {e}"
        return r
    problems = []
    if rc == "dead":
        problems.append("process was not running")
    elif rc != "0":
        err = ""
        try:
            with open(path + ".err") as f:
                err = f.read().strip()[:200]
        except OSError:
            pass
        problems.append(f"curl exit code {rc}" + (f" ({err})" if err else ""))
    for i, ln in enumerate(lines, 1):
        if len(ln) != 5:
            problems.append(f"download {i}: unparsable curl output {' '.join(ln)!r}")
            continue
        connect, code, size, secs = ln[0], ln[1], int(float(ln[2])), float(ln[3])
        want_connect = "000" if cfg == "direct" else "200"
        if connect != want_connect:
            problems.append(f"download {i}: CONNECT status {connect}")
        if code != "200":
            problems.append(f"download {i}: HTTP status {code}")
        if size != big_bytes:
            problems.append(f"download {i}: {size} bytes, want {big_bytes}")
        r["downloads"] += 1
        r["bytes"] += size
        r["seconds"] += secs
    if not lines and not problems:
        problems.append("no download completed")
    r["error"] = "; ".join(problems) or None
    return r


def cmd_summary(args):
    w = parse_wrk(args.file)
    if "parse_error" in w:
        print(f"FAILED ({w['parse_error']})")
        return
    err, closes = judge_small(w, "0", args.origin_reqs, args.conns_for_2, args.conns)
    cpu = cpu_us_per_req(w["requests"], args.ticks, args.hz)
    txt = f"{w['rps']:.0f} req/s, p99 {fmt(w.get('p99_ms'), '.2f')} ms"
    if cpu is not None:
        txt += f", proxy CPU {cpu:.1f} us/req ({args.ticks} ticks)"
    if closes:
        txt += f", {closes} closes by the proxy"
    if err:
        txt += f", FAILED: {err}"
    print(txt)


def cmd_tsummary(args):
    t = parse_tunnel(args.file, args.big_bytes, args.config, args.rc)
    if not t["seconds"]:
        print(f"FAILED ({t['error']})")
        return
    mbs = t["bytes"] / t["seconds"] / 1e6
    txt = f"{mbs:.0f} MB/s over {t['downloads']} download(s)"
    if args.ticks != "-":
        cpu_s = int(args.ticks) / int(args.hz)
        txt += f", proxy CPU {cpu_s:.2f} s = {cpu_s / (t['bytes'] / 1e9):.2f} s/GB"
    if t["error"]:
        txt += f", FAILED: {t['error']}"
    print(txt)


def other_pct(busy, ours, hz, seconds):
    if busy == "-" or not seconds:
        return None
    # the CPU readings bracket the timed span a little more widely: clamp to 0..100
    return min(100.0, max(0, int(busy) - ours) / (int(hz) * seconds / 100))


def med(runs, cfg, key):
    vals = [r[key] for r in runs if r["config"] == cfg and r["ok"] and r.get(key) is not None]
    return statistics.median(vals) if vals else None


def max_of(sel, key):
    return max((r[key] for r in sel if r.get(key) is not None), default=None)


def cmd_report(args):
    meta = dict(kv.split("=", 1) for kv in args.meta)
    conns = int(meta.get("connections", 64))
    big_bytes = int(meta.get("big_bytes", 0))

    checks = {}
    p = os.path.join(args.tmp, "checks.tsv")
    if os.path.exists(p):
        with open(p) as f:
            for line in f:
                cfg, kind, res = line.rstrip("\n").split("\t", 2)
                checks.setdefault(cfg, {})[kind] = res
    conns_for_2 = {cfg: c.get("keepalive") for cfg, c in checks.items()}

    # ---- small requests
    runs = []
    p = os.path.join(args.tmp, "runs.tsv")
    if os.path.exists(p):
        with open(p) as f:
            for line in f:
                (cfg, rnd, path, rc, ticks, hz, dacc, dreq, busy, lbusy,
                 lours, wall_us) = line.rstrip("\n").split("\t")
                wall = int(wall_us) / 1e6 if wall_us != "-" else None
                run = {"config": cfg, "round": int(rnd), "ok": False}
                w = parse_wrk(path) if rc != "dead" else {}
                run.update({k: v for k, v in w.items() if k != "parse_error"})
                err, closes = judge_small(w, rc, dreq, conns_for_2.get(cfg), conns)
                run["proxy_closes"] = closes
                run["proxy_cpu_s"] = int(ticks) / int(hz) if ticks != "-" else None
                run["proxy_cpu_us_per_req"] = cpu_us_per_req(w.get("requests"), ticks, hz)
                run["origin_conns_opened"] = int(dacc) if dacc != "-" else None
                run["origin_requests"] = int(dreq) if dreq != "-" else None
                ours = int(ticks) if ticks != "-" else 0
                run["wall_s"] = wall
                run["proxy_cpu_other_pct"] = other_pct(busy, ours, hz, wall)
                run["load_cpu_other_pct"] = (other_pct(lbusy, int(lours), hz, wall)
                                             if lours != "-" else None)
                if err:
                    run["error"] = err
                else:
                    run["ok"] = True
                runs.append(run)

    small = {}
    for cfg in CONFIGS:
        sel = [r for r in runs if r["config"] == cfg]
        if not sel:
            continue
        small[cfg] = {
            "runs": len(sel),
            "failed_runs": sum(1 for r in sel if not r["ok"]),
            "rps_median": med(runs, cfg, "rps"),
            "p50_ms_median": med(runs, cfg, "p50_ms"),
            "p99_ms_median": med(runs, cfg, "p99_ms"),
            "proxy_cpu_us_per_req_median": med(runs, cfg, "proxy_cpu_us_per_req"),
            "origin_conns_opened_median": med(runs, cfg, "origin_conns_opened"),
            "client_conns_for_2_requests": conns_for_2.get(cfg),
            "proxy_cpu_other_pct_max": max_of(sel, "proxy_cpu_other_pct"),
            "load_cpu_other_pct_max": max_of(sel, "load_cpu_other_pct"),
        }

    # ---- tunnel
    truns = []
    p = os.path.join(args.tmp, "tunnel.tsv")
    if os.path.exists(p):
        with open(p) as f:
            for line in f:
                cfg, rnd, path, rc, ticks, hz, wall_us, busy, lbusy, lours = \
                    line.rstrip("\n").split("\t")
                t = parse_tunnel(path, big_bytes, cfg, rc)
                run = {"config": cfg, "round": int(rnd), "ok": t["error"] is None and t["seconds"] > 0,
                       "downloads": t["downloads"], "bytes": t["bytes"], "seconds": t["seconds"]}
                if t["error"]:
                    run["error"] = t["error"]
                run["mb_per_s"] = t["bytes"] / t["seconds"] / 1e6 if t["seconds"] else None
                run["proxy_cpu_s"] = int(ticks) / int(hz) if ticks != "-" else None
                run["proxy_cpu_s_per_gb"] = (run["proxy_cpu_s"] / (t["bytes"] / 1e9)
                                             if run["proxy_cpu_s"] is not None and t["bytes"] else None)
                wall = int(wall_us) / 1e6 if wall_us != "-" else None
                run["wall_s"] = wall
                run["proxy_cpu_pct"] = (100 * run["proxy_cpu_s"] / wall
                                        if run["proxy_cpu_s"] is not None and wall else None)
                ours = int(ticks) if ticks != "-" else 0
                run["proxy_cpu_other_pct"] = other_pct(busy, ours, hz, wall)
                run["load_cpu_other_pct"] = (other_pct(lbusy, int(lours), hz, wall)
                                             if lours != "-" else None)
                truns.append(run)
    tunnel = {}
    for cfg in CONFIGS:
        sel = [r for r in truns if r["config"] == cfg]
        if not sel:
            continue
        tunnel[cfg] = {
            "runs": len(sel),
            "failed_runs": sum(1 for r in sel if not r["ok"]),
            "mb_per_s_median": med(truns, cfg, "mb_per_s"),
            "proxy_cpu_s_per_gb_median": med(truns, cfg, "proxy_cpu_s_per_gb"),
            "proxy_cpu_pct_median": med(truns, cfg, "proxy_cpu_pct"),
            "proxy_cpu_other_pct_max": max_of(sel, "proxy_cpu_other_pct"),
            "load_cpu_other_pct_max": max_of(sel, "load_cpu_other_pct"),
        }
    direct_mbs = tunnel.get("direct", {}).get("mb_per_s_median")
    for cfg, s in tunnel.items():
        s["x_direct"] = ratio(s["mb_per_s_median"], direct_mbs) if cfg != "direct" else None

    # ---- ratios: forwardd against each peer
    ratios = {}
    fs, ft = small.get("forwardd"), tunnel.get("forwardd")
    for peer in PEERS:
        r = {}
        if fs and small.get(peer):
            ps = small[peer]
            r.update({
                "small_cpu_per_req": ratio(fs["proxy_cpu_us_per_req_median"], ps["proxy_cpu_us_per_req_median"]),
                "small_rps": ratio(fs["rps_median"], ps["rps_median"]),
                "small_p99": ratio(fs["p99_ms_median"], ps["p99_ms_median"]),
            })
        if ft and tunnel.get(peer):
            pt = tunnel[peer]
            r.update({
                "tunnel_throughput": ratio(ft["mb_per_s_median"], pt["mb_per_s_median"]),
                "tunnel_cpu_per_gb": ratio(ft["proxy_cpu_s_per_gb_median"], pt["proxy_cpu_s_per_gb_median"]),
            })
        if r:
            ratios[f"forwardd/{peer}"] = r

    # ---- peer baseline (figures measured here before, from the issue)
    baseline = {}
    def disturbed(summary, cfgs):   # most of a CPU other jobs took in those configs' runs
        vals = [summary.get(c, {}).get(k) for c in cfgs
                for k in ("proxy_cpu_other_pct_max", "load_cpu_other_pct_max")]
        return max((v for v in vals if v is not None), default=None)

    for peer, (lo, hi) in BASELINE_US_PER_REQ.items():
        v = small.get(peer, {}).get("proxy_cpu_us_per_req_median")
        baseline[f"{peer} small CPU us/req"] = {"expected": [lo, hi], "measured": v,
                                                "disturbed_pct": disturbed(small, [peer])}
    for peer, (lo, hi) in BASELINE_TUNNEL_X_DIRECT.items():
        v = tunnel.get(peer, {}).get("x_direct")
        baseline[f"{peer} tunnel x direct"] = {"expected": [lo, hi], "measured": v,
                                               "disturbed_pct": disturbed(tunnel, [peer, "direct"])}

    doc = {"benchmark": "forward", "meta": meta, "checks": checks,
           "small_runs": runs, "small": small, "tunnel_runs": truns, "tunnel": tunnel,
           "ratios": ratios, "peer_baseline": baseline}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    # ---- tables
    pc, lc = meta.get("proxy_cpu", "?"), meta.get("load_cpu", "?")
    print()
    print(f"Forward-proxy benchmark  {meta.get('timestamp', '')}  "
          f"(proxy on CPU {pc}; wrk/curl + origin nginx on CPU {lc}; one worker per proxy)")
    print()
    print(f"1. small requests: {meta.get('small_bytes', '?')} B body, wrk -t1 -c{meta.get('connections', '?')} "
          f"--latency, absolute-form request line to the proxy (direct: origin-form to the origin), "
          f"{meta.get('duration_s', '?')} s x {meta.get('rounds', '?')} rounds (rotating order, median)")
    hdr = (f"{'config':<11}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'CPU us/req':>12}"
           f"{'client ka':>11}{'origin conns':>14}{'other%':>9}  notes")
    print(hdr)
    print("-" * (len(hdr) + 20))
    for cfg in CONFIGS:
        s = small.get(cfg)
        chk = checks.get(cfg, {})
        if s is None:
            why = "(skipped)" if not chk else f"(not measured: check {chk.get('small', '?')})"
            print(f"{cfg:<11}{why}")
            continue
        notes = []
        if s["failed_runs"]:
            notes.append(f"{s['failed_runs']}/{s['runs']} run(s) FAILED")
        c2 = s["client_conns_for_2_requests"]
        ka = "-" if c2 in (None, "") else ("yes" if c2 == "1" else "NO")
        if ka == "NO":
            closes = sum(r["proxy_closes"] for r in runs if r["config"] == cfg)
            notes.append(f"closes the client connection after every response ({closes} closes "
                         f"seen by wrk as read errors; latency excludes the reconnect)")
        other = (f"{'-' if cfg == 'direct' else fmt(s['proxy_cpu_other_pct_max'], '.0f')}"
                 f"/{fmt(s['load_cpu_other_pct_max'], '.0f')}")
        print(f"{cfg:<11}{fmt(s['rps_median'], '.0f'):>9}{fmt(s['p50_ms_median'], '.2f'):>8}"
              f"{fmt(s['p99_ms_median'], '.2f'):>8}{fmt(s['proxy_cpu_us_per_req_median'], '.1f'):>12}"
              f"{ka:>11}{fmt(s['origin_conns_opened_median'], '.0f'):>14}{other:>9}  {'; '.join(notes)}")

    print()
    print(f"2. CONNECT tunnel: curl -p -x (direct: plain GET), {meta.get('tunnel_count', '?')} download(s) "
          f"of {int(meta.get('big_bytes', 0)) / 2**20:.0f} MiB per run, {meta.get('rounds', '?')} rounds (median)")
    hdr = (f"{'config':<11}{'MB/s':>9}{'x direct':>10}{'CPU s/GB':>10}{'proxy CPU%':>12}{'other%':>9}  notes")
    print(hdr)
    print("-" * (len(hdr) + 20))
    for cfg in CONFIGS:
        s = tunnel.get(cfg)
        chk = checks.get(cfg, {})
        if s is None:
            why = "(skipped)" if not chk else f"(not measured: check {chk.get('tunnel', '?')})"
            print(f"{cfg:<11}{why}")
            continue
        notes = []
        if s["failed_runs"]:
            notes.append(f"{s['failed_runs']}/{s['runs']} run(s) FAILED")
        other = (f"{'-' if cfg == 'direct' else fmt(s['proxy_cpu_other_pct_max'], '.0f')}"
                 f"/{fmt(s['load_cpu_other_pct_max'], '.0f')}")
        print(f"{cfg:<11}{fmt(s['mb_per_s_median'], '.0f'):>9}{fmt(s['x_direct'], '.2f'):>10}"
              f"{fmt(s['proxy_cpu_s_per_gb_median'], '.3f'):>10}{fmt(s['proxy_cpu_pct_median'], '.0f'):>12}"
              f"{other:>9}  {'; '.join(notes)}")

    if ratios:
        print()
        print(f"{'ratio':<21}{'CPU/req':>9}{'req/s':>8}{'p99':>8}{'tunnel MB/s':>13}{'CPU/GB':>9}")
        for name, r in ratios.items():
            print(f"{name:<21}{fmt(r.get('small_cpu_per_req'), '.2f'):>9}{fmt(r.get('small_rps'), '.2f'):>8}"
                  f"{fmt(r.get('small_p99'), '.2f'):>8}{fmt(r.get('tunnel_throughput'), '.2f'):>13}"
                  f"{fmt(r.get('tunnel_cpu_per_gb'), '.2f'):>9}")

    print()
    print("peer baseline (measured on this machine before, from the issue):")
    for name, b in baseline.items():
        lo, hi = b["expected"]
        v = b["measured"]
        if v is None:
            verdict = "not measured"
        elif lo <= v <= hi:
            verdict = "within"
        else:
            verdict = f"outside ({v / (lo if v < lo else hi):.2f}x the nearest bound)"
        if v is not None and b.get("disturbed_pct") is not None and b["disturbed_pct"] > OTHER_CPU_WARN_PCT:
            verdict += f"; disturbed: other jobs took up to {b['disturbed_pct']:.0f}% of a CPU"
        print(f"  {name:<26} expected {lo:g}-{hi:g}, measured {fmt(v, '.2f')}: {verdict}")

    print()
    print("client ka = the proxy kept the client connection alive (curl check: 2 requests on 1 "
          "connection); origin conns = connections the origin accepted during a run (median)")
    print(f"other% = highest share of CPU {pc} / CPU {lc} taken by anything but our proxy / "
          f"origin + client in a run (> {OTHER_CPU_WARN_PCT:.0f}% is flagged)")
    print("per run (req/s): " + "  ".join(
        f"{r['config']}#{r['round']}={fmt(r.get('rps') if r['ok'] else None, '.0f')}" for r in runs))
    print("per run (tunnel MB/s): " + "  ".join(
        f"{r['config']}#{r['round']}={fmt(r.get('mb_per_s') if r['ok'] else None, '.0f')}" for r in truns))

    bad = False
    for cfg, per in checks.items():
        for kind, res in per.items():
            if kind != "keepalive" and res != "ok":
                bad = True
                print(f"ERROR check {cfg} {kind}: {res}")
    for kind, rs in (("small", runs), ("tunnel", truns)):
        for r in rs:
            if not r["ok"]:
                bad = True
                print(f"ERROR {kind} {r['config']} round {r['round']}: {r.get('error')}")
            busy = []
            for key, cpu in (("proxy_cpu_other_pct", pc), ("load_cpu_other_pct", lc)):
                o = r.get(key)
                if r["config"] == "direct" and key == "proxy_cpu_other_pct":
                    continue
                if o is not None and o > OTHER_CPU_WARN_PCT:
                    busy.append(f"{o:.0f}% of CPU {cpu}")
            if busy:
                print(f"NOTE {kind} {r['config']} round {r['round']}: other work took "
                      f"{' and '.join(busy)}; figures may be disturbed")
    print(f"\nJSON: {args.out}")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("summary")
    p.add_argument("file")
    p.add_argument("ticks")
    p.add_argument("hz")
    p.add_argument("origin_reqs")
    p.add_argument("conns_for_2")
    p.add_argument("conns", type=int)
    p.set_defaults(fn=cmd_summary)
    p = sub.add_parser("tsummary")
    p.add_argument("file")
    p.add_argument("ticks")
    p.add_argument("hz")
    p.add_argument("big_bytes", type=int)
    p.add_argument("config")
    p.add_argument("rc")
    p.set_defaults(fn=cmd_tsummary)
    p = sub.add_parser("report")
    p.add_argument("--tmp", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--meta", action="append", default=[], help="KEY=VALUE")
    p.set_defaults(fn=cmd_report)
    args = ap.parse_args()
    sys.exit(args.fn(args) or 0)


if __name__ == "__main__":
    main()
