#!/usr/bin/python3
"""Report step of bench/tcp.sh: parse the iperf3 JSON files and idle-connection
results it left in its temp dir, print a table, and write one JSON file.

  tcp_report.py gbps FILE          print receiver Gbit/s of one iperf3 -J file
  tcp_report.py report --tmp DIR --out FILE [--meta K=V ...]

runs.tsv in DIR: config, round, iperf3 json path, iperf3 exit code,
proxy CPU ticks (utime+stime delta), clock ticks per second.
idle-<config>.json in DIR: output of `idle_conns.py clients`.
"""

import argparse
import json
import os
import statistics
import sys

THROUGHPUT_CONFIGS = ["direct", "reversed", "reversed-nosplice", "haproxy-splice", "haproxy-plain",
                      "haproxy-splice-forced"]
IDLE_CONFIGS = ["reversed", "haproxy-splice"]


def load_iperf(path):
    """(bits_per_second, bytes) on the receiver side, or (None, None) with an error."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        return None, None, f"unreadable iperf3 output: {e}"
    if doc.get("error"):
        return None, None, doc["error"]
    try:
        r = doc["end"]["sum_received"]
        return float(r["bits_per_second"]), int(r["bytes"]), None
    except (KeyError, TypeError, ValueError):
        return None, None, "no end.sum_received in iperf3 output"


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, spec):
    return format(v, spec) if v is not None else "-"


def cmd_gbps(args):
    bps, _, err = load_iperf(args.file)
    print(f"{bps / 1e9:.2f}" if bps is not None else f"FAILED ({err})")


def cmd_report(args):
    runs = []
    tsv = os.path.join(args.tmp, "runs.tsv")
    if os.path.exists(tsv):
        with open(tsv) as f:
            for line in f:
                cfg, rnd, path, rc, ticks, hz = line.rstrip("\n").split("\t")
                bps, nbytes, err = load_iperf(path)
                if err is None and rc != "0":
                    err = f"iperf3 exit code {rc}"
                run = {"config": cfg, "round": int(rnd), "gbps": None,
                       "gbit_moved": None, "proxy_cpu_s": None, "gbit_per_cpu_s": None}
                if err is None:
                    run["gbps"] = bps / 1e9
                    run["gbit_moved"] = nbytes * 8 / 1e9
                if cfg != "direct" and ticks != "-":
                    run["proxy_cpu_s"] = int(ticks) / int(hz)
                    if run["gbit_moved"] is not None and run["proxy_cpu_s"] > 0:
                        run["gbit_per_cpu_s"] = run["gbit_moved"] / run["proxy_cpu_s"]
                if err:
                    run["error"] = err
                runs.append(run)

    def med(cfg, key):
        vals = [r[key] for r in runs  # failed runs would skew CPU figures
                if r["config"] == cfg and r["gbps"] is not None and r[key] is not None]
        return statistics.median(vals) if vals else None

    summary = {}
    for cfg in THROUGHPUT_CONFIGS:
        if not any(r["config"] == cfg for r in runs):
            continue
        summary[cfg] = {
            "runs": sum(1 for r in runs if r["config"] == cfg),
            "failed_runs": sum(1 for r in runs if r["config"] == cfg and r["gbps"] is None),
            "gbps_median": med(cfg, "gbps"),
            "proxy_cpu_s_median": med(cfg, "proxy_cpu_s"),
            "gbit_per_cpu_s_median": med(cfg, "gbit_per_cpu_s"),
        }
    direct = summary.get("direct", {}).get("gbps_median")
    for cfg, s in summary.items():
        s["ratio_to_direct"] = ratio(s["gbps_median"], direct)

    idle = {}
    for cfg in IDLE_CONFIGS:
        p = os.path.join(args.tmp, f"idle-{cfg}.json")
        if os.path.exists(p):
            try:
                with open(p) as f:
                    idle[cfg] = json.load(f)
            except ValueError as e:
                idle[cfg] = {"ok": False, "error": f"bad helper output: {e}"}

    def pair(a, b):
        sa, sb = summary.get(a, {}), summary.get(b, {})
        ia, ib = idle.get(a, {}), idle.get(b, {})
        return {
            "throughput": ratio(sa.get("gbps_median"), sb.get("gbps_median")),
            "gbit_per_cpu_s": ratio(sa.get("gbit_per_cpu_s_median"), sb.get("gbit_per_cpu_s_median")),
            "rss_bytes_per_conn": ratio(ia.get("rss_bytes_per_conn"), ib.get("rss_bytes_per_conn")),
        }

    ratios = {}
    if "reversed" in summary or "reversed" in idle:
        ratios["reversed/haproxy-splice"] = pair("reversed", "haproxy-splice")
        ratios["reversed/haproxy-plain"] = pair("reversed", "haproxy-plain")
        ratios["reversed/haproxy-splice-forced"] = pair("reversed", "haproxy-splice-forced")
        ratios["reversed-nosplice/haproxy-plain"] = pair("reversed-nosplice", "haproxy-plain")

    meta = dict(kv.split("=", 1) for kv in args.meta)
    doc = {"benchmark": "tcp", "meta": meta, "throughput_runs": runs,
           "throughput": summary, "idle": idle, "ratios": ratios}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    # ---- human-readable table
    idle_n = meta.get("idle_conns", "?")
    print()
    print(f"TCP proxy benchmark  {meta.get('timestamp', '')}")
    print(f"  iperf3 1 stream, {meta.get('duration_s', '?')} s x {meta.get('rounds', '?')} rounds "
          f"(alternating, median); proxy on CPU {meta.get('proxy_cpu', '?')}, "
          f"iperf3 client+server on CPU {meta.get('load_cpu', '?')}; 1 worker/thread per proxy")
    print(f"  idle: {idle_n} connections held through the proxy, "
          f"RSS growth = (VmRSS after - before) / connections")
    print()
    hdr = f"{'config':<22}{'Gbit/s':>9}{'vs direct':>11}{'proxy CPU-s':>13}{'Gbit/CPU-s':>12}{'RSS B/idle conn':>17}"
    print(hdr)
    print("-" * len(hdr))
    for cfg in THROUGHPUT_CONFIGS:
        s = summary.get(cfg)
        i = idle.get(cfg, {})
        if s is None and not i:
            if cfg == "reversed":
                print(f"{cfg:<22}{'(skipped)':>9}")
            continue
        s = s or {}
        rss = i.get("rss_bytes_per_conn")
        rss_txt = fmt(rss, ".0f") + ("" if i.get("ok", True) else " (!)")
        fail = f"  [{s['failed_runs']} run(s) failed]" if s.get("failed_runs") else ""
        print(f"{cfg:<22}{fmt(s.get('gbps_median'), '.2f'):>9}{fmt(s.get('ratio_to_direct'), '.2f'):>11}"
              f"{fmt(s.get('proxy_cpu_s_median'), '.2f'):>13}{fmt(s.get('gbit_per_cpu_s_median'), '.1f'):>12}"
              f"{rss_txt if i else '-':>17}{fail}")
    if ratios:
        print()
        print(f"{'ratio':<33}{'throughput':>11}{'Gbit/CPU-s':>12}{'RSS/conn':>10}")
        for name, r in ratios.items():
            print(f"{name:<33}{fmt(r['throughput'], '.2f'):>11}{fmt(r['gbit_per_cpu_s'], '.2f'):>12}"
                  f"{fmt(r['rss_bytes_per_conn'], '.2f'):>10}")
    print()
    print("per run (Gbit/s): " + "  ".join(
        f"{r['config']}#{r['round']}={fmt(r['gbps'], '.2f')}" for r in runs))
    for cfg, i in idle.items():
        if i.get("ok") is False or "error" in i:
            print(f"WARNING idle {cfg}: established {i.get('established')}/{i.get('requested')}, "
                  f"backend holds {i.get('backend_open')}, dropped {i.get('dropped_by_proxy')} "
                  f"{i.get('error', '')}")
        else:
            print(f"idle {cfg}: VmRSS {i['rss_before_kb']} -> {i['rss_after_kb']} kB "
                  f"({i['rss_after_close_kb']} kB after close), fds {i['proxy_fds_before']} -> "
                  f"{i['proxy_fds_after']}, all held after {i['seconds_until_backend_holds_all']} s")
    for r in runs:
        if r.get("error"):
            print(f"WARNING {r['config']} round {r['round']}: {r['error']}")
    print(f"\nJSON: {args.out}")
    bad = any(r.get("error") for r in runs) or any(i.get("ok") is False for i in idle.values())
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("gbps")
    p.add_argument("file")
    p.set_defaults(fn=cmd_gbps)
    p = sub.add_parser("report")
    p.add_argument("--tmp", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--meta", action="append", default=[], help="KEY=VALUE")
    p.set_defaults(fn=cmd_report)
    args = ap.parse_args()
    sys.exit(args.fn(args) or 0)


if __name__ == "__main__":
    main()
