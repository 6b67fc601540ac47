"""The reverse side of the bindings: pools, routers, SNI passthrough, listener options,
request hooks that steer the upstream request, run-time backend changes, health checks
and engine stats -- through real loopback connections to small local origins."""
import http.client
import json
import socket
import struct
import threading
import time

import pytest

import ferry
from conftest import CURL, TIMEOUT, Origin, _OriginHandler, curl, header


def get(port, path="/", host=None, headers=None, method="GET", body=None):
    """One request on a fresh connection: (status, headers, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        h = dict(headers or {})
        if host is not None:
            h["Host"] = host
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


def get_json(port, path="/", **kw):
    status, headers, body = get(port, path, **kw)
    assert status == 200, (status, body)
    return json.loads(body)


def wait_for(cond, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for %s" % what)
        time.sleep(0.02)


class _RevHandler(_OriginHandler):
    """The conftest origin plus /health (200, or 503 while origin.healthy is False; not
    recorded), /redirect (a 302 naming the origin's own address, with a cookie and
    headers that name the backend software), and 500 for everything else while
    origin.failing is True."""

    def _answer(self):
        origin = self.server.origin
        if self.path == "/health":
            ok = getattr(origin, "healthy", True)
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if getattr(origin, "failing", False):  # a broken application: 500 for everything
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/v1/redirect"):
            with origin.lock:
                origin.requests.append({"path": self.path,
                                        "headers": list(self.headers.items())})
            self.send_response(302)
            self.send_header("Location", "http://%s/v1/next?a=1" % origin.addr)
            self.send_header("Set-Cookie",
                             "s=1; Path=/v1/cart; Domain=.backend.internal; HttpOnly")
            self.send_header("X-Powered-By", "secret-framework")
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"moved\n")
            return
        super()._answer()

    do_GET = do_POST = do_HEAD = _answer


def origin(name, port=0):
    return Origin(name, _RevHandler, port)


@pytest.fixture
def origins():
    made = []

    def make(*names):
        new = [origin(n) for n in names]
        made.extend(new)
        return new if len(new) > 1 else new[0]
    yield make
    for o in made:
        o.close()


def served(o):
    """Requests an origin answered, health checks left out."""
    with o.lock:
        return len(o.requests)


# ---- routing ----

def test_route_by_host_and_path(origins):
    web, api, admin = origins("web", "api", "admin")
    with ferry.Engine() as engine:
        pweb = engine.pool("web", [web.addr])
        router = engine.router([
            dict(host="www.test", pool=pweb, name="site"),
            dict(host="www.test", path="/api", pool=engine.pool("api", [api.addr]),
                 strip_prefix="/api", add_prefix="/v1", set_headers={"X-Route": "api"},
                 remove_headers=["Cookie"], backend_host=True, max_body_bytes=10),
            dict(host="www.test", path=r"\.png$", match="regex", pool=pweb,
                 set_headers=[("X-Image", "1")]),
            dict(host="www.test", path="/exact", match="exact", pool=admin.addr),
        ])
        router.add(host="*.admin.test", pool=[admin.addr], methods="GET,HEAD")
        assert len(router) == 5 and len(router.routes) == 5
        assert isinstance(router.routes[4]["pool"], ferry.Pool)
        l = engine.reverse_http(router=router)
        assert l.router is router and l.pool is None and l.protocol == "http"
        engine.start()

        got = get_json(l.port, "/index.html", host="www.test", headers={"Cookie": "a=1"})
        assert got["origin"] == "web" and got["path"] == "/index.html"
        assert header(got["headers"], "Host") == "www.test"          # the client's Host
        assert header(got["headers"], "Cookie") == "a=1"

        got = get_json(l.port, "/api/users?x=1", host="WWW.test:80", headers={"Cookie": "a=1"})
        assert got["origin"] == "api" and got["path"] == "/v1/users?x=1"  # stripped, added
        assert header(got["headers"], "Host") == api.addr              # backend_host
        assert header(got["headers"], "X-Route") == "api"
        assert header(got["headers"], "Cookie") is None
        # whole segments: /apiary is not under /api
        assert get_json(l.port, "/apiary", host="www.test")["origin"] == "web"
        # the route's body limit
        assert get(l.port, "/api/x", host="www.test", method="POST", body=b"x" * 11)[0] == 413
        assert get(l.port, "/x", host="www.test", method="POST", body=b"x" * 11)[0] == 200

        got = get_json(l.port, "/img/logo.png", host="www.test")
        assert got["origin"] == "web" and header(got["headers"], "X-Image") == "1"
        assert get_json(l.port, "/exact", host="www.test")["origin"] == "admin"
        assert get_json(l.port, "/exact/more", host="www.test")["origin"] == "web"

        assert get_json(l.port, "/", host="a.admin.test")["origin"] == "admin"
        # methods: POST has no route on that host
        assert get(l.port, "/", host="a.admin.test", method="POST", body=b"")[0] == 404
        # no route at all: 404 from ferry, no origin hears of it
        before = served(web) + served(api) + served(admin)
        status, headers, body = get(l.port, "/", host="other.test")
        assert status == 404
        assert get(l.port, "/", host="admin.test")[0] == 404  # "*.x" needs a label before
        assert served(web) + served(api) + served(admin) == before


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_routes_per_request_on_one_connection(origins):
    web, api = origins("web", "api")
    logs = []
    with ferry.Engine() as engine:
        l = engine.reverse_http(router=[dict(pool=[web.addr]),
                                        dict(path="/api/", pool=[api.addr], strip_prefix="/api")],
                                on_log=logs.append)
        engine.start()
        base = "http://www.test:%d" % l.port
        # curl puts its first argument last: /api/a, /b, /api/c on one keep-alive connection
        r = curl(base + "/api/c", "--resolve", "www.test:%d:127.0.0.1" % l.port,
                 base + "/api/a", base + "/b")
        assert r.rc == 0 and r.head.count("HTTP/1.1 200") == 3, r
        assert [q["path"] for q in api.requests] == ["/a", "/c"]
        assert [q["path"] for q in web.requests] == ["/b"]
        wait_for(lambda: len(logs) == 3, what="three log records")
        assert len({rec["session_id"] for rec in logs}) == 1
        assert [rec["target"] for rec in logs] == [api.addr, web.addr, api.addr]


def test_route_errors():
    with ferry.Engine() as engine:
        pool = engine.pool("p", ["127.0.0.1:9"])
        router = engine.router()
        with pytest.raises(ferry.FerryError) as e:
            router.add(host="bad host!", pool=pool)
        assert e.value.name == "ECONFIG" and "bad host pattern" in str(e.value)
        with pytest.raises(ferry.FerryError) as e:
            router.add(path="(", match="regex", pool=pool)
        assert e.value.name == "ECONFIG" and "regular expression" in e.value.message
        with pytest.raises(ferry.FerryError) as e:
            router.add(path="/x", methods="GET,BAD METHOD", pool=pool)
        assert e.value.name == "ECONFIG"
        with pytest.raises(ValueError):
            router.add(pool=pool, set_headers={"X-A": "1\r\nX-Injected: 1"})
        with pytest.raises(ValueError):
            router.add(pool=pool, match="glob")
        with pytest.raises(TypeError):
            router.add(pool=pool, strip="/x")
        with pytest.raises(TypeError):
            router.add(path="/x")
        assert len(router) == 0
        with ferry.Engine() as other:
            with pytest.raises(ferry.FerryError):
                router.add(pool=other.pool("o", ["127.0.0.1:9"]))
            with pytest.raises(ferry.FerryError):
                other.reverse_http(router=router)
        with pytest.raises(TypeError):
            engine.reverse_http(backends=["127.0.0.1:9"], router=router)
        router.add(pool=pool)
        engine.reverse_http(router=router)
        engine.start()
        with pytest.raises(ferry.FerryError) as e:
            router.add(pool=pool)
        assert e.value.name == "ESTATE"
        with pytest.raises(ferry.FerryError) as e:
            engine.pool("late")
        assert e.value.name == "ESTATE"
        with pytest.raises(ferry.FerryError) as e:
            engine.router()
        assert e.value.name == "ESTATE"
    with pytest.raises(ferry.FerryError):
        len(router)
    assert "closed" in repr(router) and "closed" in repr(pool)


# ---- balancing ----

def test_round_robin_weights_and_hash_header(origins):
    a, b, c = origins("a", "b", "c")
    addrs = [a.addr, b.addr, c.addr]
    with ferry.Engine() as engine:
        rr = engine.pool("rr", addrs)
        weighted = engine.pool("weighted", [(a.addr, 3), (b.addr, 1)])
        hashed = engine.pool("hashed", addrs, balance=("hash-header", "X-User"))
        least = engine.pool("least", addrs, balance="leastconn")
        rand = engine.pool("rand", addrs, balance="random2")
        l = engine.reverse_http(router=[
            dict(path="/rr", pool=rr), dict(path="/w", pool=weighted),
            dict(path="/hash", pool=hashed), dict(path="/least", pool=least),
            dict(path="/rand", pool=rand)])
        engine.start()

        seen = [get_json(l.port, "/rr")["origin"] for _ in range(6)]
        assert sorted(seen) == ["a", "a", "b", "b", "c", "c"]
        assert seen[:3] == seen[3:]                                   # a cycle
        seen = [get_json(l.port, "/w")["origin"] for _ in range(8)]
        assert seen.count("a") == 6 and seen.count("b") == 2

        owner = {}
        for i in range(16):
            user = "user-%d" % i
            got = {get_json(l.port, "/hash", headers={"X-User": user})["origin"]
                   for _ in range(3)}
            assert len(got) == 1, (user, got)                         # sticky
            owner[user] = got.pop()
        assert len(set(owner.values())) >= 2                          # and spread
        # without the header: round-robin
        seen = {get_json(l.port, "/hash")["origin"] for _ in range(3)}
        assert seen == {"a", "b", "c"}
        # a re-weighted backend keeps its keys' owners elsewhere where they were
        hb = hashed.backend(a.addr)
        hb.weight = 5
        assert hb.weight == 5
        moved = [u for u, o in owner.items() if o != "a" and
                 get_json(l.port, "/hash", headers={"X-User": u})["origin"] not in (o, "a")]
        assert moved == []

        for path in ("/least", "/rand"):
            assert {get_json(l.port, path)["origin"] for _ in range(9)} <= {"a", "b", "c"}


def test_sticky_cookie(origins):
    a, b, c = origins("a", "b", "c")
    with ferry.Engine() as engine:
        pool = engine.pool("app", [a.addr, b.addr, c.addr], sticky_cookie=("SRV", "s3cret"))
        l = engine.reverse_http(router=[dict(pool=pool)])
        engine.start()

        status, headers, body = get(l.port)
        home = json.loads(body)["origin"]
        cookie = headers["Set-Cookie"]
        assert cookie.startswith("SRV=") and cookie.endswith("; Path=/; HttpOnly")
        assert len(cookie.split(";")[0]) == 4 + 16 and a.addr not in cookie
        assert headers["Cache-Control"] == "private"
        value = cookie.split(";")[0]
        for _ in range(6):
            status, headers, body = get(l.port, headers={"Cookie": "x=1; %s; y=2" % value})
            got = json.loads(body)
            assert got["origin"] == home and headers["Set-Cookie"] is None
            assert header(got["headers"], "Cookie") == "x=1; y=2"
        # others go round-robin, each told where it went
        seen = {}
        for _ in range(3):
            status, headers, body = get(l.port)
            seen[json.loads(body)["origin"]] = headers["Set-Cookie"]
        assert sorted(seen) == ["a", "b", "c"] and seen[home] == cookie
        # a value of another pool (or none of ours) is balanced and set again
        status, headers, body = get(l.port, headers={"Cookie": "SRV=0123456789abcdef"})
        assert headers["Set-Cookie"] == seen[json.loads(body)["origin"]]

    with ferry.Engine() as engine:
        pool = engine.pool("p", ["127.0.0.1:9"])
        for bad in ("a b", "a=b", "x;y", '"q"'):
            with pytest.raises(ferry.FerryError) as e:
                pool.set_sticky_cookie(bad)
            assert e.value.name == "EINVAL"
        pool.set_sticky_cookie("SRV")
        pool.set_sticky_cookie(None)


def test_pool_options_and_errors():
    with ferry.Engine() as engine:
        for bad in ("fastest", ("hash-header",), ("hash-cookie", ""), ("roundrobin", "x")):
            with pytest.raises(ValueError):
                engine.pool(balance=bad)
        with pytest.raises(ValueError):
            engine.pool(health={"kind": "udp"})
        with pytest.raises(TypeError):
            engine.pool(health={"intervall_ms": 5})
        with pytest.raises(ferry.FerryError) as e:
            engine.pool(health={"path": "no-slash"})
        assert e.value.name == "EINVAL"
        p = engine.pool("named", balance="hash-cookie:sid", health="/ping", down_time_ms=100,
                        resolve_interval_ms=0)
        engine.pool(balance="hash-uri", health="tcp")
        engine.pool(balance="hash-client",
                    health=dict(kind="http", path="/h", host="h.test", interval_ms=500,
                                timeout_ms=200, rise=1, fall=1, status=(200, 204)))
        with pytest.raises(ferry.FerryError) as e:
            p.add("127.0.0.1:1", weight=1001)
        assert e.value.name == "EINVAL"
        with pytest.raises(ferry.FerryError) as e:
            p.add("not an address")
        b = p.add("localhost:1", 2)              # names resolve (synchronously)
        assert (b.address, b.weight, b.draining, b.down, b.active, b.removed) == \
            ("localhost:1", 2, False, False, 0, False)
        assert len(p) == 1 and p.backends == [b] and list(p) == [b] and p.backend("x") is None
        with pytest.raises(ferry.FerryError):
            b.weight = 0
        p.remove("localhost:1")
        assert b.removed and len(p) == 0 and p.backends == []
        for action in (lambda: setattr(b, "weight", 3), lambda: setattr(b, "draining", True),
                       lambda: p.remove(b)):
            with pytest.raises(ferry.FerryError) as e:
                action()
            assert e.value.name == "ESTATE"
        with pytest.raises(ferry.FerryError):
            p.remove("localhost:1")
        l = engine.reverse_tcp(backends=p)
        assert l.pool is p and l.router is None
    with pytest.raises(ferry.FerryError):
        b.weight
    with pytest.raises(ferry.FerryError):
        p.add("127.0.0.1:1")
    assert "closed" in repr(b)


# ---- run-time changes and health ----

class Hammer:
    """Requests in a loop on another thread, recording (origin or error) per request."""

    def __init__(self, port, path="/"):
        self.port, self.path = port, path
        self.results = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                status, _, body = get(self.port, self.path)
                self.results.append(json.loads(body)["origin"] if status == 200 else status)
            except Exception as e:  # noqa: BLE001 - recorded, asserted on
                self.results.append(repr(e))
            time.sleep(0.003)

    def mark(self):
        return len(self.results)

    def since(self, mark):
        return self.results[mark:]

    def wait_count(self, n):
        target = len(self.results) + n
        wait_for(lambda: len(self.results) >= target, what="%d more requests" % n)

    def stop(self):
        self._stop.set()
        self._thread.join(TIMEOUT)


def test_runtime_add_remove_drain(origins):
    a, b = origins("a", "b")
    with ferry.Engine(workers=2) as engine:
        pool = engine.pool("live", [a.addr])
        l = engine.reverse_http(backends=pool)
        engine.start()
        hammer = Hammer(l.port)
        try:
            hammer.wait_count(5)
            bb = pool.add(b.addr)                               # while running
            m = hammer.mark()
            wait_for(lambda: "b" in hammer.since(m), what="the new backend to serve")

            ba = pool.backend(a.addr)
            ba.draining = True
            assert ba.draining and len(pool) == 2
            hammer.wait_count(3)
            m = hammer.mark()
            hammer.wait_count(10)
            assert set(hammer.since(m)) == {"b"}
            wait_for(lambda: ba.active == 0, what="the drained backend to go idle")

            ba.draining = False
            m = hammer.mark()
            wait_for(lambda: "a" in hammer.since(m), what="the undrained backend to serve")

            pool.remove(bb)
            assert bb.removed and pool.backends == [ba]
            hammer.wait_count(3)
            m = hammer.mark()
            hammer.wait_count(10)
            assert set(hammer.since(m)) == {"a"}

            again = pool.add(b.addr, weight=2)                  # the address comes back
            m = hammer.mark()
            wait_for(lambda: "b" in hammer.since(m), what="the re-added backend to serve")
            assert again is not bb and again.weight == 2
        finally:
            hammer.stop()
        assert hammer.results and set(hammer.results) <= {"a", "b"}, \
            [r for r in hammer.results if r not in ("a", "b")][:5]


def test_health_check_ejects_and_restores(origins):
    good, flaky = origins("good", "flaky")
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_addr = "127.0.0.1:%d" % dead.getsockname()[1]
    dead.close()                                   # nothing listens there now
    with ferry.Engine() as engine:
        pool = engine.pool("checked", [good.addr, flaky.addr, dead_addr],
                           health=dict(kind="http", path="/health", interval_ms=40,
                                       timeout_ms=500, rise=2, fall=2),
                           down_time_ms=0)  # no passive marking: only the checks count
        l = engine.reverse_http(backends=pool)
        bgood, bflaky, bdead = pool.backends
        engine.start()
        wait_for(lambda: bdead.down, what="the dead backend to be marked down")
        assert not bgood.down and not bflaky.down
        seen = [get_json(l.port, "/")["origin"] for _ in range(6)]
        assert sorted(set(seen)) == ["flaky", "good"]

        flaky.healthy = False                      # /health answers 503
        wait_for(lambda: bflaky.down, what="the failing backend to be marked down")
        assert {get_json(l.port, "/")["origin"] for _ in range(6)} == {"good"}
        flaky.healthy = True
        wait_for(lambda: not bflaky.down, what="the backend to come back")
        assert "flaky" in {get_json(l.port, "/")["origin"] for _ in range(6)}
        assert bdead.down


# ---- responses and listener options ----

def test_location_and_cookie_rewriting(origins):
    api = origins("api")
    route = dict(path="/shop", pool=[api.addr], strip_prefix="/shop", add_prefix="/v1",
                 cookie_domain="backend.internal", public_cookie_domain="www.example.test")
    with ferry.Engine() as engine:
        l = engine.reverse_http(router=[route], public_scheme="https",
                                hide_backend_headers=True)
        plain = engine.reverse_http(router=[route], rewrite_responses=False)
        engine.start()
        status, headers, _ = get(l.port, "/shop/redirect", host="www.example.test")
        assert status == 302
        assert api.requests[-1]["path"] == "/v1/redirect"
        assert headers["Location"] == "https://www.example.test/shop/next?a=1"
        assert headers["Set-Cookie"] == "s=1; Path=/shop/cart; Domain=.www.example.test; HttpOnly"
        assert "Server" not in headers and "X-Powered-By" not in headers

        status, headers, _ = get(plain.port, "/shop/redirect", host="www.example.test")
        assert status == 302
        assert headers["Location"] == "http://%s/v1/next?a=1" % api.addr
        assert "Domain=.backend.internal" in headers["Set-Cookie"]
        assert headers["X-Powered-By"] == "secret-framework"


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_location_rewriting_with_curl(origins):
    o = origins("o")
    with ferry.Engine() as engine:
        l = engine.reverse_http(backends=[o.addr])
        engine.start()
        r = curl("http://public.test:%d/v1/redirect" % l.port,
                 "--resolve", "public.test:%d:127.0.0.1" % l.port)
        assert r.status == 302, r
        assert "Location: http://public.test:%d/v1/next?a=1" % l.port in r.head, r.head


def test_keep_alive_after_empty_response(origins):
    o = origins("o")
    with ferry.Engine() as engine:
        l = engine.reverse_http(backends=[o.addr])
        engine.start()
        c = http.client.HTTPConnection("127.0.0.1", l.port, timeout=1)
        try:
            for path in ("/health", "/after"):  # /health: 200 with Content-Length: 0
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                assert r.status == 200
        finally:
            c.close()


def test_forwarding_headers(origins):
    o = origins("o")
    with ferry.Engine() as engine:
        trusting = engine.reverse_http(backends=[o.addr], trusted_forwarders=["127.0.0.0/8"],
                                       forwarded_rfc7239=True, add_via=True)
        wary = engine.reverse_http(backends=[o.addr], trusted_forwarders="10.0.0.0/8")
        off = engine.reverse_http(backends=[o.addr], forwarded_headers=False)
        engine.start()
        sent = {"X-Forwarded-For": "198.51.100.1"}
        got = get_json(trusting.port, "/", host="h.test", headers=sent)["headers"]
        assert header(got, "X-Forwarded-For") == "198.51.100.1, 127.0.0.1"
        assert "for=127.0.0.1" in header(got, "Forwarded")
        assert header(got, "Via") == "1.1 ferry"
        got = get_json(wary.port, "/", headers=sent)["headers"]
        assert header(got, "X-Forwarded-For") == "127.0.0.1"
        assert header(got, "Forwarded") is None and header(got, "Via") is None
        got = get_json(off.port, "/", headers=sent)["headers"]
        assert header(got, "X-Forwarded-For") == "198.51.100.1"


class RawOrigin:
    """A TCP origin on 127.0.0.1 recording each connection's bytes until done(data) says
    so, then answering `reply` and closing."""

    def __init__(self, done, reply):
        self.done, self.reply = done, reply
        self.connections = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                c, _ = self._sock.accept()
            except OSError:
                return
            with c:
                c.settimeout(TIMEOUT)
                data = b""
                try:
                    while not self.done(data):
                        piece = c.recv(4096)
                        if not piece:
                            break
                        data += piece
                    self.connections.append(data)
                    c.sendall(self.reply)
                except OSError:
                    self.connections.append(data)

    def close(self):
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(TIMEOUT)


def _http_head_done(data):
    return b"HTTP/1.1\r\n" in data and data.endswith(b"\r\n\r\n")


def _exchange(port, data, pieces=1):
    """Send data (in pieces), read until the peer closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    with s:
        step = max(1, len(data) // pieces)
        for i in range(0, len(data), step):
            s.sendall(data[i:i + step])
            if pieces > 1:
                time.sleep(0.01)
        out = b""
        try:
            while True:
                piece = s.recv(4096)
                if not piece:
                    break
                out += piece
        except ConnectionResetError:
            pass
        return out


def test_proxy_protocol_in_and_out():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    raw = RawOrigin(_http_head_done, ok)
    try:
        with ferry.Engine() as engine:
            v1 = engine.reverse_http(backends=[raw.addr], accept_proxy=True,
                                     proxy_trusted="127.0.0.0/8", send_proxy=1)
            v2 = engine.reverse_http(backends=[raw.addr], send_proxy=2)
            engine.start()
            req = b"GET /p HTTP/1.1\r\nHost: h.test\r\nConnection: close\r\n\r\n"
            out = _exchange(v1.port, b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n" + req)
            assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"ok"), out
            seen = raw.connections[-1]
            first, _, rest = seen.partition(b"\r\n")
            assert first.startswith(b"PROXY TCP4 203.0.113.7 "), seen
            assert rest.startswith(b"GET /p HTTP/1.1\r\n")
            assert b"X-Forwarded-For: 203.0.113.7\r\n" in rest

            n = len(raw.connections)
            assert _exchange(v1.port, req) == b""          # no PROXY header: closed
            assert len(raw.connections) == n

            out = _exchange(v2.port, req)
            assert out.endswith(b"ok"), out
            seen = raw.connections[-1]
            assert seen.startswith(b"\r\n\r\n\x00\r\nQUIT\n\x21\x11"), seen[:16]  # v2 TCP4
            (length,) = struct.unpack("!H", seen[14:16])
            assert seen[16 + length:].startswith(b"GET /p HTTP/1.1\r\n")
    finally:
        raw.close()


def client_hello(name=None):
    """A minimal TLS 1.2 ClientHello record, with a server_name extension if name."""
    body = b"\x03\x03" + bytes(range(32)) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    ext = b""
    if name is not None:
        n = name.encode("ascii")
        server_name = b"\x00" + struct.pack("!H", len(n)) + n
        ext = struct.pack("!HH", 0, len(server_name) + 2) + struct.pack("!H", len(server_name)) \
            + server_name
    body += struct.pack("!H", len(ext)) + ext
    handshake = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def test_sni_passthrough():
    app_data = b"\x17\x03\x03\x00\x0aopaqueDONE"
    done = lambda data: data.endswith(b"DONE")  # noqa: E731
    a = RawOrigin(done, b"hello-from-a")
    b = RawOrigin(done, b"hello-from-b")
    routed = []
    try:
        with ferry.Engine() as engine:
            router = engine.router([dict(host="a.test", pool=[a.addr]),
                                    dict(host="*.b.test", pool=[b.addr])])
            l = engine.reverse_sni(
                router=router, on_route=lambda s, t: routed.append((s.dest_host, t.backend)))
            assert l.protocol == "sni"
            engine.start()
            for name, origin_, answer in (("A.test", a, b"hello-from-a"),
                                          ("x.b.test", b, b"hello-from-b")):
                hello = client_hello(name)
                assert _exchange(l.port, hello + app_data, pieces=3) == answer
                assert origin_.connections[-1] == hello + app_data   # byte for byte
            assert routed == [("A.test", a.addr), ("x.b.test", b.addr)]
            # no route for the name, no default route: closed, nobody reached
            assert _exchange(l.port, client_hello("c.test") + app_data) == b""
            assert _exchange(l.port, client_hello() + app_data) == b""
            assert len(a.connections) == 1 and len(b.connections) == 1
    finally:
        a.close()
        b.close()


# ---- hooks steering the upstream request ----

def test_request_hooks_steer_upstream(origins):
    o = origins("o")
    errors = []

    def on_request(req):
        if req.target.startswith("/old/"):
            req.set_target("/new/" + req.target[5:])
        elif req.target == "/backend-host":
            req.set_backend_host(True)
        elif req.target == "/small":
            req.set_upstream_limits(max_body_bytes=5, connect_timeout_ms=1000)
        elif req.target == "/bad":
            for bad in ("no-slash", "/with space", "/ctl\x01"):
                try:
                    req.set_target(bad)
                except ferry.FerryError as e:
                    errors.append(e.name)
            with pytest.raises(ValueError):
                req.set_target("/nul\0")
            with pytest.raises(ValueError):
                req.set_upstream_limits(response_timeout_ms=-1)
            return ferry.respond(200, "checked")
        elif req.target == "/keep":
            kept.append(req)

    kept = []
    with ferry.Engine() as engine:
        l = engine.reverse_http(backends=[o.addr], on_request=on_request)
        engine.start()
        got = get_json(l.port, "/old/a?b=1", host="h.test")
        assert got["path"] == "/new/a?b=1"
        assert header(got["headers"], "Host") == "h.test"
        got = get_json(l.port, "/backend-host", host="h.test")
        assert header(got["headers"], "Host") == o.addr
        # (chunked; a Content-Length body over the hook's limit: see the test below)
        assert post_chunked(l.port, "/small", [b"123", b"456"]) == 413
        assert get(l.port, "/small", method="POST", body=b"12345")[0] == 200
        assert get(l.port, "/bad")[2] == b"checked"
        assert errors == ["EINVAL"] * 3
        get(l.port, "/keep")
        with pytest.raises(ferry.StaleObjectError):
            kept[0].set_target("/x")


def post_chunked(port, path, chunks):
    """A chunked POST in one write; the status line's code, or None if closed without."""
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    out = _exchange(port, b"POST %s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                    b"Connection: close\r\n\r\n" % path.encode() + body)
    return int(out.split()[1]) if out.startswith(b"HTTP/1.1 ") else None


def test_hook_body_limit_with_content_length(origins):
    o = origins("o")

    def on_request(req):
        req.set_upstream_limits(max_body_bytes=5)

    with ferry.Engine() as engine:
        l = engine.reverse_http(backends=[o.addr], on_request=on_request)
        engine.start()
        assert get(l.port, "/small", method="POST", body=b"123456")[0] == 413


def test_request_hooks_with_router(origins):
    o = origins("o")

    def on_request(req):
        if req.target == "/plain/x":
            req.set_target("/from-hook")
        req.set_backend_host(True)

    def on_upstream_request(req):  # after the router: its rewrite is final
        if req.target == "/strip/late":
            req.set_target("/from-upstream-hook")

    with ferry.Engine() as engine:
        l = engine.reverse_http(router=[
            dict(path="/plain", pool=[o.addr]),
            dict(path="/strip", pool=[o.addr], strip_prefix="/strip")], on_request=on_request,
            on_upstream_request=on_upstream_request)
        engine.start()
        got = get_json(l.port, "/plain/x", host="h.test")
        # a route without prefix rewriting keeps the hook's target ...
        assert got["path"] == "/from-hook"
        # ... and the hook's backend Host (the route does not ask for one either way)
        assert header(got["headers"], "Host") == o.addr
        assert get_json(l.port, "/strip/y", host="h.test")["path"] == "/y"
        assert get_json(l.port, "/strip/late", host="h.test")["path"] == "/from-upstream-hook"


def test_stats(origins):
    o = origins("o")
    with ferry.Engine() as engine:
        l = engine.reverse_http(backends=[o.addr])
        stats = engine.stats()
        assert stats == {"requests_retried": 0, "retries_refused": 0, "sessions": 0}
        engine.start()
        get_json(l.port, "/")
        stats = engine.stats()
        assert set(stats) >= {"requests_retried", "retries_refused", "sessions"}
        assert all(isinstance(v, int) and v >= 0 for v in stats.values())
    with pytest.raises(ferry.FerryError):
        engine.stats()


def test_response_body_substitutions(origins):
    o = origins("o")
    with ferry.Engine() as engine:
        l = engine.reverse_http(router=[dict(pool=[o.addr], substitutions={'"ORIGIN"': '"who"'},
                                             substitute_icase=True)])
        engine.start()
        got = get_json(l.port, "/")
        assert got["who"] == "o" and "origin" not in got


def test_struct_layout_reverse_lp64():
    # Checked against include/ferry/{router,pool,engine}.h with gcc on x86_64 Linux.
    ffi = ferry.ffi
    if ffi.sizeof("void *") != 8:
        pytest.skip("layout numbers are for LP64")
    assert ffi.sizeof("ferry_route_opts") == 136
    assert ffi.offsetof("ferry_route_opts", "max_body_bytes") == 88
    assert ffi.offsetof("ferry_route_opts", "public_cookie_domain") == 112
    assert ffi.offsetof("ferry_route_opts", "substitutions") == 120
    assert ffi.sizeof("ferry_health_opts") == 48
    assert ffi.sizeof("ferry_engine_stats") == 16
    assert ffi.offsetof("ferry_listener_opts", "add_via") == 204


def test_engine_from_reverse_config(origins, tmp_path):
    """The configuration file `reversed --config` reads builds the same proxy in Python."""
    a, b = origins("a"), origins("b")
    conf = tmp_path / "rev.conf"
    conf.write_text("pool web\n    backend %s\npool api\n    backend %s\n"
                    "listen 127.0.0.1:0\n    route path /api pool api strip-prefix /api\n"
                    "    route pool web\n" % (a.addr, b.addr))
    engine, ports = ferry.Engine.from_reverse_config(str(conf))
    with engine:
        engine.start()
        assert get_json(ports[0], "/api/users")["path"] == "/users"
        assert get_json(ports[0], "/index.html")["path"] == "/index.html"
    conf.write_text("listen 127.0.0.1:0\n    route pool nowhere\n")
    with pytest.raises(ferry.FerryError) as e:
        ferry.Engine.from_reverse_config(str(conf))
    assert e.value.name == "ECONFIG" and "rev.conf:2:" in e.value.message


def test_reload_from_reverse_config_takes_the_listener_over(origins, tmp_path):
    """A reload in Python: the new engine shares the old one's listening socket, the old
    one drains; a client loop running throughout sees no error."""
    a, b = origins("a"), origins("b")
    conf = tmp_path / "rev.conf"
    conf.write_text("pool p\n    backend %s\nlisten 127.0.0.1:0\n    route pool p\n" % a.addr)
    old, ports = ferry.Engine.from_reverse_config(str(conf))
    old.start()
    errors, done = [], threading.Event()

    def loop():
        for _ in range(5000):  # bounded
            if done.is_set():
                return
            try:
                get_json(ports[0], "/x")
            except Exception as e:  # noqa: BLE001 - every failure counts
                errors.append(repr(e))

    t = threading.Thread(target=loop)
    t.start()
    try:
        wait_for(lambda: served(a) > 5, what="traffic on the old engine")
        conf.write_text(conf.read_text().replace(a.addr, b.addr))
        new, new_ports = ferry.Engine.from_reverse_config(str(conf), previous=old)
        with new:
            assert new_ports == ports  # the same socket, not a new bind
            new.start()
            old.stop(2000)
            old.wait()
            old.close()
            before = served(b)
            wait_for(lambda: served(b) > before + 5, what="traffic on the new engine")
            done.set()
            t.join(30)
    finally:
        done.set()
        t.join(30)
        old.close()
    assert errors == []
    with pytest.raises(TypeError):
        ferry.Engine().take_listeners("not an engine")


def test_a_successor_never_reads_a_closed_predecessor():
    old = ferry.Engine()
    old.reverse_tcp("127.0.0.1:0", ["127.0.0.1:9"])
    new = ferry.Engine()
    new.take_listeners(old)
    old.close()  # before the successor listened: it forgets the predecessor
    l = new.reverse_tcp("127.0.0.1:0", ["127.0.0.1:9"])
    assert l.port != 0
    new.close()


def test_passive_checks_skip_a_backend_answering_5xx(origins):
    a, b = origins("a", "b")
    with ferry.Engine() as engine:
        pool = engine.pool("app", [a.addr, b.addr], down_time_ms=60000,
                           passive=dict(fails=2, http_5xx=True))
        with pytest.raises(ferry.FerryError) as e:
            pool.set_passive_checks(fails=0)
        assert e.value.name == "EINVAL"
        listener = engine.reverse_http("127.0.0.1:0", pool)
        engine.start()
        a.failing = True
        statuses = [get(listener.port, "/x")[0] for _ in range(8)]
        assert statuses.count(500) == 2  # round-robin: a's two answers, then it is skipped
        assert statuses[-4:] == [200] * 4
        assert pool.backends[0].down
