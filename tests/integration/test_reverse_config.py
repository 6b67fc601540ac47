"""reversed --config FILE end to end: listeners, pools and routes from a configuration file
(doc/reverse-config.md) in front of real origin servers; --check-config on good and bad
files; errors named by file and line; the access logs in their configured formats."""
import http.client
import json
import re
import signal
import socket
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest

from daemons import REVERSED, Daemon, EchoServer, free_port, wait_port
from http_backends import HttpBackend


@pytest.fixture
def origins():
    """Two HTTP origin servers, "web" and "api"."""
    servers = {"web": HttpBackend(), "api": HttpBackend()}
    yield servers
    for s in servers.values():
        s.close()
        assert s.bad == [], f"the proxy sent malformed HTTP upstream: {s.bad}"


@pytest.fixture
def echoes():
    servers = [EchoServer(), EchoServer()]
    yield servers
    for s in servers:
        s.close()


def write_config(tmp_path, text, name="reverse.conf"):
    path = tmp_path / name
    path.write_text(text)
    return path


def run_reversed(*args):
    return subprocess.run([REVERSED, *map(str, args)], capture_output=True, text=True, timeout=30)


def get(port, path, host):
    """GET through the proxy with urllib: (status, the origin's JSON description or body)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            is_json = r.headers.get("Content-Type") == "application/json"
            return r.status, json.loads(body) if is_json else body
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def header(description, name):
    return [v for n, v in description["headers"] if n.lower() == name.lower()]


def stop(daemon):
    rc, _, err = daemon.stop(signal.SIGTERM, timeout=15)
    assert rc == 0, f"reversed exited with {rc}: {err}"
    return err


# ---- running from a file ----

def test_two_listeners_routes_by_host_and_path_and_a_tcp_pool(origins, echoes, tmp_path):
    http_port, tcp_port = free_port(), free_port()
    web, api = origins["web"], origins["api"]
    conf = write_config(tmp_path, f"""\
# a site and its API on one HTTP listener, a TCP service on another
workers 2
drain 200ms
error-log {tmp_path}/error.log

pool web
    backend 127.0.0.1:{web.port}
pool api
    backend 127.0.0.1:{api.port} weight=2
    balance leastconn

listen 127.0.0.1:{http_port} mode http
    route host www.example.test pool web
    route host www.example.test path /api strip-prefix /api pool api set-header "X-Routed: by path"
    route host api.example.test pool api
    access-log {tmp_path}/access.log format combined

listen 127.0.0.1:{tcp_port} mode tcp
    pool echo                     # declared below: order does not matter
    access-log {tmp_path}/tcp.log format json

pool echo
    backend 127.0.0.1:{echoes[0].port}
""")
    d = Daemon([REVERSED, "--config", conf], http_port)
    with d:
        wait_port(tcp_port, d.proc)

        status, seen = get(http_port, "/index.html?a=1", "www.example.test")
        assert status == 200 and seen["target"] == "/index.html?a=1"
        assert len(web.requests) == 1 and len(api.requests) == 0

        # by path, with the prefix stripped and a header set
        status, seen = get(http_port, "/api/users?id=7", "www.example.test")
        assert status == 200 and seen["target"] == "/users?id=7"
        assert header(seen, "X-Routed") == ["by path"]
        status, seen = get(http_port, "/api", "www.example.test")
        assert status == 200 and seen["target"] == "/"
        # "/apiary" is not under the /api segment
        status, seen = get(http_port, "/apiary", "www.example.test")
        assert status == 200 and seen["target"] == "/apiary" and not header(seen, "X-Routed")

        # by host
        status, seen = get(http_port, "/api/users", "API.example.test:8080")
        assert status == 200 and seen["target"] == "/api/users"
        assert len(api.requests) == 3 and len(web.requests) == 2

        # no route: answered by the proxy
        status, _ = get(http_port, "/", "other.test")
        assert status == 404

        # the tcp listener relays to its pool
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as s:
            s.sendall(b"ping over tcp")
            s.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.recv(4096):
                got += chunk
        assert got == b"ping over tcp"

        err = stop(d)
    assert f"listening on 127.0.0.1:{http_port} (http, 3 routes, 2 workers)" in err
    assert f"listening on 127.0.0.1:{tcp_port} (tcp, 2 workers)" in err

    # combined format: client - - [time] "request" status bytes "referer" "user-agent"
    # Two workers may write the lines of consecutive requests in either order.
    lines = [l for l in (tmp_path / "access.log").read_text().splitlines() if '"GET ' in l]
    assert len(lines) == 6
    combined = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                          r'"GET (\S+) HTTP/1\.1" (\d{3}) (\d+|-) "-" "Python-urllib/[\d.]+"$')
    parsed = [combined.match(l) for l in lines]
    assert all(parsed), lines
    assert sorted((m.group(1), m.group(2)) for m in parsed) == sorted([
        ("/index.html?a=1", "200"), ("/api/users?id=7", "200"), ("/api", "200"),
        ("/apiary", "200"), ("/api/users", "200"), ("/", "404")])
    records = [json.loads(l) for l in (tmp_path / "tcp.log").read_text().splitlines()]
    relayed = [r for r in records if r.get("bytes_from_client") == len(b"ping over tcp")]
    assert len(relayed) == 1 and relayed[0]["client"] == "127.0.0.1"


def test_a_sticky_pool_keeps_its_clients_across_a_restart(origins, tmp_path):
    port = free_port()
    backends = [origins["web"], origins["api"]]
    conf = write_config(tmp_path, f"""\
