"""The example daemons end to end: reversed --mode tcp with real sockets, signals, flags."""
import hashlib
import os
import random
import signal
import socket
import subprocess
import threading
import time

import pytest

from daemons import FORWARDD, REVERSED, Daemon, EchoServer, free_port

MiB = 1 << 20


@pytest.fixture
def echoes():
    servers = [EchoServer(), EchoServer()]
    yield servers
    for s in servers:
        s.close()


def reversed_args(port, backends, *extra):
    args = [REVERSED, "--listen", f"127.0.0.1:{port}", "--mode", "tcp"]
    for b in backends:
        args += ["--backend", f"127.0.0.1:{b}"]
    return args + list(extra)


def echo_roundtrip(port, size, seed):
    """Send `size` random bytes and read the echo concurrently; return both digests."""
    rng = random.Random(seed)
    payload = rng.randbytes(size)
    got = hashlib.sha256()
    received = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        def reader():
            nonlocal received
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return
                got.update(chunk)
                received += len(chunk)

        t = threading.Thread(target=reader)
        t.start()
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        t.join(60)
    return hashlib.sha256(payload).hexdigest(), got.hexdigest(), received


def test_32_parallel_clients_4mib_each_byte_exact(echoes, tmp_path):
    port = free_port()
    log = tmp_path / "access.log"
    with Daemon(reversed_args(port, [e.port for e in echoes], "--workers", "2",
                              "--access-log", str(log)), port) as d:
        results = [None] * 32

        def client(i):
            results[i] = echo_roundtrip(port, 4 * MiB, i)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for sent, got, n in results:
            assert n == 4 * MiB
            assert sent == got
        rc, _, _ = d.stop()
    assert rc == 0
    # The readiness probe made one extra session; round-robin spread the rest.
    assert sum(e.connections for e in echoes) >= 32
    assert min(e.connections for e in echoes) >= 15
    lines = log.read_text().splitlines()
    relayed = [l for l in lines if " relayed " in l and f"up={4 * MiB} down={4 * MiB}" in l]
    assert len(relayed) == 32


def test_a_dead_backend_is_skipped(echoes):
    port = free_port()
    dead = free_port()
    with Daemon(reversed_args(port, [dead, echoes[0].port]), port) as d:
        for i in range(6):
            sent, got, n = echo_roundtrip(port, 10000, i)
            assert sent == got and n == 10000
        assert d.stop()[0] == 0


def test_all_backends_dead_closes_clients_within_the_connect_timeout():
    port = free_port()
    with Daemon(reversed_args(port, [free_port(), free_port()], "--connect-timeout", "1500"),
                port) as d:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                t0 = time.monotonic()
                try:
                    data = s.recv(1)
                except ConnectionResetError:
                    data = b""
                assert data == b""
                assert time.monotonic() - t0 < 1.5
        rc, _, err = d.stop()
        assert rc == 0
        assert "no upstream available" in err


def test_half_close_still_receives_the_full_reply(echoes):
    port = free_port()
    with Daemon(reversed_args(port, [echoes[0].port]), port) as d:
        payload = os.urandom(300000)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)  # nothing more from us; the reply must still come
            buf = bytearray()
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        assert bytes(buf) == payload
        assert d.stop()[0] == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_drains_then_exits_zero(echoes, sig):
    port = free_port()
    with Daemon(reversed_args(port, [echoes[0].port], "--drain", "400"), port) as d:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        t0 = time.monotonic()
        d.proc.send_signal(sig)
        time.sleep(0.1)
        s.sendall(b"y")  # the live session keeps working while draining
        assert s.recv(1) == b"y"
        d.proc.communicate(timeout=15)  # one signal only: a second one would force the stop
        assert d.proc.returncode == 0
        assert 0.3 <= time.monotonic() - t0 < 5
        assert s.recv(1) == b""
        s.close()


def test_port_in_use_exits_1_with_a_message(echoes):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = subprocess.run(reversed_args(port, [echoes[0].port]), capture_output=True, text=True,
                           timeout=10)
    assert r.returncode == 1
    assert "address already in use" in r.stderr


@pytest.mark.parametrize("args, needle", [
    (["--listen", "127.0.0.1:1", "--mode", "tcp"], "--backend"),
    (["--backend", "127.0.0.1:1", "--mode", "tcp"], "--listen"),
    (["--listen", "127.0.0.1", "--backend", "127.0.0.1:1"], "--listen"),
    (["--listen", "127.0.0.1:1", "--backend", "127.0.0.1:99999"], "--backend"),
    (["--listen", "127.0.0.1:1", "--backend", "127.0.0.1:1", "--workers", "zero"], "--workers"),
    (["--listen", "127.0.0.1:1", "--backend", "127.0.0.1:1", "--bogus"], "--bogus"),
    (["--listen", "127.0.0.1:1", "--backend", "127.0.0.1:1", "--mode", "udp"], "--mode"),
])
def test_bad_flags_exit_2_naming_the_flag(args, needle):
    r = subprocess.run([REVERSED] + args, capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert needle in r.stderr


@pytest.mark.parametrize("prog", [REVERSED, FORWARDD])
def test_help_and_version(prog):
    h = subprocess.run([prog, "--help"], capture_output=True, text=True, timeout=10)
    assert h.returncode == 0 and "--listen" in h.stdout
    v = subprocess.run([prog, "--version"], capture_output=True, text=True, timeout=10)
    assert v.returncode == 0 and "ferry" in v.stdout


