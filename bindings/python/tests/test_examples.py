"""Smoke tests of bindings/python/examples: each runs as a subprocess on a free port,
answers real requests, and is stopped by PID."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from conftest import TIMEOUT, Origin, curl, header, via_proxy

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")


class Example:
    """The example script running with args; .port from its "listening on" line."""

    def __init__(self, script, *args):
        self.proc = subprocess.Popen([sys.executable, "-u", os.path.join(EXAMPLES, script)]
                                     + list(args), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
        self.lines = []
        self._ready = threading.Event()
        self.port = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(TIMEOUT) or self.port is None:
            self.stop()
            pytest.fail("%s did not start: %s" % (script, "".join(self.lines)))

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("listening on "):
                self.port = int(line.split()[2].rsplit(":", 1)[1])
                self._ready.set()
        self._ready.set()  # EOF: the process ended

    def output(self, wait_for=None):
        deadline = time.monotonic() + TIMEOUT
        while wait_for and not any(wait_for in l for l in self.lines):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return "".join(self.lines)

    def stop(self):
        """SIGTERM by PID; the example must exit on its own, 0, within the timeout."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            rc = self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(TIMEOUT)
            rc = "killed"
        self._reader.join(TIMEOUT)
        self.proc.stdout.close()
        return rc


def test_forward_business_hours(origin):
    ex = Example("forward_business_hours.py", "--listen", "127.0.0.1:0", "--days", "*",
                 "--hours", "00:00-24:00", "--block", "blocked.test,.social.test",
                 "--allow-dest", "127.0.0.0/8")
    try:
        proxy = "http://127.0.0.1:%d" % ex.port
        assert curl("http://www.social.test/feed", "-x", proxy).status == 403
        status, _, body = via_proxy(ex.port, origin.url("/work"))
        assert status == 200 and json.loads(body)["path"] == "/work"
        r = curl("http://blocked.test/", "--socks5-hostname", "127.0.0.1:%d" % ex.port)
        assert r.rc != 0
        out = ex.output(wait_for="blocked 127.0.0.1 -> blocked.test:80")
        assert "blocked 127.0.0.1 -> www.social.test:80" in out
        assert "rule: deny host blocked.test,.social.test time * 00:00-24:00" in out
    finally:
        assert ex.stop() == 0


def test_forward_business_hours_outside_window(origin):
    # a window that never contains "now" (a minute long, on a day two days away)
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(time.gmtime().tm_wday + 2) % 7]
    ex = Example("forward_business_hours.py", "--listen", "127.0.0.1:0", "--days", day,
                 "--hours", "10:00-10:01", "--utc", "--block", "127.0.0.1",
                 "--allow-dest", "127.0.0.0/8")
    try:
        assert via_proxy(ex.port, origin.url("/after-hours"))[0] == 200
    finally:
        assert ex.stop() == 0


def test_reverse_by_path():
    from test_reverse import _RevHandler  # the origin plus a /v1/redirect answer
    web, api1, api2 = Origin("web"), Origin("api1", _RevHandler), Origin("api2", _RevHandler)
    ex = None
    try:
        ex = Example("reverse_by_path.py", "--listen", "127.0.0.1:0", "--default", web.addr,
                     "--route", "/api/=%s,%s" % (api1.addr, api2.addr))
        assert "route /api/ (strip /api/) -> %s,%s" % (api1.addr, api2.addr) in ex.output()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def get(path, headers=None):
            req = urllib.request.Request("http://127.0.0.1:%d%s" % (ex.port, path),
                                         headers=headers or {})
            with opener.open(req, timeout=TIMEOUT) as r:
                return dict(r.headers.items()), json.loads(r.read())

        apis = set()
        for _ in range(2):  # twice, one connection per request (urllib)
            headers, got = get("/api/users?id=1", {"X-Debug": "1"})
            apis.add(got["origin"])
            assert got["path"] == "/users?id=1"                        # prefix stripped
            assert header(got["headers"], "X-Forwarded-Prefix") == "/api"
            assert header(got["headers"], "X-Debug") is None
            assert "Server" not in headers                              # hidden
            headers, got = get("/index.html", {"X-Forwarded-Prefix": "/forged"})
            assert got["origin"] == "web" and got["path"] == "/index.html"
            assert header(got["headers"], "X-Forwarded-Prefix") is None
        assert apis == {"api1", "api2"}                                 # a pool of two
        # keep-alive: one connection, alternating pools; a redirect from a backend names
        # the proxy, under the public prefix
        r = curl("http://127.0.0.1:%d/api/a" % ex.port, "http://127.0.0.1:%d/b" % ex.port,
                 "http://127.0.0.1:%d/api/v1/redirect" % ex.port)
        assert r.rc == 0 and r.head.count("HTTP/1.1 200") == 2, r
        assert "Location: http://127.0.0.1:%d/api/v1/next?a=1" % ex.port in r.head, r.head
        assert len(api1.requests) + len(api2.requests) == 4 and len(web.requests) == 3
        out = ex.output(wait_for="/api/v1/redirect ->")
        assert "/api/users?id=1 -> %s 200" % api1.addr in out
        assert "/api/users?id=1 -> %s 200" % api2.addr in out
    finally:
        if ex:
            assert ex.stop() == 0
        web.close()
        api1.close()
        api2.close()


def test_reverse_by_path_demo():
    ex = Example("reverse_by_path.py", "--listen", "127.0.0.1:0", "--demo")
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        seen = []
        for path in ("/api/x", "/api/x", "/"):
            with opener.open("http://127.0.0.1:%d%s" % (ex.port, path), timeout=TIMEOUT) as r:
                got = json.loads(r.read())
                seen.append((got["backend"], got["path"]))
        assert sorted(seen) == [("api-1", "/x"), ("api-2", "/x"), ("web", "/")]
    finally:
        assert ex.stop() == 0
