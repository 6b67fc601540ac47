"""Shared helpers for the forward-proxy and example tests: a threaded loopback origin that
records what reached it, proxy-aware urllib openers and a bounded curl runner."""
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request

import pytest

TIMEOUT = 10
CURL = shutil.which("curl")


class _OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        origin = self.server.origin
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        seen = {"origin": origin.name, "method": self.command, "path": self.path,
                "headers": list(self.headers.items())}
        with origin.lock:
            origin.requests.append(seen)
        body = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Origin", origin.name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer

    def version_string(self):
        return "origin-server/1"

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A proxy or health check closing early is not the origin's problem.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Origin:
    """An HTTP/1.1 origin on 127.0.0.1: answers JSON {origin, method, path, headers}
    (headers in wire order) with X-Origin: <name>; .requests lists what arrived.
    handler: a subclass of _OriginHandler; port: a fixed port (0: any free one)."""

    def __init__(self, name="origin", handler=None, port=0):
        self.name = name
        self.requests = []
        self.lock = threading.Lock()
        self._srv = _Server(("127.0.0.1", port), handler or _OriginHandler)
        self._srv.daemon_threads = True
        self._srv.origin = self
        self.port = self._srv.server_address[1]
        self.addr = "127.0.0.1:%d" % self.port
        self._thread = threading.Thread(target=self._srv.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def url(self, path="/"):
        return "http://%s%s" % (self.addr, path)

    def close(self):
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(TIMEOUT)


@pytest.fixture(scope="module")
def origin():
    o = Origin("origin")
    yield o
    o.close()


def header(pairs, name):
    for n, v in pairs:
        if n.lower() == name.lower():
            return v
    return None


def via_proxy(proxy_port, url, headers=None, user=None, password=None, method=None):
    """GET url through the HTTP proxy on proxy_port with urllib's ProxyHandler;
    (status, headers dict, body). HTTP errors come back as (code, headers, body) too."""
    cred = "%s:%s@" % (user, password) if user is not None else ""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(
        {"http": "http://%s127.0.0.1:%d" % (cred, proxy_port)}))
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with opener.open(req, timeout=TIMEOUT) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as e:
        body = e.read()
        e.close()
        return e.code, dict(e.headers.items()), body


# A refused connection surfaces from urllib as one of these.
CONNECTION_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                     socket.timeout)


class CurlResult:
    def __init__(self, rc, head, body, stderr):
        self.rc, self.head, self.body, self.stderr = rc, head, body, stderr

    @property
    def status(self):
        codes = [int(l.split()[1]) for l in self.head.splitlines() if l.startswith("HTTP/")]
        return codes[-1] if codes else None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<curl rc=%d head=%r stderr=%r>" % (self.rc, self.head, self.stderr)


def curl(url, *args):
    """curl -sS ARGS URL, bounded in time, without proxies from the environment."""
    if CURL is None:
        pytest.skip("curl is not installed (Debian package 'curl')")
    # Nor the sanitizer runtimes a sanitized build preloads for Python: curl is not ours.
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "body")
        r = subprocess.run([CURL, "-sS", "--max-time", str(TIMEOUT), "--noproxy", "",
                            "-D", "-", "-o", out] + [str(a) for a in args] + [url],
                           capture_output=True, timeout=TIMEOUT + 10, env=env)
        body = open(out, "rb").read() if os.path.exists(out) else b""
    return CurlResult(r.returncode, r.stdout.decode("latin-1"), body,
                      r.stderr.decode("utf-8", "replace"))
