"""TLS passthrough through reversed: real TLS servers (openssl s_server) behind an sni
listener, reached with openssl s_client and curl by name; and the PROXY protocol flags."""
import socket
import subprocess
import threading

import pytest

from daemons import REVERSED, Daemon, free_port, wait_port


def tls_server(tmp_path, name):
    """An `openssl s_server -www` with a self-signed certificate for `name`."""
    cert, key = tmp_path / (name + ".crt"), tmp_path / (name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=" + name, "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    port = free_port()
    d = Daemon(["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-cert", str(cert),
                "-key", str(key), "-www", "-quiet"], port)
    return d, port


@pytest.fixture
def two_tls_servers(tmp_path):
    a, pa = tls_server(tmp_path, "a.test")
    b, pb = tls_server(tmp_path, "b.test")
    yield pa, pb
    for d in (a, b):
        with d:
            d.proc.kill()


def subject_seen(port, name):
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", name], input="", capture_output=True, text=True,
                       timeout=30)
    return r.stdout + r.stderr


def test_sni_routes_real_tls_to_two_servers_untouched(two_tls_servers, tmp_path):
    pa, pb = two_tls_servers
    port = free_port()
    conf = tmp_path / "sni.conf"
    conf.write_text("pool a\n    backend 127.0.0.1:%d\npool b\n    backend 127.0.0.1:%d\n"
                    "listen 127.0.0.1:%d mode sni\n    route host a.test pool a\n"
                    "    route host *.b.test pool b\n    route host b.test pool b\n"
                    % (pa, pb, port))
    with Daemon([REVERSED, "--config", str(conf)], port) as d:
        # The certificate each client sees is the one of the server its name routes to:
        # the handshake went through end to end, unaltered.
        assert "CN = a.test" in subject_seen(port, "a.test")
        assert "CN = b.test" in subject_seen(port, "b.test")
        assert "CN = b.test" in subject_seen(port, "www.b.test")
        r = subprocess.run(["curl", "-sk", "--resolve", "a.test:%d:127.0.0.1" % port,
                            "https://a.test:%d/" % port], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0 and "s_server" in r.stdout, r
        # No route for the name (and no default route): closed without a handshake.
        assert "CN = " not in subject_seen(port, "c.test")
        d.stop()


class Recorder:
    """A TCP server keeping what one connection sent, answering a small HTTP response."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.got = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        conn.settimeout(5)
        while b"\r\n\r\n" not in self.got.split(b"\r\n", 1)[-1]:
            data = conn.recv(4096)
            if not data:
                break
            self.got += data
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        conn.close()

    def close(self):
        self.sock.close()


def test_accept_proxy_and_send_proxy_flags():
    rec = Recorder()
    port = free_port()
    with Daemon([REVERSED, "--listen", "127.0.0.1:%d" % port, "--backend",
                 "127.0.0.1:%d" % rec.port, "--mode", "http", "--accept-proxy",
                 "--trusted-proxy", "127.0.0.0/8", "--send-proxy", "v1"], port) as d:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"PROXY TCP4 203.0.113.9 198.51.100.1 40000 443\r\n"
                      b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            answer = b""
            while True:
                data = c.recv(4096)
                if not data:
                    break
                answer += data
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        rec.thread.join(5)
        # The backend hears of the real client twice: in our PROXY line and in XFF.
        assert rec.got.startswith(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 %d\r\n" % port), rec.got
        assert b"\r\nX-Forwarded-For: 203.0.113.9\r\n" in rec.got, rec.got
        d.stop()
    rec.close()


def test_proxy_flags_are_checked():
    for args, needle in ((["--send-proxy", "v3"], "--send-proxy 'v3'"),
                         (["--trusted-proxy", "a,b"], "one CIDR per flag")):
        r = subprocess.run([REVERSED, "--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1",
                            "--mode", "http"] + args, capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and needle in r.stderr, r.stderr
