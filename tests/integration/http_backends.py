"""HTTP/1.1 origin servers for the reversed --mode http tests, on raw sockets.

Each HttpBackend listens on a free 127.0.0.1 port, serves every accepted connection on its
own thread (keep-alive, pipelining, Expect: 100-continue, Upgrade) and records what reached
it, so tests can assert what was or was not sent upstream:

  connections   TCP connections accepted
  raw[i]        every byte received on connection i, as received
  requests      complete requests (head and whole body), in order of completion
  incomplete    connections that ended inside a request (head or body not complete), with
                what had arrived
  closed_by_peer  connection indexes whose peer (the proxy) closed them
  bad           malformed HTTP that reached the backend (a proxy must never send any)

The answer depends on the request path (see HttpBackend.respond):

  /len/N        200, Content-Length: N, N deterministic bytes (blob(N))
  /chunked/N    200, Transfer-Encoding: chunked, the same N bytes in chunks
  /close/N      "HTTP/1.0 200 OK" without Content-Length: N bytes, then close
  /hang         reads the request, never answers, waits for the proxy to give up
  /stall        200, Content-Length: 100, then 10 bytes, then nothing (waits for a close)
  /ws           with Upgrade: websocket: 101, then echoes raw bytes until EOF
  /delay/MS     the JSON description below, its body MS milliseconds after its head
  anything else 200 with a JSON description of the request: method, target, version,
                headers, body length and sha256, connection index, request index

Every body-carrying answer has an X-Body-Sha256 header; JSON answers also X-Conn.
"""
import hashlib
import json
import random
import socket
import threading
import time

MAX_HEAD = 1 << 20
_BLOBS = {}
_BLOBS_LOCK = threading.Lock()