pool app
    backend 127.0.0.1:{backends[0].port}
    backend 127.0.0.1:{backends[1].port}
    sticky-cookie SRV secret "not in the file of a real site"
listen 127.0.0.1:{port}
    route pool app
""")

    def fetch(cookie=None):
        """(index of the backend that answered, its Set-Cookie, what reached it)"""
        before = [len(b.requests) for b in backends]
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            c.request("GET", "/", headers={"Cookie": cookie} if cookie else {})
            r = c.getresponse()
            seen = json.loads(r.read())
            set_cookie, cache = r.getheader("Set-Cookie"), r.getheader("Cache-Control")
        finally:
            c.close()
        served = [i for i, b in enumerate(backends) if len(b.requests) > before[i]]
        assert len(served) == 1 and r.status == 200
        assert (set_cookie is None) == (cache is None)
        return served[0], set_cookie, seen

    with Daemon([REVERSED, "--config", conf], port) as d:
        home, set_cookie, _ = fetch()
        m = re.fullmatch(r"SRV=([0-9a-f]{16}); Path=/; HttpOnly", set_cookie or "")
        assert m, set_cookie
        cookie = "SRV=" + m.group(1)
        for _ in range(4):
            served, set_cookie, seen = fetch("a=1; " + cookie)
            assert (served, set_cookie) == (home, None)
            assert header(seen, "Cookie") == ["a=1"]      # the backend never sees SRV
        assert sorted(fetch()[0] for _ in range(2)) == [0, 1]  # others: round-robin
        served, set_cookie, _ = fetch("SRV=0123456789abcdef")  # unknown: balanced, set again
        assert set_cookie and set_cookie.startswith("SRV=")
        stop(d)
    # a fresh engine from the same file gives the backend the same value
    with Daemon([REVERSED, "--config", conf], port) as d:
        for _ in range(4):
            assert fetch(cookie)[:2] == (home, None)
        stop(d)


def client_hello(server_name):
    """The first flight of a TLS client naming server_name, as bytes on the wire."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_an_sni_listener_routes_by_server_name(echoes, tmp_path):
    port = free_port()
    conf = write_config(tmp_path, f"""\
pool a
    backend 127.0.0.1:{echoes[0].port}
pool rest
    backend 127.0.0.1:{echoes[1].port}
listen 127.0.0.1:{port} mode sni
    route host a.example.test pool a
    route pool rest
""")
    with Daemon([REVERSED, "--config", conf], port) as d:
        for name, server in (("a.example.test", echoes[0]), ("b.example.test", echoes[1])):
            before = server.connections
            hello = client_hello(name)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(hello)
                got = b""
                while len(got) < len(hello):  # the echo sends our own hello back
                    chunk = s.recv(65536)
                    assert chunk
                    got += chunk
            assert got == hello
            assert server.connections == before + 1
        stop(d)


# ---- --check-config ----

