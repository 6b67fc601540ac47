"""reversed --mode http end to end: curl and raw sockets through the proxy to real origin
servers (http_backends.py) that record what reached them.

Every test starts its own reversed (one worker unless said otherwise, so upstream pooling
is observable) in front of fresh backends; every wait is bounded."""
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from daemons import REVERSED, Daemon, free_port
from http_backends import Blackhole, HttpBackend, blob, sha256

MiB = 1 << 20
CURL = shutil.which("curl")


# ---- fixtures and helpers ----

@pytest.fixture
def backend():
    b = HttpBackend()
    yield b
    b.close()
    assert b.bad == [], f"the proxy sent malformed HTTP upstream: {b.bad}"


class Proxy:
    def __init__(self, port, daemon):
        self.port = port
        self.daemon = daemon

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def proxy(backend):
    """Factory: proxy(*extra_flags, backends=[ports], workers=1) -> a running reversed."""
    started = []

    def start(*extra, backends=None, workers=1):
        port = free_port()
        args = [REVERSED, "--listen", f"127.0.0.1:{port}", "--mode", "http",
                "--workers", str(workers), "--drain", "200"]
        for b in (backends if backends is not None else [backend.port]):
            args += ["--backend", f"127.0.0.1:{b}"]
        d = Daemon(args + [str(x) for x in extra], port)
        started.append(d)
        return Proxy(port, d)

    yield start
    for d in started:
        with d:
            crashed = d.proc.poll()
            if crashed is None:
                rc, _, err = d.stop(signal.SIGTERM, timeout=10)
                assert rc == 0, f"reversed exited with {rc} on SIGTERM: {err}"
            else:
                err = d.proc.stderr.read()
                pytest.fail(f"reversed died during the test (status {crashed}): {err}")


class Response:
    def __init__(self, version, status, reason, headers, body, raw, interim):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.raw = raw          # the bytes of this response as received (head and body)
        self.interim = interim  # 1xx responses before it, as (status, headers)

    def get(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers} body={self.body[:200]!r}>"


