"""Forward proxies built with the Python bindings, on loopback: urllib and curl (plain HTTP,
CONNECT, SOCKS) against a local origin; every hook kind; rules, config files, the
injected clock; resources."""
import calendar
import gc
import json
import os
import re
import threading
import time
import urllib.request

import pytest

import ferry
from conftest import (CONNECTION_ERRORS, TIMEOUT, Origin, curl, header, via_proxy)


@pytest.fixture
def forward(origin):
    """forward(**kw) -> a started forward listener (own engine, 1 worker). Unless a
    policy= is given, 127.0.0.0/8 destinations are allowed and CONNECT may reach the
    origin's port."""
    engines = []

    def make(workers=1, **kw):
        if "policy" not in kw:
            kw.setdefault("allow_dest", "127.0.0.0/8")
            kw.setdefault("connect_ports", str(origin.port))
        kw.setdefault("connect_timeout_ms", 2000)
        e = ferry.Engine(workers=workers)
        engines.append(e)
        listener = e.forward("127.0.0.1:0", **kw)
        e.start()
        return listener

    yield make
    for e in engines:
        e.stop(0)
        e.close()


def wait_for(predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def dead_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_cdef_declares_forward_h():
    """Every function of include/ferry/forward.h is declared in _cdef.py (and resolves)."""
    header_path = os.path.join(os.path.dirname(os.path.abspath(ferry.__file__)), "..", "..",
                               "..", "include", "ferry", "forward.h")
    if not os.path.isfile(header_path):
        pytest.skip("not in a source tree")
    with open(header_path) as f:
        names = re.findall(r"FERRY_API[^;]*?\b(ferry_\w+)\s*\(", f.read())
    assert len(names) > 20
    assert [n for n in names if not hasattr(ferry.lib, n)] == []
    assert ferry.ffi.typeof("ferry_clock_fn") == ferry.ffi.typeof("int64_t(*)(void *)")


# ---- plain proxying ----

def test_urllib_through_forward_proxy(forward, origin):
    l = forward()
    assert l.direction == "forward" and l.protocol == "http,socks" and l.port > 0
    status, headers, body = via_proxy(l.port, origin.url("/hello?x=1"),
                                      headers={"Via": "1.1 client", "X-Forwarded-For": "10.9.9.9"})
    assert status == 200
    got = json.loads(body)
    assert got["path"] == "/hello?x=1"  # origin-form upstream
    assert header(got["headers"], "Host") == origin.addr
    # anonymous (the default): the client's Via / X-Forwarded-For are gone, none added
    assert header(got["headers"], "Via") is None
    assert header(got["headers"], "X-Forwarded-For") is None


def test_curl_http_connect_socks(forward, origin):
    protocols = []

    def on_route(session, target):
        protocols.append(session.proxy_protocol)

    l = forward(on_route=on_route)
    proxy = "127.0.0.1:%d" % l.port
    r = curl(origin.url("/plain"), "-x", "http://" + proxy)
    assert (r.rc, r.status) == (0, 200), r
    assert json.loads(r.body)["path"] == "/plain"
    r = curl(origin.url("/tunnel"), "-p", "-x", "http://" + proxy)
    assert (r.rc, r.status) == (0, 200), r
    assert "200 Connection established" in r.head
    assert json.loads(r.body)["path"] == "/tunnel"
    r = curl(origin.url("/socks5"), "--socks5-hostname", proxy)
    assert (r.rc, r.status) == (0, 200), r
    assert json.loads(r.body)["path"] == "/socks5"
    r = curl(origin.url("/socks4"), "--socks4", proxy)
    assert (r.rc, r.status) == (0, 200), r
    assert protocols == ["http", "connect", "socks5", "socks4"]


def test_protocols_http_only_and_bad_value(forward, origin):
    l = forward(protocols="http")
    assert l.protocol == "http"
    assert curl(origin.url("/"), "-x", "http://127.0.0.1:%d" % l.port).status == 200
    r = curl(origin.url("/"), "--socks5-hostname", "127.0.0.1:%d" % l.port)
    assert r.rc != 0
    with ferry.Engine() as e:
        with pytest.raises(ValueError):
            e.forward("127.0.0.1:0", protocols="gopher")
        with pytest.raises(TypeError):
            e.forward("127.0.0.1:0", no_such_option=1)


# ---- hooks ----

def test_on_accept_reject(forward, origin):
    seen = []

    def on_accept(session):
        seen.append((session.client_addr, session.proxy_protocol, session.dest_host,
                     session.user, session.listener))
        if len(seen) == 1:
            return ferry.reject()

    l = forward(on_accept=on_accept, name="fwd-test")
    with pytest.raises(CONNECTION_ERRORS):
        via_proxy(l.port, origin.url("/refused"))
    assert via_proxy(l.port, origin.url("/accepted"))[0] == 200
    # before the request nothing is known about the destination yet
    assert seen[0] == ("127.0.0.1", "", "", "", "fwd-test")
    assert len(seen) == 2


def test_on_auth_accepts_and_refuses(forward, origin):
    calls = []
    users = []

    def on_auth(session, user, password):
        calls.append((user, session.client_addr))
        return user == "alice" and password == "good"

    def on_request(req):
        users.append(req.session.user)

    l = forward(on_auth=on_auth, on_request=on_request)
    status, headers, _ = via_proxy(l.port, origin.url("/none"))
    assert status == 407 and "Basic" in headers.get("Proxy-Authenticate", "")
    assert via_proxy(l.port, origin.url("/bad"), user="alice", password="bad")[0] == 407
    status, _, body = via_proxy(l.port, origin.url("/good"), user="alice", password="good")
    assert status == 200
    # credentials are ours: never forwarded
    assert header(json.loads(body)["headers"], "Proxy-Authorization") is None
    assert calls == [("alice", "127.0.0.1"), ("alice", "127.0.0.1")]  # none sent: not asked
    assert users == ["alice"]
    # SOCKS5 username/password goes through the same hook
    proxy = "127.0.0.1:%d" % l.port
    r = curl(origin.url("/s"), "-x", "socks5h://alice:good@" + proxy)
    assert (r.rc, r.status) == (0, 200), r


def test_socks5_wrong_password_refused(forward, origin):
    l = forward(on_auth=lambda session, user, password: password == "good")
    r = curl(origin.url("/s"), "-x", "socks5h://alice:wrong@127.0.0.1:%d" % l.port)
    assert r.rc != 0 and r.status is None
    r = curl(origin.url("/s"), "-x", "socks5h://alice:good@127.0.0.1:%d" % l.port)
    assert (r.rc, r.status) == (0, 200), r


def test_exception_in_on_auth_refuses_and_engine_goes_on(forward, origin, capfd):
    calls = []

    def on_auth(session, user, password):
        calls.append(user)
        if len(calls) == 1:
            raise RuntimeError("auth backend down")
        return True

    l = forward(on_auth=on_auth)
    assert via_proxy(l.port, origin.url("/1"), user="u", password="p")[0] == 407
    assert via_proxy(l.port, origin.url("/2"), user="u", password="p")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" in err and "RuntimeError: auth backend down" in err and "on_auth" in err


def test_bad_on_auth_return_refuses(forward, origin, capfd):
    l = forward(on_auth=lambda s, u, p: "yes")
    assert via_proxy(l.port, origin.url("/"), user="u", password="p")[0] == 407
    assert "TypeError" in capfd.readouterr().err


def test_policy_users_and_on_log(forward, origin):
    records = []
    done = threading.Event()

    def on_log(rec):
        records.append(rec)
        done.set()

    l = forward(users={"bob": "pw"}, on_log=on_log)
    assert via_proxy(l.port, origin.url("/logged"), user="bob", password="pw")[0] == 200
    assert done.wait(TIMEOUT)
    rec = records[-1]
    assert rec["user"] == "bob"
    assert (rec["dest_host"], rec["dest_port"]) == ("127.0.0.1", origin.port)
    assert rec["proxy_protocol"] == "http" and rec["status"] == 200
    assert rec["target"] == origin.addr and rec["verdict"] == "relayed"
    assert via_proxy(l.port, origin.url("/x"), user="bob", password="nope")[0] == 407


def test_on_route_chooses_parent(forward, origin):
    parent_log = []
    parent = forward(on_log=lambda rec: parent_log.append(rec))
    child_log = []
    targets = []

    def on_route(session, target):
        targets.append((target.parent, target.attempt, target.host, target.port))
        return "up"

    child = forward(parents={"up": "http://127.0.0.1:%d" % parent.port,
                             "sock": "socks5://127.0.0.1:%d" % parent.port},
                    on_route=on_route, on_log=lambda rec: child_log.append(rec))
    assert child.policy.parent("up") == ferry.Parent("up", "http", "127.0.0.1", parent.port, "")
    assert child.policy.parent("sock").kind == "socks5"
    assert child.policy.parent("nope") is None
    status, _, body = via_proxy(child.port, origin.url("/via-parent"))
    assert status == 200 and json.loads(body)["path"] == "/via-parent"
    assert targets == [(None, 0, "127.0.0.1", origin.port)]
    assert wait_for(lambda: parent_log and child_log)
    assert parent_log[0]["request_target"] == origin.url("/via-parent")  # absolute-form
    assert parent_log[0]["proxy_protocol"] == "http"
    assert child_log[0]["target"] == "%s;via=up" % origin.addr
    # a tunnel through the parent: CONNECT there too
    r = curl(origin.url("/tunnel"), "-p", "-x", "http://127.0.0.1:%d" % child.port)
    assert (r.rc, r.status) == (0, 200), r
    assert wait_for(lambda: any(rec["proxy_protocol"] == "connect" for rec in parent_log))


def test_on_route_socks5_parent_and_target_parent_attribute(forward, origin):
    parent_log = []
    parent = forward(on_log=lambda rec: parent_log.append(rec))
    seen = []

    def on_route(session, target):
        target.parent = "sock"
        seen.append(target.parent)
        target.parent = None
        target.parent = "sock"

    child = forward(parents={"sock": "socks5://127.0.0.1:%d" % parent.port}, on_route=on_route)
    assert via_proxy(child.port, origin.url("/s"))[0] == 200
    assert seen == ["sock"]
    assert wait_for(lambda: parent_log)
    assert parent_log[0]["proxy_protocol"] == "socks5"


def test_routes_keyword_and_unknown_parent_in_hook(forward, origin, capfd):
    parent_log = []
    parent = forward(on_log=lambda rec: parent_log.append(rec))
    child = forward(parents={"up": "http://127.0.0.1:%d" % parent.port},
                    routes=[("127.0.0.1", "up")])
    assert via_proxy(child.port, origin.url("/routed"))[0] == 200
    assert wait_for(lambda: parent_log)
    # a hook naming a parent that does not exist refuses the request
    other = forward(on_route=lambda s, t: "no-such-parent")
    status = via_proxy(other.port, origin.url("/"))[0]
    assert status in (403, 502)
    assert "no parent named 'no-such-parent'" in capfd.readouterr().err


def test_on_route_rewrites_destination(forward, origin):
    dead = dead_port()

    def on_route(session, target):
        if session.dest_port == dead:
            return ("127.0.0.1", origin.port)

    l = forward(on_route=on_route)
    status, _, body = via_proxy(l.port, "http://127.0.0.1:%d/moved" % dead)
    assert status == 200
    got = json.loads(body)
    assert got["path"] == "/moved"
    assert header(got["headers"], "Host") == "127.0.0.1:%d" % dead  # as the client named it
    r = curl("http://127.0.0.1:%d/socks-moved" % dead, "--socks5-hostname",
             "127.0.0.1:%d" % l.port)
    assert (r.rc, r.status) == (0, 200), r

    def set_attrs(session, target):
        target.host = "127.0.0.1"
        target.port = origin.port

    l2 = forward(on_route=set_attrs)
    assert via_proxy(l2.port, "http://127.0.0.1:%d/attrs" % dead)[0] == 200


def test_on_route_reject_and_exception_refuse(forward, origin, capfd):
    calls = []

    def on_route(session, target):
        calls.append(session.dest_host)
        if len(calls) == 1:
            return ferry.reject()
        if len(calls) == 2:
            raise ValueError("route boom")

    l = forward(on_route=on_route)
    # HTTP: the reject status -- 403, as on_route cannot choose one (see README)
    assert via_proxy(l.port, origin.url("/1"))[0] == 403
    r = curl(origin.url("/2"), "--socks5-hostname", "127.0.0.1:%d" % l.port)
    assert r.rc != 0 and r.status is None  # SOCKS failure
    assert via_proxy(l.port, origin.url("/3"))[0] == 200
    err = capfd.readouterr().err
    assert "ValueError: route boom" in err and "on_route" in err


def test_on_request_reject_respond_and_session(forward, origin):
    seen = []

    def on_request(req):
        s = req.session
        seen.append((req.method, req.target, s.proxy_protocol, s.dest_host, s.dest_port))
        if req.target.endswith("/legal"):
            return ferry.reject(451)
        if req.target.endswith("/local"):
            return ferry.respond(200, "answered by python\n")

    l = forward(on_request=on_request)
    assert via_proxy(l.port, origin.url("/legal"))[0] == 451
    status, _, body = via_proxy(l.port, origin.url("/local"))
    assert (status, body) == (200, b"answered by python\n")
    assert via_proxy(l.port, origin.url("/fine"))[0] == 200
    assert seen[0] == ("GET", origin.url("/legal"), "http", "127.0.0.1", origin.port)
    assert len(origin_paths(origin, "/legal", "/local")) == 0


def origin_paths(origin, *paths):
    with origin.lock:
        return [r for r in origin.requests if r["path"] in paths]


def test_exception_in_on_request_gives_500(forward, origin, capfd):
    calls = []

    def on_request(req):
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("request boom")

    l = forward(on_request=on_request)
    assert via_proxy(l.port, origin.url("/a"))[0] == 500
    assert via_proxy(l.port, origin.url("/b"))[0] == 200
    assert "request boom" in capfd.readouterr().err


def test_on_upstream_request_adds_header(forward, origin):
    seen = []

    def on_upstream_request(req):
        seen.append((req.target, "Via" in req.headers, req.headers.get("Host")))
        req.set_header("X-Upstream", "from-python")

    l = forward(on_upstream_request=on_upstream_request, anonymity="anonymous")
    status, _, body = via_proxy(l.port, origin.url("/up"), headers={"Via": "1.1 client"})
    assert status == 200
    got = json.loads(body)["headers"]
    assert header(got, "X-Upstream") == "from-python"
    assert header(got, "Via") is None
    # after the policy's edits: the client's Via is already gone here
    assert seen == [(origin.url("/up"), False, origin.addr)]


def test_on_upstream_request_reject(forward, origin):
    l = forward(on_upstream_request=lambda req: ferry.reject(409))
    assert via_proxy(l.port, origin.url("/"))[0] == 409


def test_exception_in_on_upstream_request_gives_500(forward, origin, capfd):
    def on_upstream_request(req):
        raise ValueError("upstream boom")

    l = forward(on_upstream_request=on_upstream_request)
    assert via_proxy(l.port, origin.url("/"))[0] == 500
    assert "upstream boom" in capfd.readouterr().err


def test_reverse_listeners_take_on_accept_and_on_route(origin):
    second = Origin("second")
    seen = []

    def on_route(session, target):
        seen.append((session.proxy_protocol, target.backend, target.parent))
        return ("127.0.0.1", second.port)  # away from the pool's backend

    try:
        with ferry.Engine() as e:
            http_l = e.reverse_http("127.0.0.1:0", [origin.addr], on_route=on_route,
                                    on_accept=lambda s: ferry.reject()
                                    if s.client_addr != "127.0.0.1" else None)
            tcp_l = e.reverse_tcp("127.0.0.1:0", [origin.addr],
                                  on_route=lambda s, t: setattr(t, "parent", "x"))
            e.start()
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open("http://127.0.0.1:%d/r" % http_l.port, timeout=TIMEOUT) as r:
                assert json.loads(r.read())["origin"] == "second"
            with pytest.raises(CONNECTION_ERRORS):  # no parents on reverse listeners
                opener.open("http://127.0.0.1:%d/t" % tcp_l.port, timeout=TIMEOUT)
        assert seen == [("", origin.addr, None)]
    finally:
        second.close()


def test_transparent_anonymity_adds_via(forward, origin):
    l = forward(anonymity="transparent")
    got = json.loads(via_proxy(l.port, origin.url("/t"))[2])["headers"]
    assert header(got, "Via") and header(got, "X-Forwarded-For") == "127.0.0.1"


def test_on_response_edits_headers(forward, origin):
    statuses = []

    def on_response(resp):
        statuses.append(resp.status)
        resp.set_header("X-Response-Hook", "yes")
        resp.remove_header("X-Origin")

    l = forward(on_response=on_response)
    status, headers, _ = via_proxy(l.port, origin.url("/r"))
    assert status == 200 and statuses == [200]
    assert headers.get("X-Response-Hook") == "yes" and "X-Origin" not in headers


def test_hook_objects_are_stale_after_return(forward, origin):
    kept = []

    def on_accept(session):
        kept.append(session)

    def on_route(session, target):
        kept.extend([session, target])

    def on_request(req):
        kept.append(req.session)

    l = forward(on_accept=on_accept, on_route=on_route, on_request=on_request)
    assert via_proxy(l.port, origin.url("/"))[0] == 200
    assert len(kept) == 4
    for obj in kept:
        with pytest.raises(ferry.StaleObjectError):
            obj.dest_host if isinstance(obj, ferry.Session) else obj.host
        assert "stale" in repr(obj)
    assert [type(o).__name__ for o in kept] == ["Session", "Session", "Session", "Target"]
    target = kept[3]
    for use in (lambda: setattr(target, "port", 1), lambda: setattr(target, "parent", "x"),
                lambda: target.backend):
        with pytest.raises(ferry.StaleObjectError):
            use()


# ---- rules, config files, the clock ----

def test_rules_keyword_deny(forward, origin):
    l = forward(rules=["deny host blocked.test,.ads.test", "deny port 1"])
    assert curl("http://blocked.test/", "-x", "http://127.0.0.1:%d" % l.port).status == 403
    assert curl("http://x.ads.test/", "-x", "http://127.0.0.1:%d" % l.port).status == 403
    assert curl(origin.url("/ok"), "-x", "http://127.0.0.1:%d" % l.port).status == 200


def test_secure_defaults_refuse_loopback(forward, origin):
    l = forward(policy=ferry.Forward(connect_ports=origin.port))
    assert via_proxy(l.port, origin.url("/"))[0] == 403  # 127/8 not lifted
    r = curl(origin.url("/"), "--socks5-hostname", "127.0.0.1:%d" % l.port)
    assert r.rc != 0


def test_config_file(forward, origin, tmp_path):
    second = Origin("second")
    try:
        users = tmp_path / "users"
        users.write_text("# test users\ncarol:pa ss:word\n")
        conf = tmp_path / "ferry.conf"
        conf.write_text(
            "listen 127.0.0.1:0\n"
            "workers 2\n"
            "allow-dest 127.0.0.0/8\n"
            "auth-file users\n"
            "deny-host .blocked.test\n"
            "deny port %d\n" % second.port)
        l = forward(config=str(conf))
        fwd = l.policy
        assert (fwd.listen, fwd.workers, fwd.access_log, fwd.is_open) == (
            ["127.0.0.1:0"], 2, None, False)
        auth = dict(user="carol", password="pa ss:word")
        assert via_proxy(l.port, origin.url("/allowed"), **auth)[0] == 200
        assert via_proxy(l.port, second.url("/denied"), **auth)[0] == 403
        assert via_proxy(l.port, "http://www.blocked.test/", **auth)[0] == 403
        assert via_proxy(l.port, origin.url("/"))[0] == 407
        assert second.requests == []
    finally:
        second.close()


def test_config_plus_keywords(forward, origin, tmp_path):
    conf = tmp_path / "f.conf"
    conf.write_text("allow-dest 127.0.0.0/8\n")
    l = forward(config=conf, rules=["deny host blocked.test"], allow_dest=None)
    assert via_proxy(l.port, origin.url("/"))[0] == 200
    assert via_proxy(l.port, "http://blocked.test/")[0] == 403


def test_bad_config_raises_with_file_and_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("# comment\nallow-dest 127.0.0.0/8\nlisen 127.0.0.1:3128\n")
    with ferry.Engine() as e:
        with pytest.raises(ferry.FerryError) as ei:
            e.forward("127.0.0.1:0", config=str(conf))
        assert ei.value.name == "ECONFIG" and ei.value.code == ferry.ECONFIG
        assert ei.value.message == "%s:3: unknown directive 'lisen'" % conf
        assert str(conf) + ":3:" in str(ei.value)
        assert e.listeners == []
        with pytest.raises(ferry.FerryError) as ei:
            e.forward("127.0.0.1:0", config=str(tmp_path / "missing.conf"))
        assert ei.value.name == "ECONFIG" and "missing.conf" in ei.value.message
        users = tmp_path / "users"
        users.write_text("ok:pw\nno-colon-here\n")
        with pytest.raises(ferry.FerryError) as ei:
            e.forward("127.0.0.1:0", users_file=str(users))
        assert ei.value.message.startswith("%s:2:" % users)
        with pytest.raises(ferry.FerryError) as ei:
            e.forward("127.0.0.1:0", rules=["deny sometimes"])
        assert ei.value.name == "ECONFIG" and "deny sometimes" in str(ei.value)
        with pytest.raises(ferry.FerryError) as ei:
            e.forward("127.0.0.1:0", routes=[("*", "nowhere")])
        assert "unknown parent 'nowhere'" in str(ei.value)
        with pytest.raises(ferry.FerryError) as ei:
            e.forward("127.0.0.1:0", allow_client="not-a-cidr")
        assert ei.value.name == "ECONFIG"
        with pytest.raises(ferry.FerryError) as ei:
            ferry.Forward().parse_config("workers 0\n", "inline.conf")
        assert ei.value.message.startswith("inline.conf:1: workers")
        with pytest.raises(ValueError):
            ferry.Forward(anonymity="invisible")
        with pytest.raises(ValueError):
            ferry.Forward(users={"u": "pass\0word"})


def _utc(year, mon, day, hour, minute):
    return calendar.timegm((year, mon, day, hour, minute, 0, 0, 0, 0))


def test_injected_clock_switches_time_window(forward, origin):
    now = [_utc(2026, 11, 25, 10, 30)]  # a Wednesday, business hours
    l = forward(rules=["deny host .social.test time mon-fri 09:00-17:00 utc",
                       "deny time mon-fri 09:00-17:00 utc"],
                clock=lambda: now[0])
    url = origin.url("/clock")
    assert via_proxy(l.port, url)[0] == 403
    now[0] = _utc(2026, 11, 25, 17, 0)  # the window ends at 17:00
    assert via_proxy(l.port, url)[0] == 200
    now[0] = _utc(2026, 11, 28, 10, 30)  # Saturday
    assert via_proxy(l.port, url)[0] == 200
    now[0] = _utc(2026, 11, 30, 8, 59) + 59.9  # Monday 08:59:59.9: floats work
    assert via_proxy(l.port, url)[0] == 200
    now[0] = _utc(2026, 11, 30, 9, 0)
    assert via_proxy(l.port, url)[0] == 403


def test_clock_exception_falls_back_to_system_clock(forward, origin, capfd):
    def clock():
        raise RuntimeError("clock broke")

    l = forward(rules=["deny time * 00:00-24:00"], clock=clock)
    assert via_proxy(l.port, origin.url("/"))[0] == 403  # the window covers every time
    assert "clock broke" in capfd.readouterr().err


# ---- the Forward object ----

def test_forward_policy_shared_and_frozen(origin):
    fwd = ferry.Forward(allow_dest="127.0.0.0/8", connect_ports=[origin.port, 8443])
    fwd.add_rule("deny host blocked.test")
    e1, e2 = ferry.Engine(), ferry.Engine()
    try:
        l1 = e1.forward("127.0.0.1:0", policy=fwd)
        l2 = e2.forward("127.0.0.1:0", policy=fwd, protocols="http")
        assert l1.policy is fwd and l2.policy is fwd
        with pytest.raises(TypeError):
            e1.forward("127.0.0.1:0", policy=fwd, rules=["deny"])
        with pytest.raises(ferry.FerryError) as ei:
            fwd.add_rule("deny")
        assert ei.value.name == "ESTATE"
        with pytest.raises(ferry.FerryError):
            fwd.close()  # in use
        e1.start()
        e2.start()
        for l in (l1, l2):
            assert via_proxy(l.port, origin.url("/shared"))[0] == 200
            assert via_proxy(l.port, "http://blocked.test/")[0] == 403
    finally:
        e1.close()
        assert not fwd.closed  # e2 still uses it
        e2.close()
    assert not fwd.closed  # ours, not the engines'
    fwd.close()
    fwd.close()
    assert fwd.closed
    with pytest.raises(ferry.FerryError):
        ferry.Engine().forward("127.0.0.1:0", policy=fwd)


def test_engine_owned_policy_freed_with_engine():
    e = ferry.Engine()
    l = e.forward("127.0.0.1:0", users={"a": "b"}, allow_client=["127.0.0.1", "::1"])
    fwd = l.policy
    assert not fwd.closed and not fwd.is_open
    e.close()
    assert fwd.closed


def test_is_open():
    assert ferry.Forward(allow_client="0.0.0.0/0").is_open
    assert not ferry.Forward(allow_client="0.0.0.0/0", users={"u": "p"}).is_open
    assert not ferry.Forward().is_open


# ---- resources ----

def _counts():
    gc.collect()
    return (threading.active_count(), len(os.listdir("/proc/self/task")),
            len(os.listdir("/proc/self/fd")))


def _settled_counts(timeout=5.0):
    """_counts() once threads from earlier work have finished exiting: a baseline taken
    while one is still on its way out would make the comparison below wrong."""
    deadline = time.monotonic() + timeout
    last = _counts()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = _counts()
        if now == last:
            return now
        last = now
    return last


def test_forward_engine_cycles_leak_nothing(origin):
    def hooks():
        return dict(on_accept=lambda s: None, on_auth=lambda s, u, p: True,
                    on_route=lambda s, t: None, on_request=lambda r: None,
                    on_upstream_request=lambda r: None, on_response=lambda r: None,
                    on_log=lambda r: None, clock=time.time,
                    rules=["deny time sun 00:00-00:01"], allow_dest="127.0.0.0/8")

    for _ in range(3):  # warm up lazily created things
        with ferry.Engine() as e:
            l = e.forward("127.0.0.1:0", **hooks())
            e.start()
            via_proxy(l.port, origin.url("/warm"), user="u", password="p")
    before = _settled_counts()
    policies = []
    for i in range(50):
        with ferry.Engine(workers=2) as e:
            l = e.forward("127.0.0.1:0", **hooks())
            policies.append(l.policy)
            e.start()
            if i % 10 == 0:
                assert via_proxy(l.port, origin.url("/cycle"), user="u", password="p")[0] == 200
    assert all(p.closed for p in policies)
    deadline = time.monotonic() + 5
    while _counts() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _counts() == before