def test_check_config_accepts_a_good_file_without_binding_or_creating_logs(origins, tmp_path):
    with socket.socket() as busy:  # the file's port is taken: checking does not bind it
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        conf = write_config(tmp_path, f"""\
pool web
    backend 127.0.0.1:{origins['web'].port}
    health-check http /healthz interval=2s
listen 127.0.0.1:{port}
    route regex \\.css$ pool web
    access-log {tmp_path}/access.log
""")
        r = run_reversed("--config", conf, "--check-config")
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"reversed: {conf}: configuration OK\n"
    assert not (tmp_path / "access.log").exists()
    assert origins["web"].connections == 0  # no health check ran


GOOD_POOL = "pool p\n    backend 127.0.0.1:9\n"


@pytest.mark.parametrize("text, line, message, run_status", [
    (GOOD_POOL + "listen 127.0.0.1:8080\n    route pool q\n", 4, "route: no pool named 'q'", 2),
    (GOOD_POOL + "lisen 127.0.0.1:8080\n", 3, "unknown directive 'lisen'", 2),
    (GOOD_POOL + "listen 127.0.0.1:8080 {\n", 3,
     "blocks are written by indentation, not braces", 2),
    ("pool p\nbackend 127.0.0.1:9\n", 2, "'backend' belongs in a pool block", 2),
    (GOOD_POOL + "listen 127.0.0.1:8080 mode tcp\n    pool p\n    max-body 1M\n", 5,
     "'max-body' applies to http listeners only (this one is mode tcp)", 2),
    (GOOD_POOL + "listen 127.0.0.1:8080\n    route regex ([ pool p\n", 4,
     "route: bad regular expression '(['", 2),
    (GOOD_POOL + "    sticky-cookie a/b\nlisten 127.0.0.1:8080\n    route pool p\n", 3,
     "sticky-cookie: 'a/b' is not a valid cookie name", 2),
    ("pool p\n    backend no-such-host.invalid:80\nlisten 127.0.0.1:8080\n    route pool p\n", 2,
     "backend: cannot resolve 'no-such-host.invalid:80'", 2),
    (GOOD_POOL + "listen 127.0.0.1:8080\n    route pool p\n    access-log /nonexistent/a.log\n", 5,
     "access-log: cannot write '/nonexistent/a.log': No such file or directory", 1),
])
def test_check_config_refuses_a_bad_file_with_file_and_line(tmp_path, text, line, message,
                                                           run_status):
    conf = write_config(tmp_path, text)
    r = run_reversed("--config", conf, "--check-config")
    assert r.returncode == 2
    assert r.stderr.startswith(f"reversed: {conf}:{line}: {message}"), r.stderr
    # Started without --check-config, the same line is named; a log that cannot be opened
    # is a runtime failure (status 1) like a port in use, the rest the file's fault (2).
    r = run_reversed("--config", conf)
    assert r.returncode == run_status
    assert f"reversed: {conf}:{line}: " in r.stderr


def test_a_missing_file_is_named(tmp_path):
    r = run_reversed("--config", tmp_path / "nope.conf", "--check-config")
    assert r.returncode == 2
    assert f"{tmp_path}/nope.conf: cannot open: No such file or directory" in r.stderr


# ---- errors while starting ----

def test_a_port_in_use_is_reported_with_its_line(origins, tmp_path):
    free = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        conf = write_config(tmp_path, f"""\
pool web
    backend 127.0.0.1:{origins['web'].port}
listen 127.0.0.1:{free}
    route pool web
listen 127.0.0.1:{port}
    route pool web
""")
        r = run_reversed("--config", conf)
    assert r.returncode == 1
    assert f"reversed: {conf}:5: listen 127.0.0.1:{port}: address already in use" in r.stderr


@pytest.mark.parametrize("flag", [["--listen", "127.0.0.1:1"], ["--workers", "2"], ["--no-splice"]])
def test_config_and_other_flags_do_not_mix(tmp_path, flag):
    conf = write_config(tmp_path, GOOD_POOL + "listen 127.0.0.1:0\n    route pool p\n")
    r = run_reversed("--config", conf, *flag)
    assert r.returncode == 2
    assert f"{flag[0]} cannot be combined with --config" in r.stderr


def test_check_config_needs_config():
    r = run_reversed("--check-config")
    assert r.returncode == 2
    assert "--check-config needs --config FILE" in r.stderr
