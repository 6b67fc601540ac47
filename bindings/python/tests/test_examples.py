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
    web, api = Origin("web"), Origin("api")
    ex = None
    try:
        ex = Example("reverse_by_path.py", "--listen", "127.0.0.1:0", "--default", web.addr,
                     "--route", "/api/=" + api.addr)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def get(path, headers=None):
            req = urllib.request.Request("http://127.0.0.1:%d%s" % (ex.port, path),
                                         headers=headers or {})
            with opener.open(req, timeout=TIMEOUT) as r:
                return dict(r.headers.items()), json.loads(r.read())

        for _ in range(2):  # twice, one connection per request (urllib)
            headers, got = get("/api/users?id=1", {"X-Debug": "1"})
            assert got["origin"] == "api" and got["path"] == "/api/users?id=1"
            assert header(got["headers"], "X-Forwarded-Prefix") == "/api/"
            assert header(got["headers"], "X-Debug") is None
            assert headers["X-Backend"] == "/api/" and "Server" not in headers
            headers, got = get("/index.html", {"X-Forwarded-Prefix": "/forged"})
            assert got["origin"] == "web" and got["path"] == "/index.html"
            assert header(got["headers"], "X-Forwarded-Prefix") is None
            assert headers["X-Backend"] == "default"
        # keep-alive: one connection, alternating backends
        r = curl("http://127.0.0.1:%d/api/a" % ex.port, "http://127.0.0.1:%d/b" % ex.port)
        assert r.rc == 0 and r.head.count("HTTP/1.1 200") == 2, r
        assert "X-Backend: /api/" in r.head and "X-Backend: default" in r.head
        assert len(api.requests) == 3 and len(web.requests) == 3
        assert "/api/users?id=1 -> %s 200" % api.addr in ex.output(wait_for="/b ->")
    finally:
        if ex:
            assert ex.stop() == 0
        web.close()
        api.close()


def test_reverse_by_path_demo():
    ex = Example("reverse_by_path.py", "--listen", "127.0.0.1:0", "--demo")
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for path, backend in (("/api/x", "api"), ("/", "web")):
            with opener.open("http://127.0.0.1:%d%s" % (ex.port, path), timeout=TIMEOUT) as r:
                assert json.loads(r.read())["backend"] == backend
    finally:
        assert ex.stop() == 0
