"""Helpers for the forwardd integration tests (test_forward.py): starting forwardd (also
under a private /etc/hosts), raw HTTP and SOCKS clients, curl, a UDP echo server and a
SOCKS5 parent (microsocks).

Everything here is bounded in time and ends only the processes it started, by their PID."""
import base64
import hashlib
import ipaddress
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from daemons import FORWARDD, Daemon, free_port

CURL = shutil.which("curl")
UNSHARE = shutil.which("unshare")
MOUNT = shutil.which("mount")


def need(program, package):
    """Path of `program`; fails the test (never skips) naming the Debian package."""
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is not installed: the Debian package '{package}' is needed "
                    f"(tools/setup-deps must install it)")
    return path


# ---- forwardd ----

def wait_listening(host, port, proc, timeout=10.0):
    """Wait until host:port accepts (the probe connection is closed at once) or the
    process dies."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"forwardd exited early with {proc.returncode}: "
                               f"{proc.stderr.read()}")
        s = socket.socket(family)
        s.settimeout(0.2)
        try:
            s.connect((host, port))
            return
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    raise TimeoutError(f"forwardd not listening on {host}:{port}")


class Forwardd:
    """A running forwardd: port, daemon, and the files its logs go to."""

    def __init__(self, port, daemon, error_log, access_log, hosts=None):
        self.port = port
        self.daemon = daemon
        self.error_log = error_log
        self.access_log = access_log
        self.hosts = hosts

    @property
    def proxy(self):
        return f"127.0.0.1:{self.port}"

    def errors(self, wait_for=None, timeout=3.0):
        """The error log's text; with wait_for (a string, or a predicate on the text), wait
        until it holds (the log is written by a thread, a moment after the event)."""
        return _read_log(self.error_log, wait_for, timeout)

    def access(self, wait_for=None, timeout=3.0):
        return _read_log(self.access_log, wait_for, timeout)


def _read_log(path, wait_for, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = open(path, encoding="utf-8", errors="replace").read()
        except FileNotFoundError:
            text = ""
        done = wait_for is None or (wait_for(text) if callable(wait_for) else wait_for in text)
        if done or time.monotonic() >= deadline:
            return text
        time.sleep(0.02)


def hosts_file_prefix(tmp_path, names):
    """argv prefix running a program in a private mount namespace where /etc/hosts is a
    temporary file mapping names -> addresses (plus localhost). The real /etc/hosts is
    never touched: the bind mount exists only in the child's namespace."""
    if UNSHARE is None or MOUNT is None:
        pytest.fail("unshare/mount missing: the Debian package 'util-linux' (unshare) and "
                    "'mount' are needed for the private /etc/hosts")
    if os.geteuid() != 0:
        pytest.fail("a private /etc/hosts needs root (unshare --mount + mount --bind); "
                    f"running as uid {os.geteuid()}")
    hosts = tmp_path / f"hosts.{len(list(tmp_path.glob('hosts.*')))}"
    lines = ["127.0.0.1 localhost"] + [f"{addr} {name}" for name, addr in names.items()]
    hosts.write_text("\n".join(lines) + "\n")
    # sh execs the daemon: the PID we hold is the daemon's, so signals reach it.
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    return [UNSHARE, "--mount", "--propagation", "private", "sh", "-c", script, str(hosts)]


def check_hosts_override(tmp_path):
    """Fail clearly when a private /etc/hosts cannot be set up on this machine."""
    prefix = hosts_file_prefix(tmp_path, {"probe.hosts.test": "192.0.2.77"})
    r = subprocess.run(prefix + ["getent", "hosts", "probe.hosts.test"], capture_output=True,
                       text=True, timeout=10)
    if r.returncode != 0 or "192.0.2.77" not in r.stdout:
        pytest.fail(f"cannot bind-mount a private /etc/hosts (unshare --mount): rc={r.returncode} "
                    f"stdout={r.stdout!r} stderr={r.stderr!r}")