class Client:
    """One raw TCP connection to the proxy with a tiny HTTP/1.1 response reader."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    def send(self, data):
        """Send; False if the proxy already closed (it may answer before reading it all)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _until(self, sep):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if not self._fill():
                return None

    def _exactly(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise AssertionError(f"connection closed {n - len(self.buf)} bytes short")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_head(self):
        """(version, status, reason, headers, raw) of the next head, or None at EOF."""
        raw = self._until(b"\r\n\r\n")
        if raw is None:
            assert not self.buf, f"connection closed inside a head: {bytes(self.buf)!r}"
            return None
        lines = raw[:-4].decode("latin-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip(" \t")))
        return version, int(status), reason, headers, raw

    def read_response(self, method="GET"):
        """The next final response (1xx other than 101 collected in .interim), or None if
        the connection closed before any byte of it."""
        interim = []
        raw_all = b""
        while True:
            h = self.read_head()
            if h is None:
                assert not interim, "closed after an interim response"
                return None
            version, status, reason, headers, raw = h
            raw_all += raw
            if 100 <= status < 200 and status != 101:
                interim.append((status, headers))
                continue
            break
        lower = {n.lower(): v for n, v in headers}
        if method == "HEAD" or status in (101, 204, 304):
            body = b""
        elif "chunked" in lower.get("transfer-encoding", "").lower():
            body, raw_body = self._chunked()
            raw_all += raw_body
        elif "content-length" in lower:
            body = self._exactly(int(lower["content-length"]))
            raw_all += body
        else:
            while self._fill():
                pass
            body = bytes(self.buf)
            self.buf.clear()
            raw_all += body
        return Response(version, status, reason, headers, body, raw_all, interim)

    def _chunked(self):
        body = bytearray()
        raw = bytearray()
        while True:
            line = self._until(b"\r\n")
            assert line is not None, "connection closed inside a chunked body"
            raw += line
            size = int(line[:-2].split(b";")[0], 16)
            if size == 0:
                while True:
                    t = self._until(b"\r\n")
                    assert t is not None, "connection closed inside the trailer section"
                    raw += t
                    if t == b"\r\n":
                        return bytes(body), bytes(raw)
            data = self._exactly(size + 2)
            raw += data
            assert data[-2:] == b"\r\n"
            body += data[:-2]

    def read_to_eof(self):
        """Everything until the proxy closes (a socket timeout fails the test)."""
        while self._fill():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def closed_within(self, seconds):
        """True if the proxy closes (FIN or RST) within `seconds` without sending anything;
        raises if bytes arrive; False on timeout."""
        self.sock.settimeout(seconds)
        try:
            got = self._fill()
        except socket.timeout:
            return False
        assert not got, f"unexpected bytes: {bytes(self.buf)!r}"
        return True

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def request(method="GET", target="/", headers=("Host: test.example",), body=b"",
            version="HTTP/1.1"):
    head = f"{method} {target} {version}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    return head.encode("latin-1") + body


def exchange(port, data, method="GET", timeout=5.0):
    """One request on a fresh connection; (response or None, client)."""
    c = Client(port, timeout)
    c.send(data)
    return c.read_response(method), c


def curl(url, *args, timeout=60):
    """Run curl; returns (status, response headers text, body bytes, seconds)."""
    if CURL is None:
        pytest.fail("curl is not installed (apt-get install curl; tools/setup-deps should do it)")
    with tempfile.TemporaryDirectory() as d:
        out, hdr = os.path.join(d, "body"), os.path.join(d, "headers")
        cmd = [CURL, "-sS", "--noproxy", "*", "-o", out, "-D", hdr, "-w", "%{http_code}",
               "--max-time", str(timeout - 5)] + list(args) + [url]
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, timeout=timeout)
        elapsed = time.monotonic() - t0
        assert p.returncode == 0, f"curl failed ({p.returncode}): {p.stderr.decode()}"
        body = b""
        if os.path.exists(out):
            with open(out, "rb") as f:
                body = f.read()
        with open(hdr, "rb") as f:
            headers = f.read().decode("latin-1")
        return int(p.stdout), headers, body, elapsed


def header_lines(text):
    """Header (name, value) pairs of the last response head in curl's -D output."""
    blocks = [b for b in text.split("\r\n\r\n") if b.strip()]
    lines = blocks[-1].split("\r\n")[1:]
    return [(n.strip().lower(), v.strip()) for n, _, v in (l.partition(":") for l in lines)]


def assert_no_backend_address(raw, ports):
    for p in ports:
        assert f"127.0.0.1:{p}".encode() not in raw, raw
        assert str(p).encode() not in raw, f"backend port {p} leaked: {raw!r}"


# ---- 1. curl through reversed: methods, request and response framings ----

def test_get_and_head_through_curl(backend, proxy):
    p = proxy()
    status, headers, body, _ = curl(p.url("/hello?x=1"))
    assert status == 200
    info = json.loads(body)
    assert info["method"] == "GET" and info["target"] == "/hello?x=1"
    status, headers, body, _ = curl(p.url("/len/1234"), "-I")
    assert status == 200
    h = dict(header_lines(headers))
    assert h["content-length"] == "1234"  # (curl -I writes the head as the body)
    assert [r.method for r in backend.requests] == ["GET", "HEAD"]


@pytest.mark.parametrize("path", ["/len/1234", "/chunked/1234", "/"])
def test_head_response_has_no_body_and_keeps_its_headers(backend, proxy, path):
    """HEAD then GET pipelined: any body after the HEAD answer would corrupt the GET's."""
    p = proxy()
    with Client(p.port) as c:
        c.send(request("HEAD", path) + request("GET", "/after-head"))
        head = c.read_response("HEAD")
        assert head.status == 200
        if path == "/len/1234":
            assert head.get("Content-Length") == "1234"
        if path == "/chunked/1234":
            assert head.get("Content-Length") is None
        if path == "/":
            # what a GET of / would carry (the JSON describes that request)
            assert int(head.get("Content-Length")) > 0
        nxt = c.read_response()
        assert nxt.status == 200 and nxt.json()["target"] == "/after-head"


@pytest.mark.parametrize("size", [0, 1, 10 * MiB])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_post_body_reaches_backend_byte_exact(backend, proxy, tmp_path, size, framing):
    p = proxy()
    data = blob(size)
    f = tmp_path / "body"
    f.write_bytes(data)
    args = ["--data-binary", f"@{f}", "-H", "Content-Type: application/octet-stream"]
    if framing == "chunked":
        args += ["-H", "Transfer-Encoding: chunked"]
    status, _, body, _ = curl(p.url("/upload"), *args)
    assert status == 200
    info = json.loads(body)
    assert info["method"] == "POST"
    assert info["length"] == size
    assert info["sha256"] == sha256(data)
    assert info["chunked"] == (framing == "chunked")
    (req,) = backend.requests
    if framing == "length":
        assert req.get("Content-Length") == str(size)
    else:
        assert req.get("Transfer-Encoding").lower() == "chunked"
        assert req.get("Content-Length") is None


@pytest.mark.parametrize("size", [0, 1, 10 * MiB])
@pytest.mark.parametrize("kind", ["len", "chunked", "close"])
def test_response_body_byte_exact(backend, proxy, size, kind):
    p = proxy()
    status, headers, body, _ = curl(p.url(f"/{kind}/{size}"))
    assert status == 200
    assert len(body) == size
    assert sha256(body) == sha256(blob(size))
    assert dict(header_lines(headers))["x-body-sha256"] == sha256(body)


def test_close_delimited_response_keeps_the_client_connection(backend, proxy):
    """An HTTP/1.0-style answer ends its upstream connection, not the client's."""
    p = proxy()
    with Client(p.port) as c:
        c.send(request("GET", "/close/5000"))
        r = c.read_response()
        assert r.status == 200 and r.body == blob(5000)
        c.send(request("GET", "/next"))
        r = c.read_response()
        assert r.status == 200 and r.json()["target"] == "/next"
    assert backend.connections == 2


# ---- 2. keep-alive and upstream pooling ----

def test_keepalive_requests_on_one_client_connection_share_one_upstream(backend, proxy):
    p = proxy()
    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
    try:
        for i in range(5):
            conn.request("GET", f"/ka/{i}")
            r = conn.getresponse()
            assert r.status == 200
            assert json.loads(r.read())["target"] == f"/ka/{i}"
        conn.request("POST", "/ka/post", body=b"x" * 10000)
        r = conn.getresponse()
        assert json.loads(r.read())["sha256"] == sha256(b"x" * 10000)
        conn.request("GET", "/chunked/70000")
        r = conn.getresponse()
        assert r.read() == blob(70000)
        conn.request("HEAD", "/len/99")
        r = conn.getresponse()
        assert r.getheader("Content-Length") == "99" and r.read() == b""
        conn.request("GET", "/len/3")
        assert conn.getresponse().read() == blob(3)
    finally:
        conn.close()
    assert len(backend.requests) == 9
    assert backend.connections == 1


def test_separate_client_connections_reuse_the_pooled_upstream(backend, proxy):
    p = proxy()
    for i in range(5):
        conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
        try:
            conn.request("GET", f"/sep/{i}")
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read())["conn"] == 0
        finally:
            conn.close()
    assert len(backend.requests) == 5
    assert backend.connections == 1


