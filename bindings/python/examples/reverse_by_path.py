#!/usr/bin/python3
"""A reverse proxy that routes by path to backend pools and rewrites requests.

    reverse_by_path.py --listen 127.0.0.1:8080 --default 127.0.0.1:9000 \\
                       --route /api/=127.0.0.1:9001,127.0.0.1:9002 [--route /static/=... ...]
    reverse_by_path.py --demo            # starts three tiny demo backends itself

Each --route PREFIX=BACKENDS sends requests whose path is under PREFIX (whole segments:
/api matches /api and /api/x, not /apiary) to a pool of its own (round-robin over the
comma-separated backends); the rest go to the --default pool. The prefix is stripped on
the way up (/api/users -> /users; --keep-prefix keeps it), X-Forwarded-Prefix names it,
and any client X-Debug header is dropped (as is a forged X-Forwarded-Prefix on the
default route). Responses lose Server and X-Powered-By, and a redirect naming a backend
(Location: http://10.0.0.5:9001/users/2) is rewritten to the address the client used,
with the prefix put back (http://www.example.com/api/users/2).

Everything is libferry's router (ferry.Engine.router): no Python runs per request
except the on_log hook that prints one line per request.
"""
import argparse
import http.server
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import ferry  # noqa: E402


def parse_addr(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected IP:PORT, not %r" % text)
    return text


def parse_backends(text):
    return [parse_addr(a.strip()) for a in text.split(",") if a.strip()]


def parse_route(text):
    prefix, sep, addrs = text.partition("=")
    if not sep or not prefix.startswith("/"):
        raise argparse.ArgumentTypeError("expected /PREFIX=IP:PORT[,IP:PORT...], not %r" % text)
    return prefix, parse_backends(addrs)


def demo_backend(name):
    """A backend answering JSON {backend, path, headers}, on a free loopback port."""
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = json.dumps({"backend": name, "path": self.path,
                               "headers": dict(self.headers.items())}, indent=1).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, "127.0.0.1:%d" % srv.server_address[1]


def build_routes(engine, default, routes, keep_prefix):
    """The routing table: one pool per --route, then the default pool for any path."""
    table = []
    for prefix, backends in routes:
        name = prefix.strip("/") or "root"
        public = prefix.rstrip("/") or "/"
        table.append(dict(
            name=name, path=prefix, pool=engine.pool(name, backends),
            strip_prefix=None if keep_prefix else prefix,
            set_headers={"X-Forwarded-Prefix": public},
            remove_headers=["X-Debug"]))
    table.append(dict(name="default", path="/", pool=engine.pool("default", default),
                      remove_headers=["X-Debug", "X-Forwarded-Prefix"]))
    return table


def on_log(rec):
    print("%s %s %s -> %s %d" % (rec["client"], rec["method"], rec["request_target"],
                                 rec["target"] or "-", rec["status"]), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:8080", help="IP:PORT (port 0: any free)")
    ap.add_argument("--default", type=parse_backends, metavar="IP:PORT[,IP:PORT...]",
                    help="backends for unmatched paths")
    ap.add_argument("--route", type=parse_route, action="append", default=[],
                    metavar="/PREFIX=IP:PORT[,IP:PORT...]")
    ap.add_argument("--keep-prefix", action="store_true",
                    help="send the path upstream as received (default: strip the prefix)")
    ap.add_argument("--demo", action="store_true",
                    help="start demo backends: the default on one, /api/ on two others")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    servers = []
    if args.demo:
        web, web_addr = demo_backend("web")
        api1, api1_addr = demo_backend("api-1")
        api2, api2_addr = demo_backend("api-2")
        servers += [web, api1, api2]
        args.default = args.default or [web_addr]
        args.route.append(("/api/", [api1_addr, api2_addr]))
    if not args.default:
        ap.error("--default is required (or use --demo)")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with ferry.Engine(workers=args.workers) as engine:
            routes = build_routes(engine, args.default, args.route, args.keep_prefix)
            listener = engine.reverse_http(args.listen, router=routes, on_log=on_log,
                                           hide_backend_headers=True)
            for r in listener.router.routes:
                rewrite = (" (strip %s)" % r["strip_prefix"]) if r.get("strip_prefix") else ""
                print("route %s%s -> %s" % (r["path"], rewrite,
                                            ",".join(b.address for b in r["pool"])), flush=True)
            print("listening on %s:%d" % (args.listen.rsplit(":", 1)[0], listener.port),
                  flush=True)
            engine.start()
            while not stop.wait(0.5):
                pass
            engine.stop(1000)
            engine.wait()
    except ferry.FerryError as e:
        sys.exit("reverse_by_path: %s" % e)
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


if __name__ == "__main__":
    main()
