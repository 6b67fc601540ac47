"""forwardd end to end: real clients (curl, urllib, hand-written SOCKS) through the forward
proxy to origin servers (http_backends.py) that record what reached them.

Every test starts its own forwardd(s) on free ports, with the error and access logs in
files under tmp_path; every wait is bounded and every process started here is stopped by
its PID. Tests that need a name resolving to a chosen address run forwardd in a private
mount namespace with its own /etc/hosts (unshare --mount, root only); the real
/etc/hosts is never touched."""
import datetime
import re
import json
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from daemons import FORWARDD, REVERSED, Daemon, free_port
from forward_helpers import (Conn, ForwarddFactory, Microsocks, UdpEcho, basic,
                             check_hosts_override, connect_tunnel, curl, http_over,
                             http_request, parse_udp_header, proxy_get, read_socks5_reply,
                             recv_dgram, sha256, socks4_open, socks5_address, socks5_open,
                             udp_header)
from http_backends import HttpBackend, blob

MiB = 1 << 20
LOOP = ["--allow-dest", "127.0.0.0/8"]
PASSWORD = "pa55-Wd_z9Qx"          # distinctive: searched for in logs and upstream bytes
USERS = f"alice:{PASSWORD}\nbob:bob secret:with:colons\n"

SOCKS5_OK, SOCKS5_NOT_ALLOWED, SOCKS5_CMD_UNSUPPORTED, SOCKS5_ATYP_UNSUPPORTED = 0, 2, 7, 8
SOCKS4_GRANTED, SOCKS4_REJECTED = 0x5A, 0x5B


# ---- fixtures ----

@pytest.fixture
def origin():
    b = HttpBackend()
    yield b
    b.close()
    assert b.bad == [], f"the proxy sent malformed HTTP upstream: {b.bad}"


@pytest.fixture
def origin2():
    b = HttpBackend()
    yield b
    b.close()
    assert b.bad == [], f"the proxy sent malformed HTTP upstream: {b.bad}"


@pytest.fixture
def fwd(tmp_path):
    """Factory: fwd(*flags, listen=(...), hosts={...}, config=text) -> a running forwardd.
    Every daemon is stopped at the end; a crash or a bad exit status fails the test."""
    f = ForwarddFactory(tmp_path)
    yield f
    problems = f.stop_all()
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def users(tmp_path):
    p = tmp_path / "users"
    p.write_text(USERS)
    return p


@pytest.fixture
def hosts_ok(tmp_path):
    check_hosts_override(tmp_path)


def json_of(resp):
    assert resp is not None, "the proxy closed without answering"
    assert resp.status == 200, resp
    return json.loads(resp.body)


def header_names(desc):
    return [n.lower() for n, _ in desc["headers"]]


def status_of(fwd_, url, **kw):
    r = proxy_get(fwd_.port, url, **kw)
    return None if r is None else r.status


# ==== 1. real clients ====

MODES = ["absolute", "connect", "socks4a", "socks4", "socks5h", "socks5"]


def curl_args(mode, proxy, creds=None):
    """curl flags for a proxy mode; creds (user, password) the way each is usually given."""
    user = f"{creds[0]}:{creds[1]}" if creds else None
    if mode == "absolute":
        return ["-x", f"http://{proxy}"] + (["-U", user] if user else [])
    if mode == "connect":
        return ["-p", "-x", f"http://{proxy}"] + (["--proxy-user", user] if user else [])
    if mode == "socks4a":
        return ["--socks4a", proxy] + (["-U", user] if user else [])
    if mode == "socks4":
        return ["--socks4", proxy] + (["-U", user] if user else [])
    if mode == "socks5h":   # credentials in the proxy URL
        return ["-x", f"socks5h://{user}@{proxy}" if user else f"socks5h://{proxy}"]
    if mode == "socks5":    # the --socks5 flag, credentials with --proxy-user
        return ["--socks5", proxy] + (["--proxy-user", user] if user else [])
    raise AssertionError(mode)


def target_host(mode):
    """socks4/socks5 make curl resolve the name itself: give it the address; the other
    modes send the name to the proxy, which resolves it."""
    return "127.0.0.1" if mode in ("socks4", "socks5") else "localhost"


def fwd_for_origin(fwd, origin, *extra, **kw):
    return fwd(*LOOP, "--allow-dest", "::1", "--connect-ports", origin.port, *extra, **kw)


@pytest.mark.parametrize("mode", MODES)
def test_curl_download_and_upload_byte_exact(fwd, origin, tmp_path, mode):
    f = fwd_for_origin(fwd, origin)
    host = f"{target_host(mode)}:{origin.port}"
    size = 3 * MiB + 17
    r = curl(f"http://{host}/len/{size}", *curl_args(mode, f.proxy))
    assert r.rc == 0, r
    assert r.status == 200, r
    assert len(r.body) == size and sha256(r.body) == sha256(blob(size))
    up = tmp_path / "up.bin"
    data = blob(2 * MiB + 5)
    up.write_bytes(data)
    r = curl(f"http://{host}/upload", *curl_args(mode, f.proxy), "--data-binary", f"@{up}",
             "-H", "Content-Type: application/octet-stream")
    assert r.rc == 0 and r.status == 200, r
    desc = json.loads(r.body)
    assert desc["method"] == "POST" and desc["length"] == len(data)
    assert desc["sha256"] == sha256(data)
    # The proxy really was used: the access log has both, with the destination.
    log = f.access(wait_for=f"127.0.0.1:{origin.port}")
    assert log.count(f":{origin.port}") >= 2, log


@pytest.mark.parametrize("mode", MODES)
def test_curl_with_credentials(fwd, origin, users, mode):
    f = fwd_for_origin(fwd, origin, "--auth-file", users)
    host = f"{target_host(mode)}:{origin.port}"
    size = 1 * MiB + 3
    url = f"http://{host}/len/{size}"
    good = curl(url, *curl_args(mode, f.proxy, ("alice", PASSWORD)))
    if mode in ("socks4", "socks4a"):
        # SOCKS4 has no password: refused whenever credentials are required.
        assert good.rc != 0 and good.status is None, good
        assert origin.connections == 0
        return
    assert good.rc == 0 and good.status == 200, good
    assert sha256(good.body) == sha256(blob(size))
    # Without credentials, and with a wrong password: refused, nothing reaches the origin.
    before = origin.connections
    none = curl(url, *curl_args(mode, f.proxy))
    wrong = curl(url, *curl_args(mode, f.proxy, ("alice", "not-the-password")))
    for r in (none, wrong):
        if mode in ("absolute", "connect"):
            assert 407 in r.statuses, r
            assert 200 not in r.statuses, r
        else:
            assert r.rc != 0 and r.status is None, r
    assert origin.connections == before
    # The credentials stay with the proxy.
    assert PASSWORD.encode() not in origin.all_bytes()
    assert b"proxy-authorization" not in origin.all_bytes().lower()
    assert PASSWORD not in f.access() and PASSWORD not in f.errors()