# ---- 3. pipelining ----

def test_three_pipelined_requests_answered_in_order(backend, proxy):
    p = proxy()
    with Client(p.port) as c:
        c.send(b"".join(request("GET", f"/pipe/{i}") for i in range(3)))
        for i in range(3):
            r = c.read_response()
            assert r.status == 200
            assert r.json()["target"] == f"/pipe/{i}"
    assert [r.target for r in backend.requests] == [f"/pipe/{i}" for i in range(3)]
    assert backend.connections == 1


def test_pipelined_mixed_framings_in_order(backend, proxy):
    p = proxy()
    chunked_body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    reqs = [
        ("GET", request("GET", "/len/100000")),
        ("POST", request("POST", "/post-cl", ("Host: a", "Content-Length: 7"), b"abcdefg")),
        ("HEAD", request("HEAD", "/len/5")),
        ("POST", request("POST", "/post-chunked", ("Host: a", "Transfer-Encoding: chunked"),
                         chunked_body)),
        ("GET", request("GET", "/chunked/33333")),
        ("GET", request("GET", "/last")),
    ]
    with Client(p.port, timeout=10) as c:
        c.send(b"".join(r for _, r in reqs))
        rs = [c.read_response(m) for m, _ in reqs]
    assert rs[0].body == blob(100000)
    assert rs[1].json()["sha256"] == sha256(b"abcdefg")
    assert rs[2].get("Content-Length") == "5" and rs[2].body == b""
    assert rs[3].json()["sha256"] == sha256(b"hello world")
    assert rs[4].body == blob(33333)
    assert rs[5].json()["target"] == "/last"


# ---- 4. upgrade (WebSocket-style) ----

def test_upgrade_101_then_raw_bytes_both_ways(backend, proxy):
    p = proxy()
    with Client(p.port) as c:
        c.send(request("GET", "/ws", ("Host: a", "Upgrade: websocket", "Connection: Upgrade",
                                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                      "Sec-WebSocket-Version: 13")))
        h = c.read_head()
        assert h is not None
        version, status, _, headers, _ = h
        assert status == 101
        lower = {n.lower(): v.lower() for n, v in headers}
        assert lower.get("upgrade") == "websocket"
        assert "upgrade" in lower.get("connection", "")
        for payload in (b"hello\x00\xff\r\n\r\n", os.urandom(200000)):
            c.send(payload)
            assert c._exactly(len(payload)) == payload
    (req,) = backend.requests
    assert req.get("Upgrade").lower() == "websocket"
    assert req.has_token("Connection", "upgrade")


