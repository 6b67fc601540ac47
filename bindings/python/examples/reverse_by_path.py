#!/usr/bin/python3
"""A reverse proxy that routes by path and rewrites headers.

    reverse_by_path.py --listen 127.0.0.1:8080 --default 127.0.0.1:9000 \\
                       --route /api/=127.0.0.1:9001 [--route /static/=127.0.0.1:9002 ...]
    reverse_by_path.py --demo            # starts two tiny demo backends itself

Requests whose target starts with a --route prefix go to that backend, the rest to
--default. On the way up, X-Forwarded-Prefix names the matched prefix and any client
X-Debug header is dropped; on the way back, X-Backend names the backend that answered
and Server is removed.

How, with what the C API has today: libferry has no per-request routing yet (on_request
cannot choose the upstream, and the request target cannot be rewritten, so the prefix is
kept). But for an HTTP request the hooks run in this order on the worker that owns the
connection: on_request (sees the path) -> on_route (may rewrite the upstream host:port)
-> on_response -> on_log. The session id ties them together: on_request notes the
backend for the session, on_route applies it, on_log forgets it.
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
    return host.strip("[]"), int(port)


def parse_route(text):
    prefix, sep, addr = text.partition("=")
    if not sep or not prefix.startswith("/"):
        raise argparse.ArgumentTypeError("expected /PREFIX=IP:PORT, not %r" % text)
    return prefix, parse_addr(addr)


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
    return srv, ("127.0.0.1", srv.server_address[1])


class PathRouter:
    """The three hooks sharing one table: session id -> (prefix, (host, port))."""

    def __init__(self, routes):
        # longest prefix first, so /api/v2/ wins over /api/
        self.routes = sorted(routes, key=lambda r: len(r[0]), reverse=True)
        self.chosen = {}  # dict operations are atomic under the GIL

    def on_request(self, req):
        path = req.target
        for prefix, backend in self.routes:
            if path.startswith(prefix):
                self.chosen[req.session_id] = (prefix, backend)
                req.set_header("X-Forwarded-Prefix", prefix)
                break
        else:
            self.chosen.pop(req.session_id, None)
            req.remove_header("X-Forwarded-Prefix")
        req.remove_header("X-Debug")

    def on_route(self, session, target):
        choice = self.chosen.get(session.id)
        if choice:
            return choice[1]  # (host, port): replaces the pool's pick
        return None           # the default pool's backend

    def on_response(self, resp):
        choice = self.chosen.get(resp.session_id)
        resp.set_header("X-Backend", choice[0] if choice else "default")
        resp.remove_header("Server")

    def on_log(self, rec):
        self.chosen.pop(rec["session_id"], None)
        print("%s %s %s -> %s %d" % (rec["client"], rec["method"], rec["request_target"],
                                     rec["target"], rec["status"]), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:8080", help="IP:PORT (port 0: any free)")
    ap.add_argument("--default", type=parse_addr, help="backend for unmatched paths")
    ap.add_argument("--route", type=parse_route, action="append", default=[],
                    metavar="/PREFIX=IP:PORT")
    ap.add_argument("--demo", action="store_true",
                    help="start demo backends: default on one, /api/ on another")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    servers = []
    if args.demo:
        web, web_addr = demo_backend("web")
        api, api_addr = demo_backend("api")
        servers += [web, api]
        args.default = args.default or web_addr
        args.route.append(("/api/", api_addr))
    if not args.default:
        ap.error("--default is required (or use --demo)")

    router = PathRouter(args.route)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with ferry.Engine(workers=args.workers) as engine:
            listener = engine.reverse_http(
                args.listen, ["%s:%d" % args.default], on_request=router.on_request,
                on_route=router.on_route, on_response=router.on_response,
                on_log=router.on_log)
            for prefix, (host, port) in router.routes:
                print("route %s -> %s:%d" % (prefix, host, port), flush=True)
            print("route (default) -> %s:%d" % args.default, flush=True)
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
