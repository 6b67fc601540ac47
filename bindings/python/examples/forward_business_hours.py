#!/usr/bin/python3
"""A forward proxy that keeps distracting sites out of business hours.

    forward_business_hours.py [--listen 127.0.0.1:3128] [--block .facebook.com,...]
                              [--days mon-fri] [--hours 09:00-17:30] [--lunch 12:00-13:00]
                              [--utc] [--allow-dest CIDR] [--workers N]

Then, for instance:

    curl -x http://127.0.0.1:3128 http://www.facebook.com/        # 403 during the window
    curl -p -x http://127.0.0.1:3128 https://example.com/         # CONNECT tunnel
    curl --socks5-hostname 127.0.0.1:3128 http://example.com/     # SOCKS5, same port

The blocking is the library's own time-window rule (decided before any DNS lookup, for
HTTP, CONNECT and SOCKS alike); Python only builds the rules and prints one line per
refused request from the on_log hook. Stop it with Ctrl-C or SIGTERM.
"""
import argparse
import os
import signal
import sys
import threading

# Run from a source checkout without installing: the package sits two levels up.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import ferry  # noqa: E402

DEFAULT_BLOCK = ".facebook.com,.instagram.com,.tiktok.com,.reddit.com,.youtube.com"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:3128",
                    help="IP:PORT to accept clients on (port 0: any free port)")
    ap.add_argument("--block", default=DEFAULT_BLOCK,
                    help="host patterns to block: name, .suffix or glob, comma separated")
    ap.add_argument("--days", default="mon-fri", help="e.g. mon-fri, sat,sun or *")
    ap.add_argument("--hours", default="09:00-17:30", help="HH:MM-HH:MM (24:00 may end it)")
    ap.add_argument("--lunch", default=None, help="HH:MM-HH:MM when the sites are allowed")
    ap.add_argument("--utc", action="store_true", help="times are UTC, not local time")
    ap.add_argument("--allow-dest", action="append", default=[],
                    help="lift the refused-destination default for a CIDR (e.g. 127.0.0.0/8)")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    zone = " utc" if args.utc else ""
    rules = []
    if args.lunch:
        rules.append("allow host %s time %s %s%s" % (args.block, args.days, args.lunch, zone))
    rules.append("deny host %s time %s %s%s" % (args.block, args.days, args.hours, zone))

    def on_log(rec):  # runs on a worker thread, once per request or SOCKS session
        if rec["verdict"] == "rejected":
            who = rec["user"] or rec["client"]
            print("blocked %s -> %s:%d" % (who, rec["dest_host"], rec["dest_port"]), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with ferry.Engine(workers=args.workers) as engine:
            listener = engine.forward(args.listen, rules=rules, allow_dest=args.allow_dest,
                                      on_log=on_log)
            host = args.listen.rsplit(":", 1)[0]
            for r in rules:
                print("rule: %s" % r, flush=True)
            print("listening on %s:%d (http, CONNECT, socks)" % (host, listener.port),
                  flush=True)
            engine.start()
            while not stop.wait(0.5):  # the main thread stays responsive to signals
                pass
            engine.stop(1000)
            engine.wait()
    except ferry.FerryError as e:
        sys.exit("forward_business_hours: %s" % e)


if __name__ == "__main__":
    main()