def blob(n):
    """n deterministic pseudo-random bytes (cached)."""
    with _BLOBS_LOCK:
        b = _BLOBS.get(n)
        if b is None:
            b = random.Random(n).randbytes(n)
            _BLOBS[n] = b
        return b


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Request:
    def __init__(self, conn, method, target, version, headers, raw_head):
        self.conn = conn              # index of the TCP connection it came on
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers        # [(name, value)] as received, in order
        self.raw_head = raw_head      # bytes of the head incl. the final CRLFCRLF
        self.body = b""
        self.chunked = False
        self.time = time.monotonic()  # when the head was complete

    def get(self, name):
        """First value of the header `name` (case-insensitive), or None."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def has_token(self, name, token):
        for v in self.all(name):
            if token.lower() in [t.strip().lower() for t in v.split(",")]:
                return True
        return False

    def describe(self, index):
        return {
            "method": self.method,
            "target": self.target,
            "version": self.version,
            "headers": self.headers,
            "length": len(self.body),
            "sha256": sha256(self.body),
            "chunked": self.chunked,
            "conn": self.conn,
            "n": index,
        }


class BadMessage(Exception):
    pass


class _Reader:
    """Buffered reads from one connection, recording every byte into `raw`."""

    def __init__(self, sock, index, raw, stop):
        self.sock = sock
        self.index = index
        self.raw = raw
        self.buf = bytearray()
        self.stop = stop

    def fill(self):
        """Read more; False at EOF, after 30 s of silence or when the backend is closing."""
        if self.stop.is_set():
            return False
        try:
            data = self.sock.recv(262144)
        except OSError:
            return False
        if not data:
            return False
        self.raw += data
        self.buf += data
        return True

    def until(self, sep, limit=MAX_HEAD):
        """Bytes up to and including sep; None at EOF before it."""
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise BadMessage("line or head too long")
            start = max(0, len(self.buf) - len(sep) + 1)
            if not self.fill():
                return None

    def exactly(self, n):
        while len(self.buf) < n:
            if not self.fill():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def parse_head(raw_head):
    """(method, target, version, headers) of a request head; strict enough for tests."""
    text = raw_head.decode("latin-1")
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadMessage(f"bad request line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadMessage(f"bad header line {line!r}")
        headers.append((name, value.strip(" \t")))
    return parts[0], parts[1], parts[2], headers


class HttpBackend:
    def __init__(self, send_continue=True):
        self.send_continue = send_continue
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = 0
        self.raw = []
        self.requests = []
        self.incomplete = []
        self.errors = []              # socket errors, as (connection, text)
        self.bad = []                 # malformed HTTP that reached us, as (connection, text)
        self.closed_by_peer = set()
        self._conns = []
        self._threads = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    # ---- what reached us ----

    def all_bytes(self):
        with self.lock:
            return b"".join(bytes(r) for r in self.raw)

    def wait(self, predicate, timeout=5.0):
        """Wait until predicate() is true; returns its last value."""
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v or time.monotonic() >= deadline:
                return v
            time.sleep(0.01)

    # ---- serving ----

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            # Generous: a slow (sanitized) proxy must not make sendall give up; close()
            # shuts the connections down, which wakes any blocked recv.
            conn.settimeout(30)
            with self.lock:
                index = self.connections
                self.connections += 1
                self.raw.append(bytearray())
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn, index), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn, index):
        reader = _Reader(conn, index, self.raw[index], self._stop)
        try:
            while True:
                keep = self._one(conn, index, reader)
                if not keep:
                    break
        except BadMessage as e:
            with self.lock:
                self.bad.append((index, str(e)))
        except OSError as e:
            with self.lock:
                self.errors.append((index, repr(e)))
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _one(self, conn, index, reader):
        head = reader.until(b"\r\n\r\n")
        if head is None:
            with self.lock:
                if reader.buf:
                    self.incomplete.append((index, bytes(reader.buf)))
                else:
                    self.closed_by_peer.add(index)
            return False
        method, target, version, headers = parse_head(head)
        req = Request(index, method, target, version, headers, head)
        te = req.get("transfer-encoding")
        cl = req.get("content-length")
        if (req.get("expect") or "").lower() == "100-continue" and self.send_continue and \
                (te is not None or (cl is not None and cl != "0")):
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if te is not None:
            if te.lower() != "chunked":
                raise BadMessage(f"unexpected Transfer-Encoding {te!r}")
            req.chunked = True
            body = self._read_chunked(reader)
        elif cl is not None:
            if not cl.isdigit():
                raise BadMessage(f"bad Content-Length {cl!r}")
            body = reader.exactly(int(cl))
        else:
            body = b""
        if body is None:
            with self.lock:
                self.incomplete.append((index, head + bytes(reader.buf)))
            return False
        req.body = body
        with self.lock:
            self.requests.append(req)
            n = len(self.requests) - 1
        return self.respond(conn, reader, req, n)

    @staticmethod
    def _read_chunked(reader):
        body = bytearray()
        while True:
            line = reader.until(b"\r\n", limit=4096)
            if line is None:
                return None
            size_text = line[:-2].split(b";")[0].strip()
            if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                raise BadMessage(f"bad chunk size line {line!r}")
            size = int(size_text, 16)
            if size == 0:
                while True:  # trailer section
                    t = reader.until(b"\r\n", limit=65536)
                    if t is None:
                        return None
                    if t == b"\r\n":
                        return bytes(body)
            data = reader.exactly(size + 2)
            if data is None:
                return None
            if data[-2:] != b"\r\n":
                raise BadMessage("chunk data not followed by CRLF")
            body += data[:-2]

    def _wait_eof(self, reader, limit=30.0):
        """Hold the connection until the peer closes it (or the backend stops)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if not reader.fill():
                with self.lock:
                    self.closed_by_peer.add(reader.index)
                return
            reader.buf.clear()

    def respond(self, conn, reader, req, n):
        """Answer one request; return True to keep the connection for the next one."""
        path = req.target.split("?")[0]
        head_only = req.method == "HEAD"
        keep = not req.has_token("connection", "close") and req.version == "HTTP/1.1"
        parts = path.strip("/").split("/")
        if parts[0] in ("len", "chunked", "close") and len(parts) == 2 and parts[1].isdigit():
            size = int(parts[1])
            body = blob(size)
            h = [f"X-Body-Sha256: {sha256(body)}", f"X-Path: {path}",
                 "Content-Type: application/octet-stream"]
            if parts[0] == "len":
                conn.sendall(_head("HTTP/1.1 200 OK", h + [f"Content-Length: {size}"]) +
                             (b"" if head_only else body))
                return keep
            if parts[0] == "chunked":
                out = [_head("HTTP/1.1 200 OK", h + ["Transfer-Encoding: chunked"])]
                if not head_only:
                    pos, step = 0, 1
                    while pos < size:  # chunk sizes 1, 2, 4, ... 64 KiB: odd boundaries
                        take = min(step, size - pos)
                        out.append(b"%x\r\n" % take + body[pos:pos + take] + b"\r\n")
                        pos += take
                        step = min(step * 2 + 1, 65536)
                    out.append(b"0\r\n\r\n")
                conn.sendall(b"".join(out))
                return keep
            # close-delimited: an HTTP/1.0-style answer without any length
            conn.sendall(_head("HTTP/1.0 200 OK", h) + (b"" if head_only else body))
            conn.shutdown(socket.SHUT_WR)
            self._wait_eof(reader, limit=5.0)
            return False
        if path == "/hang":
            self._wait_eof(reader)
            return False
        if path == "/stall":
            conn.sendall(_head("HTTP/1.1 200 OK", ["Content-Length: 100"]) + b"0123456789")
            self._wait_eof(reader)
            return False
        if path == "/ws" and req.has_token("connection", "upgrade") and \
                (req.get("upgrade") or "").lower() == "websocket":
            conn.sendall(_head("HTTP/1.1 101 Switching Protocols",
                               ["Upgrade: websocket", "Connection: Upgrade"]))
            if reader.buf:
                conn.sendall(bytes(reader.buf))
                reader.buf.clear()
            while reader.fill():
                conn.sendall(bytes(reader.buf))
                reader.buf.clear()
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return False
        body = json.dumps(req.describe(n)).encode()
        h = [f"X-Body-Sha256: {sha256(body)}", f"X-Conn: {req.conn}",
             "Content-Type: application/json", f"Content-Length: {len(body)}"]
        if not keep:
            h.append("Connection: close")
        if parts[0] == "delay" and len(parts) == 2 and parts[1].isdigit():
            conn.sendall(_head("HTTP/1.1 200 OK", h))
            time.sleep(int(parts[1]) / 1000)
            conn.sendall(b"" if head_only else body)
            return keep
        conn.sendall(_head("HTTP/1.1 200 OK", h) + (b"" if head_only else body))
        return keep

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)


def _head(status_line, headers):
    return (status_line + "\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode("latin-1")


class Blackhole:
    """A TCP address whose connects hang: a listener with backlog 0 whose accept queue is
    already full (one connection that is never accepted), so the kernel drops further SYNs.
    Used for upstream connect timeouts on loopback."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(2):  # the first fills the queue; the second stays in SYN-SENT
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(s)
        time.sleep(0.05)

    def close(self):
        for s in self.fillers:
            s.close()
        self.sock.close()