class ForwarddFactory:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.started = []

    def __call__(self, *flags, listen=("127.0.0.1",), hosts=None, config=None, workers=1,
                 header_timeout=None):
        """Start forwardd on a free port on every address in `listen` (the same port);
        flags as strings; hosts: {name: addr} for a private /etc/hosts; config: the text
        of a configuration file."""
        port = free_port()
        n = len(self.started)
        error_log = self.tmp_path / f"fwd{n}.error.log"
        access_log = self.tmp_path / f"fwd{n}.access.log"
        args = [FORWARDD]
        for host in listen:
            args += ["--listen", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        args += ["--workers", str(workers), "--error-log", str(error_log),
                 "--access-log", str(access_log)]
        if header_timeout is not None:
            args += ["--header-timeout", str(header_timeout)]
        if config is not None:
            cfg = self.tmp_path / f"fwd{n}.conf"
            cfg.write_text(config)
            args += ["--config", str(cfg)]
        args += [str(f) for f in flags]
        if hosts is not None:
            args = hosts_file_prefix(self.tmp_path, hosts) + args
        d = Daemon(args)
        f = Forwardd(port, d, error_log, access_log, hosts)
        self.started.append(f)
        try:
            for host in listen:
                wait_listening(host, port, d.proc)
        except Exception:
            d.__exit__(None, None, None)
            raise
        return f

    def stop_all(self):
        """Stop every daemon; returns the failures (crashes, bad exit statuses)."""
        problems = []
        for f in self.started:
            with f.daemon as d:
                status = d.proc.poll()
                if status is None:
                    try:
                        rc, _, err = d.stop(signal.SIGTERM, timeout=10)
                    except subprocess.TimeoutExpired:
                        problems.append(f"forwardd on {f.port} did not stop within 10 s of SIGTERM")
                        continue
                    if rc != 0:
                        problems.append(f"forwardd on {f.port} exited with {rc} on SIGTERM: {err}")
                else:
                    problems.append(f"forwardd on {f.port} died during the test (status "
                                    f"{status}): {d.proc.stderr.read()}")
        return problems


# ---- raw HTTP ----

class HttpResponse:
    def __init__(self, status, reason, headers, body, raw):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.raw = raw

    def get(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def __repr__(self):
        return f"<HttpResponse {self.status} {self.headers} body={self.body[:200]!r}>"


class Conn:
    """One raw TCP connection with a small HTTP/1.1 response reader and SOCKS helpers."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, sock=None):
        if sock is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family)
            sock.settimeout(timeout)
            sock.connect((host, port))
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def send(self, data):
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
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def recv_exactly(self, n):
        """n bytes; fewer (what there was) if the peer closed first."""
        while len(self.buf) < n and self._fill():
            pass
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _until(self, sep):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if not self._fill():
                return None

    def read_response(self, method="GET"):
        """The next response (interim 1xx skipped), or None at EOF before any byte."""
        while True:
            raw = self._until(b"\r\n\r\n")
            if raw is None:
                assert not self.buf, f"closed inside a response head: {bytes(self.buf)!r}"
                return None
            lines = raw[:-4].decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            status = int(parts[1])
            headers = []
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.append((name, value.strip(" \t")))
            if 100 <= status < 200 and status != 101:
                continue
            break
        lower = {n.lower(): v for n, v in headers}
        if method in ("HEAD", "CONNECT") and status < 300 or status in (101, 204, 304):
            body = b""
        elif "chunked" in lower.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                line = self._until(b"\r\n")
                assert line is not None, "closed inside a chunked body"
                size = int(line[:-2].split(b";")[0], 16)
                if size == 0:
                    while self._until(b"\r\n") not in (b"\r\n", None):
                        pass
                    break
                data = self.recv_exactly(size + 2)
                body += data[:-2]
            body = bytes(body)
        elif "content-length" in lower:
            body = self.recv_exactly(int(lower["content-length"]))
        else:
            body = self.read_to_eof()
        return HttpResponse(status, parts[2] if len(parts) > 2 else "", headers, body, raw)

    def read_to_eof(self):
        while self._fill():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def closed_within(self, seconds):
        """(closed?, bytes received before the close or the timeout)."""
        self.sock.settimeout(seconds)
        deadline = time.monotonic() + seconds
        try:
            while self._fill():
                if time.monotonic() >= deadline:
                    return False, bytes(self.buf)
        except socket.timeout:
            return False, bytes(self.buf)
        return True, bytes(self.buf)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def http_request(method, target, headers=(), body=b"", version="HTTP/1.1"):
    head = f"{method} {target} {version}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    return head.encode("latin-1") + body


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def proxy_get(port, url, headers=(), method="GET", body=b"", timeout=10.0, host="127.0.0.1"):
    """One absolute-form request on a fresh connection; the response (None if closed)."""
    hostport = url.split("://", 1)[1].split("/", 1)[0]
    hdrs = [f"Host: {hostport}"] + list(headers)
    if body:
        hdrs.append(f"Content-Length: {len(body)}")
    hdrs.append("Connection: close")
    with Conn(port, host=host, timeout=timeout) as c:
        c.send(http_request(method, url, hdrs, body))
        return c.read_response(method)


def connect_tunnel(port, authority, headers=(), timeout=10.0):
    """CONNECT authority; returns (response, Conn). The caller closes the Conn."""
    c = Conn(port, timeout=timeout)
    c.send(http_request("CONNECT", authority, [f"Host: {authority}"] + list(headers)))
    return c.read_response("CONNECT"), c


# ---- SOCKS ----

def socks5_address(host):
    """The ATYP + address bytes for host (IP literal or name)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode()
        return b"\x03" + bytes([len(name)]) + name
    return (b"\x01" if ip.version == 4 else b"\x04") + ip.packed


def read_socks5_reply(c):
    """(code, bound_host, bound_port) of a SOCKS5 reply, or (None, raw) if it was cut."""
    head = c.recv_exactly(4)
    if len(head) < 4:
        return None, head, None
    atyp = head[3]
    if atyp == 1:
        addr = c.recv_exactly(4)
        host = socket.inet_ntop(socket.AF_INET, addr) if len(addr) == 4 else None
    elif atyp == 4:
        addr = c.recv_exactly(16)
        host = socket.inet_ntop(socket.AF_INET6, addr) if len(addr) == 16 else None
    elif atyp == 3:
        n = c.recv_exactly(1)
        host = c.recv_exactly(n[0]).decode() if n else None
    else:
        raise AssertionError(f"bad ATYP in a SOCKS5 reply: {head!r}")
    port = c.recv_exactly(2)
    assert len(port) == 2, f"SOCKS5 reply cut short: {head!r}"
    return head[1], host, struct.unpack(">H", port)[0]


def socks5_open(port, host, dport, user=None, password=None, cmd=1, timeout=10.0):
    """SOCKS5 handshake; returns (reply code or None, Conn). Auth failure: code is
    ('auth', status)."""
    c = Conn(port, timeout=timeout)
    if user is None:
        c.send(b"\x05\x01\x00")
    else:
        c.send(b"\x05\x01\x02")
    m = c.recv_exactly(2)
    if len(m) < 2:
        return ("closed", m), c
    assert m[0] == 5, f"bad method reply {m!r}"
    if m[1] == 0xFF:
        return ("no-method", m), c
    if m[1] == 2:
        assert user is not None, "the proxy asked for credentials we did not offer"
        u, p = user.encode(), password.encode()
        c.send(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
        a = c.recv_exactly(2)
        assert len(a) == 2 and a[0] == 1, f"bad RFC 1929 reply {a!r}"
        if a[1] != 0:
            return ("auth", a[1]), c
    else:
        assert m[1] == 0, f"unexpected method {m!r}"
    c.send(b"\x05" + bytes([cmd]) + b"\x00" + socks5_address(host) + struct.pack(">H", dport))
    code, _, _ = read_socks5_reply(c)
    return code, c


def socks4_open(port, host, dport, userid=b"", timeout=10.0):
    """SOCKS4 (IP literal) or SOCKS4a (name) CONNECT; returns (reply code or None, Conn)."""
    c = Conn(port, timeout=timeout)
    try:
        ip = socket.inet_aton(host)
        extra = b""
    except OSError:
        ip = b"\x00\x00\x00\x01"
        extra = host.encode() + b"\x00"
    c.send(b"\x04\x01" + struct.pack(">H", dport) + ip + userid + b"\x00" + extra)
    r = c.recv_exactly(8)
    return (r[1] if len(r) == 8 else None), c


def http_over(c, path, host):
    """A GET on an established tunnel; the response."""
    c.send(http_request("GET", path, [f"Host: {host}", "Connection: close"]))
    return c.read_response()


# ---- curl ----

class CurlResult:
    def __init__(self, rc, head, body, stderr):
        self.rc = rc
        self.head = head
        self.body = body
        self.stderr = stderr

    @property
    def statuses(self):
        return [int(l.split()[1]) for l in self.head.splitlines() if l.startswith("HTTP/")]

    @property
    def status(self):
        s = self.statuses
        return s[-1] if s else None

    def __repr__(self):
        return f"<curl rc={self.rc} head={self.head!r} stderr={self.stderr!r}>"


def curl(url, *args, timeout=60):
    if CURL is None:
        pytest.fail("curl is not installed: the Debian package 'curl' is needed")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "body")
        head = os.path.join(d, "head")
        r = subprocess.run([CURL, "-sS", "--max-time", str(timeout - 5), "-D", head, "-o", out,
                            "--noproxy", ""] + [str(a) for a in args] + [url],
                           capture_output=True, text=True, timeout=timeout,
                           env={k: v for k, v in os.environ.items()
                                if not k.lower().endswith("_proxy")})
        body = open(out, "rb").read() if os.path.exists(out) else b""
        text = open(head, encoding="latin-1").read() if os.path.exists(head) else ""
    return CurlResult(r.returncode, text, body, r.stderr)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# ---- UDP echo ----

class UdpEcho:
    """Echoes every datagram to its sender; counts what it got."""

    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                  socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65536)
            except (socket.timeout, OSError):
                continue
            self.received.append((data, peer))
            try:
                self.sock.sendto(data, peer)
            except OSError:
                pass

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def udp_header(host, port):
    return b"\x00\x00\x00" + socks5_address(host) + struct.pack(">H", port)


def parse_udp_header(dgram):
    """(host, port, payload) of a datagram carrying the RFC 1928 UDP header."""
    assert dgram[:3] == b"\x00\x00\x00", f"bad UDP header {dgram[:10]!r}"
    atyp = dgram[3]
    if atyp == 1:
        host, at = socket.inet_ntop(socket.AF_INET, dgram[4:8]), 8
    elif atyp == 4:
        host, at = socket.inet_ntop(socket.AF_INET6, dgram[4:20]), 20
    elif atyp == 3:
        n = dgram[4]
        host, at = dgram[5:5 + n].decode(), 5 + n
    else:
        raise AssertionError(f"bad ATYP {atyp} in a UDP reply")
    return host, struct.unpack(">H", dgram[at:at + 2])[0], dgram[at + 2:]


def recv_dgram(sock, timeout):
    """One datagram within timeout, or None."""
    r, _, _ = select.select([sock], [], [], timeout)
    if not r:
        return None
    return sock.recv(65536)


# ---- a SOCKS5 parent ----

class Microsocks:
    """microsocks on a loopback port, optionally with a user; always stopped by PID."""

    def __init__(self, user=None, password=None):
        exe = need("microsocks", "microsocks")
        self.port = free_port()
        args = [exe, "-i", "127.0.0.1", "-p", str(self.port)]
        if user is not None:
            args += ["-u", user, "-P", password]
        self.daemon = Daemon(args, self.port)

    def close(self):
        with self.daemon as d:
            if d.proc.poll() is None:
                d.stop(signal.SIGTERM, timeout=5)