def urllib_opener(proxy_port, creds=None):
    handlers = [urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy_port}"})]
    if creds:
        mgr = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        mgr.add_password(None, f"127.0.0.1:{proxy_port}", *creds)
        handlers.append(urllib.request.ProxyBasicAuthHandler(mgr))
    return urllib.request.build_opener(*handlers)


@pytest.fixture
def no_proxy_env(monkeypatch):
    # urllib would bypass the proxy for names listed in no_proxy.
    for k in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(k, raising=False)


def test_urllib_proxy_handler_byte_exact(fwd, origin, no_proxy_env):
    f = fwd_for_origin(fwd, origin)
    opener = urllib_opener(f.port)
    size = 4 * MiB + 1
    with opener.open(f"http://localhost:{origin.port}/len/{size}", timeout=30) as r:
        assert r.status == 200
        body = r.read()
    assert sha256(body) == sha256(blob(size))
    data = blob(1 * MiB + 7)
    req = urllib.request.Request(f"http://localhost:{origin.port}/post", data=data,
                                 method="POST")
    with opener.open(req, timeout=30) as r:
        desc = json.loads(r.read())
    assert desc["length"] == len(data) and desc["sha256"] == sha256(data)
    # Absolute-form reached the proxy; the origin saw origin-form.
    assert desc["target"] == "/post"
    assert f"target=http://localhost:{origin.port}/post" in f.access(wait_for="/post")


def test_urllib_proxy_basic_auth(fwd, origin, users, no_proxy_env):
    f = fwd_for_origin(fwd, origin, "--auth-file", users)
    size = 2 * MiB
    url = f"http://localhost:{origin.port}/len/{size}"
    with urllib_opener(f.port, ("alice", PASSWORD)).open(url, timeout=30) as r:
        assert r.status == 200
        assert sha256(r.read()) == sha256(blob(size))
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib_opener(f.port).open(url, timeout=30)
    assert e.value.code == 407
    assert (e.value.headers.get("Proxy-Authenticate") or "").lower().startswith("basic")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib_opener(f.port, ("alice", "wrong")).open(url, timeout=30)
    assert e.value.code == 407
    assert b"proxy-authorization" not in origin.all_bytes().lower()
    assert origin.connections == 1


# ==== 2. bad and refused requests ====