# ---- 5. Expect: 100-continue ----

def test_expect_100_continue_with_curl_is_fast(backend, proxy, tmp_path):
    p = proxy()
    data = blob(2 * 1000 * 1000)
    f = tmp_path / "body"
    f.write_bytes(data)
    status, headers, body, elapsed = curl(
        p.url("/expect"), "--data-binary", f"@{f}", "-H", "Expect: 100-continue",
        "--expect100-timeout", "3")
    assert status == 200
    assert json.loads(body)["sha256"] == sha256(data)
    assert "100 Continue" in headers
    assert elapsed < 1.0, f"took {elapsed:.2f}s: the 100 Continue did not come through"


def test_expect_100_continue_arrives_before_the_body_is_sent(backend, proxy):
    p = proxy()
    with Client(p.port, timeout=2) as c:
        c.send(request("POST", "/expect", ("Host: a", "Content-Length: 11",
                                           "Expect: 100-continue")))
        h = c.read_head()  # before any body byte: a socket timeout here fails the test
        assert h is not None and h[1] == 100
        c.send(b"hello world")
        r = c.read_response()
        assert r.status == 200 and r.json()["sha256"] == sha256(b"hello world")


# ---- 6. forwarding headers and hop-by-hop headers ----

def test_forwarded_headers_added_and_client_values_replaced(backend, proxy):
    p = proxy()
    r, c = exchange(p.port, request("GET", "/xff", (
        "Host: shop.example:8080",
        "X-Forwarded-For: 6.6.6.6",
        "X-Forwarded-For: 7.7.7.7",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: evil.example",
    )))
    c.close()
    assert r.status == 200
    (req,) = backend.requests
    assert req.all("X-Forwarded-For") == ["127.0.0.1"]
    assert req.all("X-Forwarded-Proto") == ["http"]
    assert req.all("X-Forwarded-Host") == ["shop.example:8080"]
    assert req.all("Host") == ["shop.example:8080"]
    raw = backend.all_bytes()
    for leaked in (b"6.6.6.6", b"7.7.7.7", b"evil.example", b"https"):
        assert leaked not in raw


def test_hop_by_hop_request_headers_not_forwarded(backend, proxy):
    p = proxy()
    r, c = exchange(p.port, request("GET", "/hop", (
        "Host: a",
        "Connection: Foo, keep-alive",
        "Foo: secret-foo",
        "Keep-Alive: timeout=5, max=100",
        "TE: trailers",
        "Proxy-Authorization: Basic c2VjcmV0OnBhc3M=",
        "Proxy-Connection: keep-alive",
        "X-End-To-End: kept",
        "Authorization: Bearer kept-token",
    )))
    c.close()
    assert r.status == 200
    (req,) = backend.requests
    for name in ("Foo", "Keep-Alive", "TE", "Proxy-Authorization", "Proxy-Connection"):
        assert req.get(name) is None, f"{name} was forwarded: {req.headers}"
    assert not req.has_token("Connection", "foo")
    assert req.get("X-End-To-End") == "kept"
    assert req.get("Authorization") == "Bearer kept-token"
    raw = backend.all_bytes()
    assert b"secret-foo" not in raw and b"c2VjcmV0OnBhc3M=" not in raw


@pytest.mark.parametrize("connection, named, kept", [
    ("close", "Close", "X-Other"),                 # a field named like the option
    ("keep-alive, X-A", "X-A", "X-Other"),
    ("CLOSE ,, x-a", "X-A", "Keep"),              # case, empty elements
])
def test_fields_named_by_connection_are_not_forwarded(backend, proxy, connection, named, kept):
    p = proxy()
    r, c = exchange(p.port, request("GET", "/hop", (
        "Host: a", f"Connection: {connection}", f"{named}: secret-named", f"{kept}: kept")))
    c.close()
    assert r.status == 200
    (req,) = backend.requests
    assert req.get(named) is None, f"{named} was forwarded: {req.headers}"
    assert req.get(kept) == "kept"
    assert b"secret-named" not in backend.all_bytes()


# ---- 7. strict parsing: refused with the right status, nothing sent upstream ----

def hdrs(*lines):
    return tuple(lines)


