"""reversed --config FILE reloads on SIGHUP: new connections use the new file, live ones
finish on the old one, a bad file is refused while the running configuration stays, and
no request is lost while reloads happen under load."""
import http.client
import json
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from daemons import REVERSED, Daemon, free_port
from http_backends import HttpBackend


@pytest.fixture
def origins():
    servers = [HttpBackend(), HttpBackend()]
    yield servers
    for s in servers:
        s.close()
        assert s.bad == [], f"the proxy sent malformed HTTP upstream: {s.bad}"


def config(port, origin, generation, extra=""):
    """One HTTP listener sending everything to `origin`, tagging requests with the
    configuration's generation (the origin echoes request headers back)."""
    return f"""\
drain 5s
pool p
    backend 127.0.0.1:{origin.port}
listen 127.0.0.1:{port}
    route pool p set-header "X-Generation: {generation}"
{extra}"""


def generation_of(body):
    headers = json.loads(body)["headers"]
    values = [v for n, v in headers if n.lower() == "x-generation"]
    return int(values[0]) if values else None


def get(port, path="/", timeout=10):
    """One request on a fresh connection: (status, generation)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, generation_of(r.read())
    finally:
        c.close()


def reload(daemon, conf, text):
    conf.write_text(text)
    daemon.proc.send_signal(signal.SIGHUP)


def wait_generation(port, generation, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get(port) == (200, generation):
            return
        time.sleep(0.02)
    pytest.fail(f"generation {generation} never answered")


def stop(daemon):
    rc, _, err = daemon.stop(signal.SIGTERM, timeout=20)
    assert rc == 0, f"reversed exited with {rc}: {err}"
    return err


class Load:
    """Clients requesting in a loop until stopped (bounded in count and time): some on
    keep-alive connections (http.client reconnects after a Connection: close answer,
    but a connection closed under a request it sent is an error), some on a fresh
    connection per request. Every failure is recorded."""

    def __init__(self, port, keepalive=4, fresh=2, limit=20000, seconds=60):
        self.port = port
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.errors = []
        self.generations = set()
        self.deadline = time.monotonic() + seconds
        self.limit = limit
        self.threads = [threading.Thread(target=self._run, args=(True,)) for _ in range(keepalive)]
        self.threads += [threading.Thread(target=self._run, args=(False,)) for _ in range(fresh)]
        for t in self.threads:
            t.start()

    def _run(self, keepalive):
        conn = None
        for _ in range(self.limit):
            if self.stop_event.is_set() or time.monotonic() > self.deadline:
                break
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/delay/5")  # reloads find responses half sent
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    raise RuntimeError(f"status {r.status}")
                with self.lock:
                    self.ok += 1
                    self.generations.add(generation_of(body))
            except Exception as e:  # noqa: BLE001 - every failure counts
                with self.lock:
                    self.errors.append(repr(e))
                conn.close()
                conn = None
            if not keepalive and conn is not None:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def finish(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(30)


def test_reload_switches_new_connections_and_live_requests_finish_on_the_old(origins, tmp_path):
    a, b = origins
    port = free_port()
    conf = tmp_path / "reverse.conf"
    conf.write_text(config(port, a, 1))
    with Daemon([REVERSED, "--config", conf], port=port) as d:
        assert get(port) == (200, 1)
        # A request in progress when the reload happens...
        slow = {}
        t = threading.Thread(target=lambda: slow.update(r=get(port, "/delay/1500")))
        t.start()
        a.wait(lambda: any(r.target == "/delay/1500" for r in a.requests))
        reload(d, conf, config(port, b, 2))
        wait_generation(port, 2)
        t.join(10)
        assert slow["r"] == (200, 1)  # ... finishes on the old configuration and backend
        assert all(r.target != "/delay/1500" for r in b.requests)
        assert any(r.target == "/" for r in b.requests)  # new connections: the new backend
        err = stop(d)
    assert f"reversed: {conf}: configuration reloaded" in err


def test_a_bad_file_is_refused_and_the_running_configuration_stays(origins, tmp_path):
    a, _ = origins
    port = free_port()
    conf = tmp_path / "reverse.conf"
    conf.write_text(config(port, a, 1))
    with Daemon([REVERSED, "--config", conf], port=port) as d:
        reload(d, conf, config(port, a, 2) + "bogus directive\n")
        busy = free_port()
        time.sleep(0.5)
        assert get(port) == (200, 1)
        # A file that is valid but cannot be applied (a port in use) is refused as well.
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", busy))
            s.listen(1)
            reload(d, conf, config(port, a, 3, f"listen 127.0.0.1:{busy}\n    route pool p\n"))
            time.sleep(0.5)
            assert get(port) == (200, 1)
        reload(d, conf, config(port, a, 4))
        wait_generation(port, 4)
        err = stop(d)
    refusals = re.findall(r"reversed: reload refused, the running configuration stays: (.*)", err)
    assert len(refusals) == 2, err
    assert "reverse.conf:6: unknown directive 'bogus'" in refusals[0]
    assert f"listen 127.0.0.1:{busy}: address already in use" in refusals[1]


def test_reload_adds_and_removes_listeners(origins, tmp_path):
    a, _ = origins
    port, second = free_port(), free_port()
    conf = tmp_path / "reverse.conf"
    conf.write_text(config(port, a, 1))
    with Daemon([REVERSED, "--config", conf], port=port) as d:
        reload(d, conf, config(port, a, 2, f"listen 127.0.0.1:{second}\n    route pool p\n"))
        wait_generation(port, 2)
        assert get(second)[0] == 200
        reload(d, conf, config(second, a, 3))  # the first port goes away
        wait_generation(second, 3)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                get(port, timeout=2)
            except OSError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the removed listener still accepts")
        stop(d)


def test_sighup_without_a_config_file_is_ignored(origins):
    port = free_port()
    with Daemon([REVERSED, "--listen", f"127.0.0.1:{port}", "--backend",
                 f"127.0.0.1:{origins[0].port}", "--mode", "http"], port=port) as d:
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/")
        assert c.getresponse().status == 200
        c.close()
        err = stop(d)
    assert "SIGHUP: nothing to reload" in err


def test_reloads_under_load_lose_no_request(origins, tmp_path):
    """A bounded loop of clients (keep-alive and not) while the file is reloaded ten
    times, alternating between the two backends: zero errors."""
    port = free_port()
    conf = tmp_path / "reverse.conf"
    conf.write_text(config(port, origins[0], 0))
    with Daemon([REVERSED, "--config", conf], port=port) as d:
        load = Load(port)
        try:
            for generation in range(1, 11):
                time.sleep(0.15)
                reload(d, conf, config(port, origins[generation % 2], generation))
                wait_generation(port, generation)
            time.sleep(0.3)
        finally:
            load.finish()
        assert load.errors == [], f"{len(load.errors)} failed of {load.ok}: {load.errors[:5]}"
        assert load.ok > 100
        assert len(load.generations) >= 8  # the clients saw the reloads happen
        err = stop(d)
    assert err.count("configuration reloaded") == 10


def test_reloads_under_wrk_report_zero_errors(origins, tmp_path):
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.fail("wrk is not installed: the Debian package 'wrk' is needed "
                    "(tools/setup-deps must install it)")
    port = free_port()
    conf = tmp_path / "reverse.conf"
    conf.write_text(config(port, origins[0], 0))
    with Daemon([REVERSED, "--config", conf], port=port) as d:
        proc = subprocess.Popen([wrk, "-t2", "-c16", "-d4s", f"http://127.0.0.1:{port}/delay/5"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(0.5)
            for generation in range(1, 9):
                reload(d, conf, config(port, origins[generation % 2], generation))
                wait_generation(port, generation)
                time.sleep(0.2)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        err = stop(d)
    total = re.search(r"(\d+) requests in", out)
    assert total and int(total.group(1)) > 100, out
    assert "Socket errors" not in out, out
    assert "Non-2xx" not in out, out
    assert err.count("configuration reloaded") == 8