@pytest.mark.parametrize("name, raw, status", [
    ("https absolute-form", b"GET https://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 501),
    ("origin-form to a proxy", b"GET /len/10 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
    ("CONNECT without a port", b"CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
    ("CONNECT to a port outside --connect-ports",
     b"CONNECT 127.0.0.1:{other} HTTP/1.1\r\nHost: 127.0.0.1:{other}\r\n\r\n", 403),
])
def test_bad_http_requests(fwd, origin, name, raw, status):
    other = origin.port + 1 if origin.port < 65535 else origin.port - 1
    f = fwd_for_origin(fwd, origin)
    with Conn(f.port) as c:
        c.send(raw.replace(b"{other}", str(other).encode()))
        r = c.read_response()
    assert r is not None, f"{name}: closed without an answer"
    assert r.status == status, f"{name}: {r}"
    assert origin.connections == 0


def test_connect_to_an_allowed_port_tunnels(fwd, origin):
    """The counterpart of the 403 above: the port in --connect-ports works, raw."""
    f = fwd_for_origin(fwd, origin)
    r, c = connect_tunnel(f.port, f"127.0.0.1:{origin.port}")
    with c:
        assert r.status == 200, r
        inner = http_over(c, "/len/1000", f"127.0.0.1:{origin.port}")
        assert inner.status == 200 and inner.body == blob(1000)


@pytest.mark.parametrize("method", ["GET", "CONNECT"])
def test_407_without_and_with_wrong_credentials(fwd, origin, users, method):
    f = fwd_for_origin(fwd, origin, "--auth-file", users)
    authority = f"127.0.0.1:{origin.port}"
    target = f"http://{authority}/x" if method == "GET" else authority
    for extra in ([], [f"Proxy-Authorization: {basic('alice', 'wrong')}"],
                  [f"Proxy-Authorization: {basic('mallory', PASSWORD)}"],
                  ["Proxy-Authorization: Bearer abc"]):
        with Conn(f.port) as c:
            c.send(http_request(method, target, [f"Host: {authority}"] + extra))
            r = c.read_response(method)
        assert r is not None and r.status == 407, (extra, r)
        assert any(v.lower().startswith("basic") for v in r.all("Proxy-Authenticate")), r
    # And the right ones pass.
    with Conn(f.port) as c:
        c.send(http_request(method, target, [f"Host: {authority}",
                                             f"Proxy-Authorization: {basic('alice', PASSWORD)}"]))
        r = c.read_response(method)
        assert r.status == 200, r
    assert origin.wait(lambda: origin.connections == 1)
    assert PASSWORD not in f.errors()


def test_socks5_wrong_password_gets_rfc1929_failure_then_close(fwd, origin, users):
    f = fwd_for_origin(fwd, origin, "--auth-file", users)
    code, c = socks5_open(f.port, "127.0.0.1", origin.port, user="alice", password="wrong")
    with c:
        assert code[0] == "auth" and code[1] != 0, code
        closed, extra = c.closed_within(3)
        assert closed and extra == b""
    # No acceptable method when only "no auth" is offered.
    code, c = socks5_open(f.port, "127.0.0.1", origin.port)
    with c:
        assert code == ("no-method", b"\x05\xff"), code
        assert c.closed_within(3) == (True, b"")
    # SOCKS4 (no password) is refused when credentials are required.
    code, c = socks4_open(f.port, "127.0.0.1", origin.port, userid=b"alice")
    with c:
        assert code == SOCKS4_REJECTED, code
    # The right password works.
    code, c = socks5_open(f.port, "127.0.0.1", origin.port, user="alice", password=PASSWORD)
    with c:
        assert code == SOCKS5_OK, code
        assert http_over(c, "/len/100", "x").body == blob(100)
    assert origin.connections == 1
    assert "authentication failed for alice" in f.errors(wait_for="authentication failed")
    assert PASSWORD not in f.errors()


def test_socks5_greeting_with_zero_methods_is_closed(fwd, origin):
    f = fwd_for_origin(fwd, origin, header_timeout=5000)
    with Conn(f.port) as c:
        t0 = time.monotonic()
        c.send(b"\x05\x00")
        closed, got = c.closed_within(3)
        assert closed, "a malformed greeting must close the connection"
        assert got in (b"", b"\x05\xff"), got
        assert time.monotonic() - t0 < 2, "closed only by the header timeout"
    assert origin.connections == 0


@pytest.mark.parametrize("partial", [
    b"\x05",                                   # greeting: version only
    b"\x05\x02\x00",                           # greeting: one of two methods
    b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00",   # request: address cut
    b"\x04\x01\x00\x50\x7f\x00\x00\x01ab",     # SOCKS4: user id not terminated
], ids=["greeting1", "greeting2", "request", "socks4"])
def test_truncated_socks_handshake_closed_after_header_timeout(fwd, origin, partial):
    f = fwd_for_origin(fwd, origin, header_timeout=500)
    with Conn(f.port) as c:
        t0 = time.monotonic()
        c.send(partial)
        if partial.startswith(b"\x05\x01\x00"):
            assert c.recv_exactly(2) == b"\x05\x00"
        closed, got = c.closed_within(5)
        elapsed = time.monotonic() - t0
        assert closed, "still open 5 s after a truncated handshake"
        assert got == b"", got
        assert 0.3 <= elapsed < 3, elapsed
    assert origin.connections == 0


def test_oversized_socks4_user_id_rejected(fwd, origin):
    f = fwd_for_origin(fwd, origin)
    with Conn(f.port) as c:
        c.send(b"\x04\x01" + struct.pack(">H", origin.port) + socket.inet_aton("127.0.0.1") +
               b"u" * 300 + b"\x00")
        reply = c.recv_exactly(8)
        assert len(reply) == 8 and reply[1] == SOCKS4_REJECTED, reply
        assert c.closed_within(3)[0]
    # 255 bytes is still fine.
    code, c = socks4_open(f.port, "127.0.0.1", origin.port, userid=b"u" * 255)
    with c:
        assert code == SOCKS4_GRANTED
    assert origin.wait(lambda: origin.connections == 1)
    assert origin.connections == 1


def test_socks5_bogus_address_type_reply_8(fwd, origin):
    f = fwd_for_origin(fwd, origin)
    with Conn(f.port) as c:
        c.send(b"\x05\x01\x00")
        assert c.recv_exactly(2) == b"\x05\x00"
        c.send(b"\x05\x01\x00\x09" + b"\x7f\x00\x00\x01" + struct.pack(">H", origin.port))
        code, _, _ = read_socks5_reply(c)
        assert code == SOCKS5_ATYP_UNSUPPORTED
        assert c.closed_within(3)[0]
    assert origin.connections == 0


def test_bind_is_refused(fwd, origin):
    f = fwd_for_origin(fwd, origin)
    code, c = socks5_open(f.port, "127.0.0.1", origin.port, cmd=2)
    with c:
        assert code == SOCKS5_CMD_UNSUPPORTED
        assert c.closed_within(3)[0]
    with Conn(f.port) as c:
        c.send(b"\x04\x02" + struct.pack(">H", origin.port) + socket.inet_aton("127.0.0.1") + b"\x00")
        reply = c.recv_exactly(8)
        assert len(reply) == 8 and reply[1] == SOCKS4_REJECTED, reply
        assert c.closed_within(3)[0]
    assert origin.connections == 0


def test_socks5_handshake_byte_by_byte(fwd, origin):
    f = fwd_for_origin(fwd, origin)
    hello = b"\x05\x02\x00\x02"
    req = b"\x05\x01\x00" + socks5_address("localhost") + struct.pack(">H", origin.port)
    with Conn(f.port) as c:
        for b in hello:
            c.send(bytes([b]))
            time.sleep(0.01)
        assert c.recv_exactly(2) == b"\x05\x00"
        for b in req:
            c.send(bytes([b]))
            time.sleep(0.01)
        code, _, _ = read_socks5_reply(c)
        assert code == SOCKS5_OK
        r = http_over(c, "/len/5000", f"localhost:{origin.port}")
        assert r.status == 200 and r.body == blob(5000)


def test_socks5_request_and_payload_in_one_segment(fwd, origin):
    """Bytes after the request belong upstream, ahead of the relay."""
    f = fwd_for_origin(fwd, origin)
    with Conn(f.port) as c:
        c.send(b"\x05\x01\x00" + b"\x05\x01\x00" + socks5_address("127.0.0.1") +
               struct.pack(">H", origin.port) +
               http_request("GET", "/len/64", ["Host: x", "Connection: close"]))
        assert c.recv_exactly(2) == b"\x05\x00"
        assert read_socks5_reply(c)[0] == SOCKS5_OK
        r = c.read_response()
        assert r.status == 200 and r.body == blob(64)


# ==== 3. credentials never upstream ====

def test_credentials_never_reach_the_origin_nor_the_logs(fwd, origin, users):
    f = fwd_for_origin(fwd, origin, "--auth-file", users, "--anonymity", "transparent")
    auth = basic("alice", PASSWORD)
    r = proxy_get(f.port, f"http://127.0.0.1:{origin.port}/h",
                  headers=[f"Proxy-Authorization: {auth}", "Proxy-Connection: keep-alive",
                           "Authorization: Basic b3JpZ2luOmNyZWQ="])
    desc = json_of(r)
    names = header_names(desc)
    assert "proxy-authorization" not in names
    assert "proxy-connection" not in names
    assert dict((n.lower(), v) for n, v in desc["headers"])["authorization"] == \
        "Basic b3JpZ2luOmNyZWQ=", "the origin's own Authorization must pass"
    # CONNECT: the tunnel carries only what the client sends inside it.
    r, c = connect_tunnel(f.port, f"127.0.0.1:{origin.port}", [f"Proxy-Authorization: {auth}"])
    with c:
        assert r.status == 200
        assert http_over(c, "/t", "x").status == 200
    # SOCKS5 user/password.
    code, c = socks5_open(f.port, "127.0.0.1", origin.port, user="alice", password=PASSWORD)
    with c:
        assert code == SOCKS5_OK
        assert http_over(c, "/s", "x").status == 200
    upstream = origin.all_bytes()
    assert len(origin.requests) == 3
    assert PASSWORD.encode() not in upstream
    assert auth.split()[1].encode() not in upstream
    assert b"proxy-authorization" not in upstream.lower()
    # Tunnels are logged when they close, a moment after the client saw its answer.
    log = f.access(wait_for=lambda text: text.count(f"127.0.0.1:{origin.port}") >= 3)
    assert log.count(f"127.0.0.1:{origin.port}") >= 3, log
    assert PASSWORD not in log and auth.split()[1] not in log
    assert PASSWORD not in f.errors()


# ==== 4. access rules through a configuration file ====

def test_rule_client_ipv4_vs_ipv6_listener(fwd, origin):
    f = fwd_for_origin(fwd, origin, listen=("127.0.0.1", "::1"),
                       config="deny client ::1\ndeny client 10.0.0.0/8\n")
    url = f"http://127.0.0.1:{origin.port}/c"
    assert status_of(f, url, host="::1") == 403
    assert "rule 1 (deny client ::1)" in f.errors(wait_for="rule 1")
    assert status_of(f, url) == 200          # 127.0.0.1 matches neither rule
    assert "rule 2" not in f.errors()
    assert len(origin.requests) == 1


def test_allow_client_refuses_others(fwd, origin):
    f = fwd_for_origin(fwd, origin, "--allow-client", "::1", listen=("127.0.0.1", "::1"))
    with Conn(f.port) as c:
        c.send(http_request("GET", f"http://127.0.0.1:{origin.port}/a", ["Host: x"]))
        closed, got = c.closed_within(3)
        assert closed and got.startswith(b"HTTP/1.1 403 "), got
    assert "client 127.0.0.1" in f.errors(wait_for="refused")
    assert status_of(f, f"http://127.0.0.1:{origin.port}/b", host="::1") == 200
    assert [r.target for r in origin.requests] == ["/b"]


def test_rule_user(fwd, origin, users):
    f = fwd_for_origin(fwd, origin, "--auth-file", users,
                       config="deny user bob\nallow user alice\ndeny\n")
    url = f"http://127.0.0.1:{origin.port}/u"
    assert status_of(f, url, headers=[f"Proxy-Authorization: {basic('bob', 'bob secret:with:colons')}"]) == 403
    assert "rule 1 (deny user bob)" in f.errors(wait_for="rule 1")
    assert status_of(f, url, headers=[f"Proxy-Authorization: {basic('alice', PASSWORD)}"]) == 200
    code, c = socks5_open(f.port, "127.0.0.1", origin.port, user="bob",
                          password="bob secret:with:colons")
    c.close()
    assert code == SOCKS5_NOT_ALLOWED
    assert len(origin.requests) == 1


HOST_NAMES = ["exact.test", "sub.exact.test", "example.test", "www.example.test",
              "a.b.example.test", "notexample.test", "cdn1.example.net", "cdn12.example.net",
              "x.glob.test"]


def test_rule_host_exact_suffix_glob(fwd, origin, hosts_ok):
    f = fwd_for_origin(fwd, origin, "--deny-host", "*.glob.test",
                       hosts={n: "127.0.0.1" for n in HOST_NAMES},
                       config="deny host exact.test\n"
                              "deny host .example.test   # the domain and below\n"
                              "deny host cdn?.example.net\n")
    expect = {
        "exact.test": "rule 1 (deny host exact.test)",
        "EXACT.Test": "rule 1 (deny host exact.test)",
        "sub.exact.test": None,
        "example.test": "rule 2 (deny host .example.test)",
        "www.example.test": "rule 2 (deny host .example.test)",
        "a.b.example.test": "rule 2 (deny host .example.test)",
        "notexample.test": None,
        "cdn1.example.net": "rule 3 (deny host cdn?.example.net)",
        "cdn12.example.net": None,
        "x.glob.test": "rule 4 (deny host *.glob.test)",
    }
    for name, rule in expect.items():
        st = status_of(f, f"http://{name}:{origin.port}/h")
        if rule:
            assert st == 403, (name, st)
            assert rule in f.errors(wait_for=rule), (name, rule)
        else:
            assert st == 200, (name, st)
        code, c = socks5_open(f.port, name, origin.port)
        c.close()
        assert code == (SOCKS5_NOT_ALLOWED if rule else SOCKS5_OK), (name, code)
        r, c = connect_tunnel(f.port, f"{name}:{origin.port}")
        c.close()
        assert r.status == (403 if rule else 200), (name, r)
    assert sum(1 for r in origin.requests if r.target == "/h") == 3


def test_rule_dest_cidr_literal_and_resolved(fwd, origin, hosts_ok):
    f = fwd_for_origin(fwd, origin, hosts={"two.test": "127.0.0.2", "one.test": "127.0.0.1"},
                       config="deny dest 127.0.0.2/32\n")
    assert status_of(f, f"http://127.0.0.2:{origin.port}/d") == 403
    assert "rule 1 (deny dest 127.0.0.2/32)" in f.errors(wait_for="rule 1")
    assert status_of(f, f"http://two.test:{origin.port}/d") == 403       # decided after DNS
    assert "two.test" in f.errors(wait_for="two.test")
    code, c = socks5_open(f.port, "two.test", origin.port)
    c.close()
    assert code == SOCKS5_NOT_ALLOWED
    assert status_of(f, f"http://one.test:{origin.port}/d") == 200
    assert status_of(f, f"http://127.0.0.1:{origin.port}/d") == 200
    assert len(origin.requests) == 2


def test_allow_rule_with_dest_lifts_the_default_for_that_port_only(fwd, origin, origin2):
    f = fwd("--connect-ports", f"{origin.port},{origin2.port}",
            config=f"allow dest 127.0.0.1 port {origin.port}\n")
    assert status_of(f, f"http://127.0.0.1:{origin.port}/ok") == 200
    assert status_of(f, f"http://127.0.0.1:{origin2.port}/no") == 403
    code, c = socks5_open(f.port, "127.0.0.1", origin2.port)
    c.close()
    assert code == SOCKS5_NOT_ALLOWED
    code, c = socks5_open(f.port, "127.0.0.1", origin.port)
    with c:
        assert code == SOCKS5_OK
    assert origin2.connections == 0 and len(origin.requests) == 1


def _origin_outside(port, span=5):
    """An origin whose port is more than `span` away from `port`."""
    for _ in range(20):
        b = HttpBackend()
        if abs(b.port - port) > span:
            return b
        b.close()
    raise AssertionError("no suitable port")


def test_rule_port_range(fwd, origin):
    other = _origin_outside(origin.port)
    try:
        lo, hi = max(1, origin.port - 5), min(65535, origin.port + 5)
        f = fwd(*LOOP, "--connect-ports", f"{origin.port},{other.port}",
                config=f"deny port 1-10,{lo}-{hi}\n")
        rule = f"rule 1 (deny port 1-10,{lo}-{hi})"
        assert status_of(f, f"http://127.0.0.1:{origin.port}/p") == 403
        assert rule in f.errors(wait_for="rule 1")
        code, c = socks5_open(f.port, "127.0.0.1", origin.port)
        c.close()
        assert code == SOCKS5_NOT_ALLOWED
        r, c = connect_tunnel(f.port, f"127.0.0.1:{origin.port}")
        c.close()
        assert r.status == 403
        assert status_of(f, f"http://127.0.0.1:{other.port}/p") == 200
        assert origin.connections == 0 and len(other.requests) == 1
    finally:
        other.close()


def test_rule_method(fwd, origin):
    f = fwd_for_origin(fwd, origin, config="deny method POST,PUT\ndeny method CONNECT\n")
    url = f"http://127.0.0.1:{origin.port}/m"
    assert status_of(f, url, method="POST", body=b"x") == 403
    assert "rule 1 (deny method POST,PUT)" in f.errors(wait_for="rule 1")
    assert status_of(f, url, method="PUT", body=b"x") == 403
    r, c = connect_tunnel(f.port, f"127.0.0.1:{origin.port}")
    c.close()
    assert r.status == 403
    assert "rule 2 (deny method CONNECT)" in f.errors(wait_for="rule 2")
    assert status_of(f, url) == 200
    assert status_of(f, url, method="DELETE") == 200
    code, c = socks5_open(f.port, "127.0.0.1", origin.port)   # SOCKS has no method
    c.close()
    assert code == SOCKS5_OK
    assert [r.method for r in origin.requests] == ["GET", "DELETE"]


@pytest.mark.parametrize("proto", ["http", "connect", "socks"])
def test_rule_proto(fwd, origin, proto):
    f = fwd_for_origin(fwd, origin, config=f"deny proto {proto}\n")
    authority = f"127.0.0.1:{origin.port}"
    got = {"http": status_of(f, f"http://{authority}/p")}
    r, c = connect_tunnel(f.port, authority)
    c.close()
    got["connect"] = r.status
    code5, c = socks5_open(f.port, "127.0.0.1", origin.port)
    c.close()
    code4, c = socks4_open(f.port, "127.0.0.1", origin.port)
    c.close()
    got["socks5"], got["socks4"] = code5, code4
    want = {"http": 200, "connect": 200, "socks5": SOCKS5_OK, "socks4": SOCKS4_GRANTED}
    if proto == "socks":
        want["socks5"], want["socks4"] = SOCKS5_NOT_ALLOWED, SOCKS4_REJECTED
    else:
        want[proto] = 403
    assert got == want
    assert f"rule 1 (deny proto {proto})" in f.errors(wait_for="rule 1")


DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _hhmm(t):
    return t.strftime("%H:%M")


@pytest.mark.parametrize("utc", [False, True], ids=["local", "utc"])
def test_rule_time_windows(fwd, origin, origin2, utc):
    """Windows are read from the daemon's own clock: one wide window around now (it may
    wrap midnight), one that cannot contain now; and day lists of [yesterday, today,
    tomorrow] versus a day three days away, valid whatever the minute."""
    now = datetime.datetime.now(datetime.timezone.utc) if utc else datetime.datetime.now()
    h = datetime.timedelta(hours=1)
    inside = f"{_hhmm(now - 3 * h)}-{_hhmm(now + 3 * h)}"
    outside = f"{_hhmm(now + 5 * h)}-{_hhmm(now + 9 * h)}"
    wd = now.weekday()
    near = ",".join(DAYS[(wd + d) % 7] for d in (-1, 0, 1))
    far = DAYS[(wd + 3) % 7]
    z = " utc" if utc else ""
    config = (f"deny port {origin.port} method GET time * {outside}{z}\n"
              f"deny port {origin2.port} method GET time * {inside}{z}\n"
              f"deny port {origin.port} method POST time {far} 00:00-24:00{z}\n"
              f"deny port {origin2.port} method POST time {near} 00:00-24:00{z}\n")
    f = fwd(*LOOP, config=config)
    assert status_of(f, f"http://127.0.0.1:{origin.port}/t") == 200
    assert status_of(f, f"http://127.0.0.1:{origin2.port}/t") == 403
    assert f"rule 2 (deny port {origin2.port} method GET time * {inside}{z})" in \
        f.errors(wait_for="rule 2")
    assert status_of(f, f"http://127.0.0.1:{origin.port}/t", method="POST", body=b"1") == 200
    assert status_of(f, f"http://127.0.0.1:{origin2.port}/t", method="POST", body=b"1") == 403
    assert "rule 4 (" in f.errors(wait_for="rule 4")
    assert len(origin.requests) == 2 and len(origin2.requests) == 0


def test_ssrf_defaults_refuse_loopback_and_metadata(fwd, origin, hosts_ok):
    """No --allow-dest: loopback and link-local destinations are refused, as literals and
    as names resolving to them (via a private /etc/hosts)."""
    f = fwd("--connect-timeout", "1000",
            hosts={"metadata.test": "169.254.169.254", "lo.test": "127.0.0.1"})
    p = origin.port
    for url in (f"http://127.0.0.1:{p}/", "http://169.254.169.254/latest/meta-data/",
                f"http://localhost:{p}/", "http://metadata.test/latest/meta-data/",
                f"http://lo.test:{p}/", f"http://[::1]:{p}/", f"http://127.1.2.3:{p}/",
                "http://0.0.0.0/"):
        assert status_of(f, url) == 403, url
    for host, port in (("127.0.0.1", p), ("169.254.169.254", 80), ("localhost", p),
                       ("metadata.test", 80), ("::1", p)):
        code, c = socks5_open(f.port, host, port)
        c.close()
        assert code == SOCKS5_NOT_ALLOWED, (host, code)
    for host, port in (("127.0.0.1", p), ("169.254.169.254", 80), ("metadata.test", 80)):
        code, c = socks4_open(f.port, host, port)
        c.close()
        assert code == SOCKS4_REJECTED, (host, code)
    r, c = connect_tunnel(f.port, "169.254.169.254:443")
    c.close()
    assert r.status == 403
    assert origin.connections == 0
    errors = f.errors(wait_for="metadata.test")
    assert "169.254.169.254" in errors and "metadata.test" in errors


# ==== 5. anonymity ====

CLIENT_HEADERS = ["Via: 1.0 client-side", "X-Forwarded-For: 10.9.8.7",
                  "Forwarded: for=10.9.8.7", "X-Real-IP: 10.9.8.7",
                  "From: me@example.test", "X-Custom: 42", "Cookie: a=b",
                  "User-Agent: test-agent/1", "Accept: text/plain"]


def test_anonymity_default_strips_forwarding_headers(fwd, origin):
    f = fwd_for_origin(fwd, origin)
    desc = json_of(proxy_get(f.port, f"http://127.0.0.1:{origin.port}/a", CLIENT_HEADERS))
    names = header_names(desc)
    for gone in ("via", "x-forwarded-for", "forwarded", "x-real-ip"):
        assert gone not in names, (gone, desc["headers"])
    for kept in ("from", "x-custom", "cookie", "user-agent", "accept"):
        assert kept in names, (kept, desc["headers"])
    assert b"10.9.8.7" not in origin.all_bytes()


def test_anonymity_transparent_adds_via_and_xff(fwd, origin):
    f = fwd_for_origin(fwd, origin, "--anonymity", "transparent")
    desc = json_of(proxy_get(f.port, f"http://127.0.0.1:{origin.port}/a", ["Accept: */*"]))
    h = {n.lower(): v for n, v in desc["headers"]}
    assert "via" in h and "ferry" in h["via"], desc["headers"]
    assert h.get("x-forwarded-for") == "127.0.0.1", desc["headers"]
    desc = json_of(proxy_get(f.port, f"http://127.0.0.1:{origin.port}/b",
                             ["X-Forwarded-For: 10.9.8.7"]))
    xff = ", ".join(v for n, v in desc["headers"] if n.lower() == "x-forwarded-for")
    assert [x.strip() for x in xff.split(",")] == ["10.9.8.7", "127.0.0.1"], desc["headers"]


def test_anonymity_strict(fwd, origin):
    f = fwd_for_origin(fwd, origin, "--anonymity", "strict")
    authority = f"127.0.0.1:{origin.port}"
    desc = json_of(proxy_get(f.port, f"http://{authority}/a",
                             CLIENT_HEADERS + ["Referer: http://elsewhere.test/page",
                                               "Accept-Language: en", "Range: bytes=0-"]))
    names = header_names(desc)
    for gone in ("via", "x-forwarded-for", "forwarded", "x-real-ip", "from", "x-custom",
                 "cookie", "user-agent", "referer"):
        assert gone not in names, (gone, desc["headers"])
    for kept in ("accept", "accept-language", "range", "host"):
        assert kept in names, (kept, desc["headers"])
    assert b"10.9.8.7" not in origin.all_bytes() and b"test-agent" not in origin.all_bytes()
    # Referer is in the default allow-list: one naming the same origin stays.
    desc = json_of(proxy_get(f.port, f"http://{authority}/b",
                             [f"Referer: http://{authority}/a", "Cookie: c=d"]))
    h = {n.lower(): v for n, v in desc["headers"]}
    assert h.get("referer") == f"http://{authority}/a" and "cookie" not in h, desc["headers"]


def test_anonymity_strict_with_header_allow(fwd, origin):
    """header-allow lets Referer, From and X-Custom be kept, yet From and a cross-origin
    Referer are still removed; a same-origin Referer stays."""
    f = fwd_for_origin(fwd, origin, config="anonymity strict\n"
                                           "header-allow Accept,Referer,From,X-Custom\n")
    authority = f"127.0.0.1:{origin.port}"
    desc = json_of(proxy_get(f.port, f"http://{authority}/a",
                             CLIENT_HEADERS + ["Referer: http://elsewhere.test/page"]))
    h = {n.lower(): v for n, v in desc["headers"]}
    assert "from" not in h and "referer" not in h, desc["headers"]
    assert h.get("x-custom") == "42" and h.get("accept") == "text/plain", desc["headers"]
    for gone in ("cookie", "user-agent", "via", "x-forwarded-for"):
        assert gone not in h, (gone, desc["headers"])
    desc = json_of(proxy_get(f.port, f"http://{authority}/b",
                             [f"Referer: http://{authority}/a"]))
    h = {n.lower(): v for n, v in desc["headers"]}
    assert h.get("referer") == f"http://{authority}/a", desc["headers"]


# ==== 6. UDP ASSOCIATE ====

def udp_associate(port, timeout=5.0):
    """(Conn, relay (host, port)) after a SOCKS5 UDP ASSOCIATE."""
    c = Conn(port, timeout=timeout)
    c.send(b"\x05\x01\x00")
    assert c.recv_exactly(2) == b"\x05\x00"
    c.send(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
    code, host, bport = read_socks5_reply(c)
    assert code == SOCKS5_OK, (code, host)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return c, (host, bport)


def test_udp_associate_echo(fwd):
    echo, echo2 = UdpEcho(), UdpEcho()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        f = fwd(*LOOP)
        c, relay = udp_associate(f.port)
        u.bind(("127.0.0.1", 0))
        payloads = [b"hello", b"", bytes(range(256)) * 4, blob(1400)]
        for i, p in enumerate(payloads):
            e = echo if i % 2 == 0 else echo2
            u.sendto(udp_header("127.0.0.1", e.port) + p, relay)
            d = recv_dgram(u, 3)
            assert d is not None, f"no echo for datagram {i}"
            host, port, data = parse_udp_header(d)
            assert (host, port) == ("127.0.0.1", e.port)
            assert data == p
        # A name as the destination.
        u.sendto(udp_header("localhost", echo.port) + b"by name", relay)
        d = recv_dgram(u, 3)
        assert d is not None and parse_udp_header(d)[2] == b"by name"
        assert parse_udp_header(d)[1] == echo.port
        # Closing the TCP connection ends the association.
        c.close()
        time.sleep(0.3)
        n = len(echo.received)
        u.sendto(udp_header("127.0.0.1", echo.port) + b"after", relay)
        assert recv_dgram(u, 1.0) is None
        assert len(echo.received) == n
    finally:
        u.close()
        echo.close()
        echo2.close()


def test_udp_datagram_to_refused_destination_is_dropped(fwd):
    echo, echo2 = UdpEcho(), UdpEcho()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # No --allow-dest: loopback is refused, except the one port a dest rule allows.
        f = fwd(config=f"allow dest 127.0.0.1 port {echo2.port}\n")
        c, relay = udp_associate(f.port)
        with c:
            u.bind(("127.0.0.1", 0))
            u.sendto(udp_header("127.0.0.1", echo.port) + b"refused", relay)
            u.sendto(udp_header("169.254.169.254", 53) + b"refused", relay)
            assert recv_dgram(u, 1.0) is None
            assert echo.received == []
            assert "127.0.0.1" in f.errors(wait_for="denied")
            u.sendto(udp_header("127.0.0.1", echo2.port) + b"allowed", relay)
            d = recv_dgram(u, 3)
            assert d is not None and parse_udp_header(d)[2] == b"allowed"
            assert echo.received == []
    finally:
        u.close()
        echo.close()
        echo2.close()


# ==== 7. chaining ====

# The access log names the parent a session went through, after "via" ("via=parent1",
# or "via 127.0.0.1:PORT" with the blank escaped): the parent's name or its address.
VIA = re.compile(r"via(?:=|\\x20| )([^\s;,]+)")


def vias(log):
    return VIA.findall(log)


def names_parent(token, port, index=1):
    return token in (f"parent{index}", f"127.0.0.1:{port}")

def test_chain_http_parent_absolute_form_and_connect(fwd, origin):
    parent = fwd_for_origin(fwd, origin)
    child = fwd_for_origin(fwd, origin, "--parent", f"http://127.0.0.1:{parent.port}")
    size = 2 * MiB + 9
    r = curl(f"http://127.0.0.1:{origin.port}/len/{size}", "-x", f"http://{child.proxy}")
    assert r.rc == 0 and r.status == 200 and sha256(r.body) == sha256(blob(size)), r
    r = curl(f"http://localhost:{origin.port}/len/{size}", "-p", "-x", f"http://{child.proxy}")
    assert r.rc == 0 and r.status == 200 and sha256(r.body) == sha256(blob(size)), r
    plog = parent.access(wait_for="CONNECT")
    assert f"target=http://127.0.0.1:{origin.port}/len/{size}" in plog, plog
    assert f"method=CONNECT target=localhost:{origin.port}" in plog, plog
    clog = child.access(wait_for="CONNECT")
    assert len(vias(clog)) == 2 and all(names_parent(v, parent.port) for v in vias(clog)), clog
    assert len(origin.requests) == 2


def test_chain_parent_with_credentials(fwd, origin, users):
    parent = fwd_for_origin(fwd, origin, "--auth-file", users)
    child = fwd_for_origin(fwd, origin, "--parent",
                           f"http://alice:{PASSWORD}@127.0.0.1:{parent.port}")
    r = curl(f"http://127.0.0.1:{origin.port}/len/1000", "-x", f"http://{child.proxy}")
    assert r.rc == 0 and r.status == 200 and r.body == blob(1000), r
    r = curl(f"http://127.0.0.1:{origin.port}/len/1000", "-p", "-x", f"http://{child.proxy}")
    assert r.rc == 0 and r.status == 200 and r.body == blob(1000), r
    code, c = socks5_open(child.port, "127.0.0.1", origin.port)
    with c:
        assert code == SOCKS5_OK
        assert http_over(c, "/len/10", "x").body == blob(10)
    # The parent (which requires credentials) relayed all three.
    connects = f"method=CONNECT target=127.0.0.1:{origin.port}"
    plog = parent.access(wait_for=lambda t: t.count(connects) == 2)
    assert f"target=http://127.0.0.1:{origin.port}/len/1000" in plog, plog
    assert plog.count(connects) == 2, plog
    assert b"proxy-authorization" not in origin.all_bytes().lower()
    assert PASSWORD.encode() not in origin.all_bytes()
    assert PASSWORD not in child.access() + child.errors() + parent.access() + parent.errors()
    # A parent that refuses the child's credentials: the request does not get through.
    bad = fwd_for_origin(fwd, origin, "--parent", f"http://alice:nope@127.0.0.1:{parent.port}")
    n = len(origin.requests)
    r = curl(f"http://127.0.0.1:{origin.port}/len/10", "-x", f"http://{bad.proxy}")
    assert r.status != 200, r
    assert len(origin.requests) == n


@pytest.mark.parametrize("with_auth", [False, True], ids=["noauth", "auth"])
def test_chain_socks5_parent(fwd, origin, with_auth):
    ms = Microsocks(*(("msuser", "ms-pass-1") if with_auth else ()))
    try:
        cred = "msuser:ms-pass-1@" if with_auth else ""
        child = fwd_for_origin(fwd, origin, "--parent", f"socks5://{cred}127.0.0.1:{ms.port}")
        size = 1 * MiB + 11
        r = curl(f"http://localhost:{origin.port}/len/{size}", "-x", f"http://{child.proxy}")
        assert r.rc == 0 and r.status == 200 and sha256(r.body) == sha256(blob(size)), r
        r = curl(f"http://127.0.0.1:{origin.port}/len/{size}", "-p", "-x", f"http://{child.proxy}")
        assert r.rc == 0 and r.status == 200 and sha256(r.body) == sha256(blob(size)), r
        clog = child.access(wait_for=lambda t: len(vias(t)) == 2)
        assert len(vias(clog)) == 2 and all(names_parent(v, ms.port) for v in vias(clog)), clog
        assert len(origin.requests) == 2
    finally:
        ms.close()


def test_chain_dead_parent_fails_over(fwd, origin):
    parent = fwd_for_origin(fwd, origin)
    dead = free_port()
    child = fwd_for_origin(fwd, origin, "--parent", f"http://127.0.0.1:{dead}",
                           "--parent", f"http://127.0.0.1:{parent.port}")
    for i in range(3):
        r = curl(f"http://127.0.0.1:{origin.port}/len/{100 + i}", "-x", f"http://{child.proxy}")
        assert r.rc == 0 and r.status == 200 and r.body == blob(100 + i), r
    r = curl(f"http://127.0.0.1:{origin.port}/len/7", "-p", "-x", f"http://{child.proxy}")
    assert r.rc == 0 and r.status == 200 and r.body == blob(7), r
    assert len(origin.requests) == 4
    assert parent.access(wait_for="/len/102").count("/len/10") == 3
    clog = child.access(wait_for=lambda t: len(vias(t)) == 4)
    assert len(vias(clog)) == 4 and all(names_parent(v, parent.port, 2) for v in vias(clog)), clog


def test_full_path_through_reversed(fwd, origin):
    rport = free_port()
    with Daemon([REVERSED, "--listen", f"127.0.0.1:{rport}", "--mode", "http",
                 "--backend", f"127.0.0.1:{origin.port}", "--drain", "200"], rport) as rev:
        f = fwd(*LOOP)
        size = 3 * MiB + 1
        r = curl(f"http://127.0.0.1:{rport}/len/{size}", "-x", f"http://{f.proxy}")
        assert r.rc == 0 and r.status == 200 and sha256(r.body) == sha256(blob(size)), r
        r = curl(f"http://localhost:{rport}/json", "-x", f"http://{f.proxy}")
        assert r.rc == 0 and r.status == 200, r
        desc = json.loads(r.body)
        assert desc["target"] == "/json"
        code, c = socks5_open(f.port, "127.0.0.1", rport)
        with c:
            assert code == SOCKS5_OK
            assert http_over(c, "/len/99", "x").body == blob(99)
        assert len(origin.requests) == 3
        rc, _, err = rev.stop()
        assert rc == 0, err


# ==== 8. one port, both protocols ====

def test_http_and_socks_on_one_port(fwd, origin):
    f = fwd_for_origin(fwd, origin)
    assert status_of(f, f"http://127.0.0.1:{origin.port}/h") == 200
    code, c = socks5_open(f.port, "127.0.0.1", origin.port)
    with c:
        assert code == SOCKS5_OK
        assert http_over(c, "/s5", "x").status == 200
    code, c = socks4_open(f.port, "localhost", origin.port)
    with c:
        assert code == SOCKS4_GRANTED
        assert http_over(c, "/s4a", "x").status == 200
    assert [r.target for r in origin.requests] == ["/h", "/s5", "/s4a"]


def test_protocols_socks_refuses_http(fwd, origin):
    f = fwd_for_origin(fwd, origin, "--protocols", "socks")
    with Conn(f.port) as c:
        c.send(http_request("GET", f"http://127.0.0.1:{origin.port}/x", ["Host: x"]))
        closed, got = c.closed_within(3)
        assert closed and got == b"", got    # not SOCKS: closed without a word
    code, c = socks5_open(f.port, "127.0.0.1", origin.port)
    with c:
        assert code == SOCKS5_OK
        assert http_over(c, "/s", "x").status == 200
    assert origin.connections == 1


def test_protocols_http_refuses_socks(fwd, origin):
    """An HTTP-only port takes a SOCKS handshake for the start of a request line: the
    client gets no SOCKS reply, and the request is refused with an HTTP error (at the
    latest when the header timeout ends it), never relayed."""
    f = fwd_for_origin(fwd, origin, "--protocols", "http", header_timeout=1000)
    for hello in (b"\x05\x01\x00",
                  b"\x04\x01" + struct.pack(">H", origin.port) + socket.inet_aton("127.0.0.1") + b"\x00"):
        with Conn(f.port) as c:
            c.send(hello)
            closed, got = c.closed_within(4)
            assert closed, f"{hello!r}: still open after the header timeout"
            assert got.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 408 ")), got
    assert status_of(f, f"http://127.0.0.1:{origin.port}/h") == 200
    assert origin.connections == 1


# ==== 9. --check-config ====

def run_forwardd(*args):
    return subprocess.run([FORWARDD] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=10)


def test_check_config_good_file(tmp_path, users):
    cfg = tmp_path / "good.conf"
    cfg.write_text(f"listen 127.0.0.1:0\nauth-file {users}\nallow user alice\n"
                   "deny host .example.test\nconnect-ports 443,8443\nanonymity strict\n")
    r = run_forwardd("--config", cfg, "--check-config")
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stderr
    assert "WARNING" not in r.stderr


@pytest.mark.parametrize("text, line", [
    ("listen 127.0.0.1:3128\nworkers 2\nlisen 1.2.3.4:5\n", 3),
    ("# comment\n\nallow host a.test\ndeny bogus-condition x\n", 4),
    ("workers 0\n", 1),
    ("anonymity paranoid\n", 1),
])
def test_check_config_bad_file_exits_2_with_file_and_line(tmp_path, text, line):
    cfg = tmp_path / "bad.conf"
    cfg.write_text(text)
    r = run_forwardd("--config", cfg, "--check-config")
    assert r.returncode == 2, r
    assert f"{cfg}:{line}:" in r.stderr, r.stderr


def test_check_config_open_proxy_warning(tmp_path, users):
    r = run_forwardd("--allow-client", "0.0.0.0/0", "--check-config")
    assert r.returncode == 0
    assert "open proxy" in r.stderr
    r = run_forwardd("--allow-client", "0.0.0.0/0", "--auth-file", users, "--check-config")
    assert r.returncode == 0 and "open proxy" not in r.stderr, r.stderr
    r = run_forwardd("--check-config")
    assert r.returncode == 0 and "open proxy" not in r.stderr, r.stderr