BIG = "a" * 70000
STRICT = [
    # framing
    ("cl_and_te", request("POST", "/", hdrs("Host: a", "Content-Length: 5",
                                            "Transfer-Encoding: chunked"), b"0\r\n\r\n"), 400),
    ("te_and_cl", request("POST", "/", hdrs("Host: a", "Transfer-Encoding: chunked",
                                            "Content-Length: 5"), b"0\r\n\r\n"), 400),
    ("cl_and_te_smuggle", request("POST", "/", hdrs("Host: a", "Content-Length: 35",
                                                    "Transfer-Encoding: chunked"),
                                  b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"), 400),
    ("duplicate_cl", request("POST", "/", hdrs("Host: a", "Content-Length: 5",
                                               "Content-Length: 5"), b"hello"), 400),
    ("differing_cl", request("POST", "/", hdrs("Host: a", "Content-Length: 5",
                                               "Content-Length: 6"), b"hello!"), 400),
    ("cl_list", request("POST", "/", hdrs("Host: a", "Content-Length: 5, 5"), b"hello"), 400),
    ("cl_plus", request("POST", "/", hdrs("Host: a", "Content-Length: +5"), b"hello"), 400),
    ("cl_minus", request("POST", "/", hdrs("Host: a", "Content-Length: -5"), b"hello"), 400),
    ("cl_empty", request("POST", "/", hdrs("Host: a", "Content-Length: "), b"hello"), 400),
    ("cl_non_digit", request("POST", "/", hdrs("Host: a", "Content-Length: 5a"), b"hello"), 400),
    ("cl_hex", request("POST", "/", hdrs("Host: a", "Content-Length: 0x5"), b"hello"), 400),
    ("cl_inner_space", request("POST", "/", hdrs("Host: a", "Content-Length: 1 0"), b"hello"), 400),
    ("cl_overflow", request("POST", "/", hdrs("Host: a", "Content-Length: 99999999999999999999999"),
                            b"x"), 400),
    ("te_chunked_gzip", request("POST", "/", hdrs("Host: a", "Transfer-Encoding: chunked, gzip"),
                                b"0\r\n\r\n"), 501),
    ("te_gzip", request("POST", "/", hdrs("Host: a", "Transfer-Encoding: gzip"), b"x"), 501),
    ("te_unknown", request("POST", "/", hdrs("Host: a", "Transfer-Encoding: foo"), b"x"), 501),
    ("te_chunked_chunked", request("POST", "/", hdrs("Host: a",
                                                     "Transfer-Encoding: chunked, chunked"),
                                   b"0\r\n\r\n"), 400),
    ("te_two_fields", request("POST", "/", hdrs("Host: a", "Transfer-Encoding: chunked",
                                                "Transfer-Encoding: chunked"), b"0\r\n\r\n"), 400),
    ("te_empty", request("POST", "/", hdrs("Host: a", "Transfer-Encoding: "), b"0\r\n\r\n"), 400),
    # bytes that do not belong in a head
    ("bare_cr_in_value", request(headers=hdrs("Host: a", "X-A: a\rb")), 400),
    ("bare_lf_everywhere", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare_lf_after_request_line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    ("bare_lf_one_header", b"GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400),
    ("nul_in_value", request(headers=hdrs("Host: a", "X-A: a\x00b")), 400),
    ("ctl_in_value", request(headers=hdrs("Host: a", "X-A: a\x01b")), 400),
    ("del_in_value", request(headers=hdrs("Host: a", "X-A: a\x7fb")), 400),
    ("injection_bare_cr", request(headers=hdrs("Host: a", "X-A: a\rX-Injected: 1")), 400),
    ("injection_bare_lf", request(headers=hdrs("Host: a", "X-A: a\nX-Injected: 1")), 400),
    ("injection_in_request_line", b"GET /a\r\nX-Injected: 1 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # header syntax
    ("ws_before_colon", request(headers=hdrs("Host: a", "X-A : b")), 400),
    ("tab_before_colon", request(headers=hdrs("Host: a", "X-A\t: b")), 400),
    ("ws_before_colon_host", request(headers=hdrs("Host : a")), 400),
    ("obs_fold", request(headers=hdrs("Host: a", "X-A: a", " b")), 400),
    ("obs_fold_tab", request(headers=hdrs("Host: a", "X-A: a", "\tb")), 400),
    ("leading_ws_first_header", request(headers=hdrs(" Host: a")), 400),
    ("bad_header_name", request(headers=hdrs("Host: a", "X(A): b")), 400),
    ("empty_header_name", request(headers=hdrs("Host: a", ": b")), 400),
    ("header_without_colon", request(headers=hdrs("Host: a", "X-A b")), 400),
    ("non_ascii_header_name", request(headers=hdrs("Host: a", "X-\xe9: b")), 400),
    # request line
    ("bad_method_paren", request("GE(T"), 400),
    ("bad_method_ctl", request("G\x01T"), 400),
    ("bad_method_at", request("G@T"), 400),
    ("empty_method", b" / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("target_with_space", request(target="/a b"), 400),
    ("target_with_ctl", request(target="/a\x01b"), 400),
    ("target_with_tab", request(target="/a\tb"), 400),
    ("target_with_del", request(target="/a\x7f"), 400),
    ("target_non_ascii", request(target="/\xc3\xa9"), 400),
    ("target_empty", b"GET  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("asterisk_with_get", request(target="*"), 400),
    ("version_lowercase", request(version="http/1.1"), 400),
    ("version_garbage", request(version="HTTP/1.x"), 400),
    ("version_no_minor", request(version="HTTP/1"), 400),
    ("version_no_dot", request(version="HTTP/11"), 400),
    ("version_trailing_space", request(version="HTTP/1.1 "), 400),
    ("version_missing", b"GET /\r\nHost: a\r\n\r\n", 400),
    ("version_2_0", request(version="HTTP/2.0"), 505),
    ("version_3_0", request(version="HTTP/3.0"), 505),
    # Host
    ("missing_host_11", request(headers=hdrs("X-A: b")), 400),
    ("two_hosts", request(headers=hdrs("Host: a", "Host: a")), 400),
    ("two_different_hosts", request(headers=hdrs("Host: a", "Host: b")), 400),
    ("two_hosts_http10", request(headers=hdrs("Host: a", "Host: b"), version="HTTP/1.0"), 400),
    ("host_with_space", request(headers=hdrs("Host: a b")), 400),
    # limits (defaults: line 8192, head 65536, 100 fields)
    ("request_line_too_long", request(target="/" + "a" * 9000), 414),
    ("head_too_large_one_field", request(headers=hdrs("Host: a", "X-Big: " + BIG)), 431),
    ("head_too_large_many_fields",
     request(headers=("Host: a",) + tuple(f"X-H{i}: " + "b" * 1200 for i in range(60))), 431),
    ("too_many_headers",
     request(headers=("Host: a",) + tuple(f"X-H{i}: v" for i in range(101))), 431),
]


@pytest.mark.parametrize("raw,status", [(r, s) for _, r, s in STRICT],
                         ids=[n for n, _, _ in STRICT])
def test_strict_rule_refused_and_nothing_sent_upstream(backend, proxy, raw, status):
    p = proxy()
    with Client(p.port) as c:
        c.send(raw)
        r = c.read_response()
        assert r is not None, "closed without an answer" + (" (reset)" if c.reset else "")
        assert r.status == status, r
        assert "close" in (r.get("Connection") or "").lower(), r
        assert c.read_to_eof() == b""  # and the connection ends there
    time.sleep(0.05)
    assert backend.connections == 0
    assert backend.all_bytes() == b""


VALID = [
    ("leading_zeros_cl", request("POST", "/", hdrs("Host: a", "Content-Length: 005"), b"hello"),
     b"hello"),
    ("te_case_insensitive", request("POST", "/", hdrs("Host: a", "Transfer-Encoding: Chunked"),
                                    b"5\r\nhello\r\n0\r\n\r\n"), b"hello"),
    ("chunk_extensions_and_trailers",
     request("POST", "/", hdrs("Host: a", "Transfer-Encoding: chunked"),
             b"5;name=value;q=\"x y\"\r\nhello\r\n1 ; a=b\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n"),
     b"hello!"),
    ("uppercase_hex_chunk", request("POST", "/", hdrs("Host: a", "Transfer-Encoding: chunked"),
                                    b"A\r\n0123456789\r\n0\r\n\r\n"), b"0123456789"),
    ("no_space_after_colon", request(headers=hdrs("Host:a", "X-A:b")), b""),
    ("trailing_ows_and_htab", request(headers=hdrs("Host: a \t", "X-A: b\tc  ")), b""),
    ("obs_text_in_value", request(headers=hdrs("Host: a", "X-A: caf\xe9")), b""),
    ("tchar_header_name", request(headers=hdrs("Host: a", "X-!#$%&'*+-.^_`|~: v")), b""),
    ("http10_without_host", request(headers=hdrs("X-A: b"), version="HTTP/1.0"), b""),
    ("leading_crlf", b"\r\n" + request(), b""),
    ("options_asterisk", request("OPTIONS", "*"), b""),
    ("lowercase_method_token", request("get"), b""),
    ("query_and_percent_escapes", request(target="/a%20b?x=1&y=%0d%0a"), b""),
    ("cl_zero_on_get", request(headers=hdrs("Host: a", "Content-Length: 0")), b""),
]


@pytest.mark.parametrize("raw,body", [(r, b) for _, r, b in VALID], ids=[n for n, _, _ in VALID])
def test_valid_edge_cases_pass(backend, proxy, raw, body):
    """The counterpart of the strict rules: these must be forwarded."""
    p = proxy()
    with Client(p.port) as c:
        c.send(raw)
        r = c.read_response()
        assert r is not None and r.status == 200, r
    (req,) = backend.requests
    assert req.body == body


BAD_CHUNKS = [
    ("size_zz", b"zz\r\nhello\r\n0\r\n\r\n"),
    ("size_negative", b"-1\r\nhello\r\n0\r\n\r\n"),
    ("size_plus", b"+5\r\nhello\r\n0\r\n\r\n"),
    ("size_0x", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("size_empty", b"\r\nhello\r\n0\r\n\r\n"),
    ("size_17_digits", b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("size_overflow", b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ("data_not_followed_by_crlf", b"5\r\nhelloXX0\r\n\r\n"),
    ("bare_lf_lines", b"5\nhello\n0\n\n"),
    ("ctl_in_extension", b"5;a\x01\r\nhello\r\n0\r\n\r\n"),
    ("bad_trailer", b"5\r\nhello\r\n0\r\nX A: b\r\n\r\n"),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_CHUNKS], ids=[n for n, _ in BAD_CHUNKS])
def test_bad_chunked_request_body_never_completes_upstream(backend, proxy, body):
    p = proxy()
    with Client(p.port) as c:
        c.send(request("POST", "/chunks", ("Host: a", "Transfer-Encoding: chunked"), body))
        r = c.read_response()
        if r is not None:
            assert r.status == 400, r
        assert c.read_to_eof() == b""
    time.sleep(0.05)
    assert backend.requests == [], "the backend received a complete request"
    assert body not in backend.all_bytes()  # never relayed as received


def test_max_body_413_nothing_upstream(backend, proxy):
    p = proxy("--max-body", 1)
    r, c = exchange(p.port, request("POST", "/big", ("Host: a", f"Content-Length: {MiB + 1}")))
    c.close()
    assert r is not None and r.status == 413, r
    time.sleep(0.05)
    assert backend.connections == 0


def test_max_body_chunked_over_the_limit_not_completed(backend, proxy):
    p = proxy("--max-body", 1)
    with Client(p.port, timeout=10) as c:
        c.send(request("POST", "/big", ("Host: a", "Transfer-Encoding: chunked")))
        chunk = b"%x\r\n" % 65536 + b"z" * 65536 + b"\r\n"
        for _ in range(17):  # 1 MiB + 64 KiB
            if not c.send(chunk):
                break
        c.send(b"0\r\n\r\n")
        r = c.read_response()
        if r is not None:
            assert r.status == 413, r
    time.sleep(0.05)
    assert backend.requests == []


# ---- 8. timeouts ----

def test_header_timeout_slowloris_gets_408_and_close(backend, proxy):
    p = proxy("--header-timeout", 300)
    with Client(p.port) as c:
        t0 = time.monotonic()
        c.send(b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Slow:")
        r = c.read_response()
        elapsed = time.monotonic() - t0
        assert r is not None and r.status == 408, r
        assert c.read_to_eof() == b""
    assert 0.25 <= elapsed < 2.0, elapsed
    assert backend.connections == 0


def test_header_timeout_is_not_reset_by_trickled_bytes(backend, proxy):
    """Sending one byte now and then must not keep a head alive past the limit."""
    p = proxy("--header-timeout", 400)
    with Client(p.port) as c:
        t0 = time.monotonic()
        data = b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"a" * 1000
        for i in range(len(data)):
            if time.monotonic() - t0 > 3 or not c.send(data[i:i + 1]):
                break
            readable, _, _ = select.select([c.sock], [], [], 0.05)
            if readable:
                break
        r = c.read_response()
        elapsed = time.monotonic() - t0
        assert r is not None and r.status == 408, r
    assert elapsed < 1.5, elapsed


def test_keepalive_timeout_closes_idle_client_connection(backend, proxy):
    p = proxy("--keepalive-timeout", 300)
    with Client(p.port) as c:
        c.send(request("GET", "/once"))
        r = c.read_response()
        assert r.status == 200
        t0 = time.monotonic()
        assert c.closed_within(3), "idle client connection not closed"
        elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < 2.0, elapsed


def test_keepalive_connection_still_usable_before_the_timeout(backend, proxy):
    p = proxy("--keepalive-timeout", 1500)
    with Client(p.port) as c:
        for i in range(3):
            c.send(request("GET", f"/again/{i}"))
            assert c.read_response().json()["target"] == f"/again/{i}"
            time.sleep(0.3)


def test_connect_refused_gives_502(proxy):
    dead = free_port()
    p = proxy(backends=[dead])
    t0 = time.monotonic()
    r, c = exchange(p.port, request("GET", "/refused"))
    c.close()
    assert r is not None and r.status == 502, r
    assert time.monotonic() - t0 < 1.0
    assert_no_backend_address(r.raw, [dead])


def test_connect_timeout_gives_504(proxy):
    hole = Blackhole()
    try:
        p = proxy("--connect-timeout", 300, backends=[hole.port])
        t0 = time.monotonic()
        r, c = exchange(p.port, request("GET", "/blackholed"))
        elapsed = time.monotonic() - t0
        c.close()
        assert r is not None and r.status == 504, r
        assert 0.25 <= elapsed < 2.0, elapsed
        assert_no_backend_address(r.raw, [hole.port])
    finally:
        hole.close()


def test_response_timeout_gives_504_and_releases_the_backend(backend, proxy):
    p = proxy("--response-timeout", 300)
    t0 = time.monotonic()
    r, c = exchange(p.port, request("GET", "/hang"))
    elapsed = time.monotonic() - t0
    c.close()
    assert r is not None and r.status == 504, r
    assert 0.25 <= elapsed < 2.0, elapsed
    assert_no_backend_address(r.raw, [backend.port])
    assert backend.wait(lambda: 0 in backend.closed_by_peer, 2), "upstream connection kept open"


def test_response_body_inactivity_closes_client(backend, proxy):
    p = proxy("--body-timeout", 300)
    with Client(p.port) as c:
        c.send(request("GET", "/stall"))
        h = c.read_head()
        assert h is not None and h[1] == 200
        assert dict((n.lower(), v) for n, v in h[3])["content-length"] == "100"
        t0 = time.monotonic()
        rest = c.read_to_eof()
        elapsed = time.monotonic() - t0
    assert rest == b"0123456789", rest  # the 10 bytes, then the close; never 100 bytes
    assert 0.2 <= elapsed < 2.0, elapsed
    assert backend.wait(lambda: 0 in backend.closed_by_peer, 2), "upstream connection kept open"


def test_request_body_inactivity_closes_client(backend, proxy):
    """A client that stops sending its body is cut off after the body timeout (well before
    the response timeout); the backend never gets a complete request."""
    p = proxy("--body-timeout", 300, "--response-timeout", 2000)
    with Client(p.port, timeout=4) as c:
        c.send(request("POST", "/upload", ("Host: a", "Content-Length: 100")) + b"0123456789")
        t0 = time.monotonic()
        r = c.read_response()
        elapsed = time.monotonic() - t0
        assert elapsed < 1.5, (elapsed, r)
        if r is not None:
            assert r.status == 408, r
        assert c.read_to_eof() == b""
    assert backend.requests == []


# ---- 9/10. errors made by the proxy; all backends down ----

def test_bad_backend_status_line_gives_502_without_address(proxy):
    """A backend answering garbage: 502, and the answer names no backend."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(5)
    bad_port = srv.getsockname()[1]
    try:
        p = proxy(backends=[bad_port])
        c = Client(p.port)
        c.send(request("GET", "/garbage"))
        conn, _ = srv.accept()
        conn.settimeout(5)
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 abc Broken\r\n\r\n")
        r = c.read_response()
        c.close()
        conn.close()
        assert r is not None and r.status == 502, r
        assert_no_backend_address(r.raw, [bad_port])
    finally:
        srv.close()


@pytest.mark.parametrize("kind", ["refused", "blackholed"])
def test_all_backends_down_gives_503_fast(proxy, kind):
    """Once every backend is known down, requests get 503 at once: no connect attempt
    (and no connect timeout) is spent on them."""
    holes = []
    if kind == "refused":
        ports = [free_port(), free_port()]
    else:
        holes = [Blackhole(), Blackhole()]
        ports = [h.port for h in holes]
    try:
        p = proxy("--connect-timeout", 300, backends=ports)
        # The first request discovers that both are down (each refuses or times out).
        r, c = exchange(p.port, request("GET", "/first"))
        c.close()
        assert r is not None and r.status in (502, 503, 504), r
        assert_no_backend_address(r.raw, ports)
        for i in range(3):
            t0 = time.monotonic()
            r, c = exchange(p.port, request("GET", f"/down/{i}"))
            elapsed = time.monotonic() - t0
            c.close()
            assert r is not None and r.status == 503, r
            assert elapsed < 0.2, elapsed
            assert_no_backend_address(r.raw, ports)
    finally:
        for h in holes:
            h.close()
