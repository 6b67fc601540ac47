"""Python bindings for libferry (cffi, ABI mode: the shared library is dlopen()ed at import,
no compiler is needed).

The library is found through, in order: the FERRY_LIB environment variable (path to
libferry.so), build/libferry.so relative to the source tree this package sits in, and
ctypes.util.find_library("ferry").

Typical use::

    import ferry

    def on_request(req):
        if req.target.startswith("/admin"):
            return ferry.reject(403)
        req.set_header("X-From-Python", "1")

    with ferry.Engine(workers=2) as engine:
        l = engine.reverse_http("127.0.0.1:8080", ["127.0.0.1:9000"], on_request=on_request)
        engine.start()
        engine.wait()  # until engine.stop() from another thread

Pools and a routing table (by host, path and method), TLS passthrough by SNI::

    with ferry.Engine() as engine:
        api = engine.pool("api", ["10.0.1.5:9000", "10.0.1.6:9000"], balance="leastconn",
                          health=dict(kind="http", path="/health", interval_ms=2000))
        router = engine.router([dict(host="www.example.com", path="/api", pool=api,
                                     strip_prefix="/api"),
                                dict(pool=["10.0.0.5:8080"])])
        engine.reverse_http("0.0.0.0:8080", router=router, hide_backend_headers=True)
        engine.reverse_sni("0.0.0.0:8443", router=router)
        engine.start()
        api.add("10.0.1.7:9000")                 # also while running
        api.backend("10.0.1.5:9000").draining = True

A forward proxy (clients name the destination: HTTP, CONNECT, SOCKS4/4a/5 on one port)::

    with ferry.Engine() as engine:
        l = engine.forward("127.0.0.1:3128", rules=["deny host .example.com"],
                           users={"alice": "secret"})
        engine.start()
        engine.wait()
"""
import atexit
import ctypes.util
import os
import sys
import threading
import time
import traceback
import weakref
from collections import namedtuple

import cffi

from ._cdef import CDEF, ERRORS

__all__ = [
    "FerryError", "StaleObjectError", "Engine", "Listener", "Request", "Response", "Headers",
    "Session", "Target", "Forward", "Parent", "Pool", "Backend", "Router",
    "CONTINUE", "reject", "respond", "version", "version_number", "ERRORS", "ffi", "lib",
]

ffi = cffi.FFI()
ffi.cdef(CDEF)


def _find_library():
    env = os.environ.get("FERRY_LIB")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    candidate = os.path.normpath(os.path.join(here, "..", "..", "..", "build", "libferry.so"))
    if os.path.exists(candidate):
        return candidate
    return ctypes.util.find_library("ferry")


def _load():
    path = _find_library()
    if not path:
        raise ImportError("ferry: libferry.so not found; set FERRY_LIB to its path, build it in "
                          "<repo>/build, or install it where the dynamic linker looks")
    try:
        return ffi.dlopen(path), path
    except OSError as e:
        raise ImportError("ferry: cannot load %s: %s" % (path, e)) from e


lib, library_path = _load()

# Error codes as module constants: ferry.EADDRINUSE == 4, ...
for _name, _value, _msg in ERRORS:
    globals()[_name] = _value
del _name, _value, _msg


def _s(cstr):
    return ffi.string(cstr).decode("utf-8", "replace") if cstr != ffi.NULL else ""


def _view(v):
    """A ferry_view as str (latin-1: lossless for the bytes HTTP allows)."""
    if v.len == 0 or v.ptr == ffi.NULL:
        return ""
    return ffi.unpack(v.ptr, v.len).decode("latin-1")


def _cred(cstr):
    """User names and passwords: exact (undecodable bytes survive as surrogates), so
    comparing them with str never lets two different byte strings look alike."""
    return ffi.string(cstr).decode("utf-8", "surrogateescape") if cstr != ffi.NULL else None


def _enc(value, what):
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise TypeError("%s must be str or bytes, not %s" % (what, type(value).__name__))
    return value.encode("latin-1")


def _cstr(value, what):
    """A C string argument for the policy API: str as UTF-8 (paths: the file system's
    encoding), bytes as they are; an embedded NUL would cut the string short, so it is
    refused rather than silently truncating (a password, say)."""
    if isinstance(value, os.PathLike):
        value = os.fsencode(value)
    elif isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    elif not isinstance(value, bytes):
        raise TypeError("%s must be str or bytes, not %s" % (what, type(value).__name__))
    if b"\0" in value:
        raise ValueError("%s must not contain NUL characters" % what)
    return value


def _cstr_latin1(value, what):
    """A protocol string (request target, header name) as bytes: str as latin-1; an
    embedded NUL is refused (C would stop reading there)."""
    value = _enc(value, what)
    if b"\0" in value:
        raise ValueError("%s must not contain NUL characters" % what)
    return value


# Spare bytes behind every options struct handed to an *_init() function: a newer library
# whose struct has grown (fields are only ever appended) fills its defaults into this slack
# instead of writing past our allocation.
_OPTS_SLACK = 256


def _new_opts(ctype):
    """A zeroed `ctype` with slack behind it: (pointer, owner). Keep owner alive."""
    owner = ffi.new("char[]", ffi.sizeof(ctype) + _OPTS_SLACK)
    return ffi.cast(ctype + " *", owner), owner


class FerryError(Exception):
    """A ferry_err other than FERRY_OK. .code is the number, .name e.g. 'EADDRINUSE',
    str() the library's message (ferry_strerror), prefixed by what was being done."""

    def __init__(self, code, context=None, message=None):
        self.code = int(code)
        self.name = _s(lib.ferry_err_name(self.code))
        self.message = message if message is not None else _s(lib.ferry_strerror(self.code))
        self.context = context
        text = "%s (%s)" % (self.message, self.name)
        if context:
            text = "%s: %s" % (context, text)
        super().__init__(text)


class StaleObjectError(FerryError, RuntimeError):
    """A Request/Response (or its headers) was used after the hook that received it returned;
    the C transaction behind it may be gone, so nothing is touched."""

    def __init__(self, what):
        super().__init__(lib.FERRY_ESTATE, None,
                         "%s used after its hook returned (it is valid only during the hook)"
                         % what)


def _check(err, context=None):
    if err != lib.FERRY_OK:
        raise FerryError(err, context)


def _check_config(err, context, buf):
    """_check() for calls that describe their failure in `buf` ("path:line: message")."""
    if err != lib.FERRY_OK:
        text = _s(buf) if buf[0] != b"\0" else None
        raise FerryError(err, context, text)


def version():
    """Version string of the loaded library, e.g. '0.1.0'."""
    return _s(lib.ferry_version())


def version_number():
    return int(lib.ferry_version_number())


# ---- hook verdicts ----

class _Continue:
    __slots__ = ()

    def __repr__(self):
        return "ferry.CONTINUE"


CONTINUE = _Continue()


class _Reject:
    __slots__ = ("status",)

    def __init__(self, status):
        self.status = int(status)

    def __repr__(self):
        return "ferry.reject(%d)" % self.status


class _Respond:
    __slots__ = ("status", "body", "content_type")

    def __init__(self, status, body, content_type):
        self.status = int(status)
        self.body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        self.content_type = content_type

    def __repr__(self):
        return "ferry.respond(%d, <%d bytes>)" % (self.status, len(self.body))


def reject(status=403):
    """Hook verdict: answer `status` (400-599) instead of proxying or passing the response on."""
    return _Reject(status)


def respond(status, body=b"", content_type="text/plain"):
    """on_request verdict: answer locally with status (200-599), body (str: UTF-8) and
    Content-Type (None: no Content-Type header)."""
    return _Respond(status, body, content_type)


# ---- transaction views ----

_tls = threading.local()


class Headers:
    """Case-insensitive, read-only view of one message's headers. Iterating yields
    (name, value) pairs in wire order; h[name] / h.get(name) give the first value."""

    __slots__ = ("_msg", "_part")

    def __init__(self, msg, part):
        self._msg = msg
        self._part = part

    def _txn(self):
        return self._msg._txn_ptr()

    def get(self, name, default=None):
        txn = self._txn()
        out = ffi.new("ferry_view *")
        if lib.ferry_txn_header_get(txn, self._part, _enc(name, "header name"), out) != lib.FERRY_OK:
            return default
        return _view(out[0])

    def get_all(self, name):
        lname = name.lower()
        return [v for n, v in self if n.lower() == lname]

    def __getitem__(self, name):
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name):
        return self.get(name) is not None

    def __len__(self):
        return int(lib.ferry_txn_header_count(self._txn(), self._part))

    def __iter__(self):
        return iter(self.items())

    def items(self):
        txn = self._txn()
        n = lib.ferry_txn_header_count(txn, self._part)
        h = ffi.new("ferry_http_header *")
        out = []
        for i in range(n):
            _check(lib.ferry_txn_header_at(txn, self._part, i, h), "header_at")
            out.append((_view(h.name), _view(h.value)))
        return out

    def keys(self):
        return [n for n, _ in self.items()]

    def __repr__(self):
        try:
            return "Headers(%r)" % (self.items(),)
        except StaleObjectError:
            return "Headers(<stale>)"


class _Message:
    _what = "message"
    _part = None

    def __init__(self, txn):
        self._txn = txn
        self._valid = True
        self.headers = Headers(self, self._part)

    def _txn_ptr(self):
        if not self._valid:
            raise StaleObjectError("ferry.%s" % type(self).__name__)
        return self._txn

    def _invalidate(self):
        self._valid = False
        self._txn = None

    @property
    def method(self):
        return _view(lib.ferry_txn_method(self._txn_ptr()))

    @property
    def target(self):
        """The request target as received, e.g. '/path?q=1'."""
        return _view(lib.ferry_txn_target(self._txn_ptr()))

    @property
    def client(self):
        """Textual client IP, e.g. '127.0.0.1'."""
        info = lib.ferry_txn_session(self._txn_ptr())
        return _s(info.client_addr) if info != ffi.NULL else ""

    @property
    def session_id(self):
        info = lib.ferry_txn_session(self._txn_ptr())
        return int(info.id) if info != ffi.NULL else 0

    @property
    def session(self):
        """The Session this message belongs to (forward listeners: dest_host, dest_port,
        user, proxy_protocol ...). Valid as long as the request/response is."""
        return Session(None, self)

    def set_header(self, name, value):
        """Replace every `name` header by one with `value` (FerryError EINVAL for bad
        names/values and for framing or hop-by-hop headers)."""
        _check(lib.ferry_txn_header_set(self._txn_ptr(), self._part, _enc(name, "header name"),
                                        _enc(value, "header value")), "set_header(%r)" % (name,))

    def add_header(self, name, value):
        _check(lib.ferry_txn_header_add(self._txn_ptr(), self._part, _enc(name, "header name"),
                                        _enc(value, "header value")), "add_header(%r)" % (name,))

    def remove_header(self, name):
        _check(lib.ferry_txn_header_remove(self._txn_ptr(), self._part,
                                           _enc(name, "header name")), "remove_header(%r)" % (name,))


class Request(_Message):
    """The request head, as on_request (and on_upstream_request) sees it. Valid only
    during the hook."""
    _part = 0  # FERRY_TXN_REQUEST

    def set_target(self, target):
        """Send the request upstream with this target instead ("/path?query", at most 8192
        bytes, no spaces or control bytes: else FerryError EINVAL). .target still gives
        the target as received. From on_request or on_upstream_request. With a router, a
        route with strip_prefix/add_prefix rewrites the path after on_request, replacing
        what on_request set (on_upstream_request runs after the router)."""
        _check(lib.ferry_txn_set_target(self._txn_ptr(), _cstr_latin1(target, "target")),
               "set_target(%r)" % (target,))

    def set_upstream_limits(self, connect_timeout_ms=None, response_timeout_ms=None,
                            max_body_bytes=None):
        """Per-request upstream limits overriding the listener's (None or 0 leaves a limit
        as it is). From on_request: the router applies its route's non-zero limits after
        the hook, so a route's own limits win."""
        def n(value, what):
            value = 0 if value is None else int(value)
            if value < 0:
                raise ValueError("%s must be >= 0" % what)
            return value
        _check(lib.ferry_txn_set_upstream_limits(
            self._txn_ptr(), n(connect_timeout_ms, "connect_timeout_ms"),
            n(response_timeout_ms, "response_timeout_ms"), n(max_body_bytes, "max_body_bytes")),
            "set_upstream_limits")

    def set_backend_host(self, on=True):
        """True: the request goes upstream with Host set to the chosen backend's address
        (False, the default: the client's Host). From on_request (on_upstream_request is
        too late: set the Host header there) with a pool listener; a router sets it from
        its route after on_request, so use the route's backend_host there."""
        _check(lib.ferry_txn_set_backend_host(self._txn_ptr(), 1 if on else 0),
               "set_backend_host")

    def __repr__(self):
        if not self._valid:
            return "<ferry.Request (stale)>"
        return "<ferry.Request %s %s>" % (self.method, self.target)


class Response(_Message):
    """The response head from upstream, as on_response sees it (.method/.target describe
    the request; the request headers are gone by then: libferry drops them once the head
    is sent upstream). Valid only during the hook."""
    _part = 1  # FERRY_TXN_RESPONSE

    @property
    def status(self):
        return int(lib.ferry_txn_status(self._txn_ptr()))

    def __repr__(self):
        if not self._valid:
            return "<ferry.Response (stale)>"
        return "<ferry.Response %d>" % self.status


_PROXY_PROTOCOLS = ("", "http", "connect", "socks4", "socks5", "socks5-udp")


def _proxy_protocol(value):
    value = int(value)
    return _PROXY_PROTOCOLS[value] if 0 <= value < len(_PROXY_PROTOCOLS) else "unknown"


class Session:
    """What a hook sees of a session (one client connection): on_accept, on_auth and
    on_route receive one, Request.session gives one. Valid only during the hook; later
    use raises StaleObjectError. Forward listeners fill proxy_protocol ("http",
    "connect", "socks4", "socks5", "socks5-udp"; "" before the request and on reverse
    listeners), dest_host, dest_port, method ("" for SOCKS) and user ("" if none). On
    SNI listeners dest_host is the ClientHello's server name ("" without one)."""

    __slots__ = ("_info", "_owner", "_valid")

    def __init__(self, info, owner=None):
        self._info = info
        self._owner = owner  # a Request: valid while it is
        self._valid = True

    def _p(self):
        if self._owner is not None:
            info = lib.ferry_txn_session(self._owner._txn_ptr())
            if info == ffi.NULL:
                raise FerryError(lib.FERRY_ESTATE, None, "request without a session")
            return info
        if not self._valid:
            raise StaleObjectError("ferry.Session")
        return self._info

    def _invalidate(self):
        self._valid = False
        self._info = None

    @property
    def id(self):
        return int(self._p().id)

    @property
    def worker(self):
        return int(self._p().worker)

    @property
    def listener(self):
        """The listener's name (its address unless name= was given)."""
        return _s(self._p().listener)

    @property
    def client_addr(self):
        """Textual client IP, e.g. '127.0.0.1' or '::1'."""
        return _s(self._p().client_addr)

    client = client_addr

    @property
    def client_port(self):
        return int(self._p().client_port)

    @property
    def proxy_protocol(self):
        return _proxy_protocol(self._p().proxy_protocol)

    @property
    def dest_host(self):
        """The destination as the client named it (a host name or an IP literal)."""
        return _s(self._p().dest_host)

    @property
    def dest_port(self):
        return int(self._p().dest_port)

    @property
    def method(self):
        return _s(self._p().method)

    @property
    def user(self):
        """The authenticated user, "" if none."""
        return _cred(self._p().user) or ""

    def __repr__(self):
        try:
            p = self.proxy_protocol
            dest = " %s %s:%d" % (p, self.dest_host, self.dest_port) if p else ""
            return "<ferry.Session %d %s:%d%s>" % (self.id, self.client_addr, self.client_port,
                                                    dest)
        except StaleObjectError:
            return "<ferry.Session (stale)>"


Parent = namedtuple("Parent", "name kind host port user")
Parent.__doc__ = """A parent proxy declared on a Forward policy: kind is "http" or "socks5";
user is "" without credentials (the password is never exposed)."""


def _parent_tuple(p):
    return Parent(_s(p.name), "socks5" if p.kind == lib.FERRY_PARENT_SOCKS5 else "http",
                  _s(p.host), int(p.port), _cred(p.user) or "")


class Target:
    """Where on_route's session goes; the hook may change it. Valid only during the hook.

    host, port: the destination (forward: as the client named it; with a parent, what
    the parent is asked for). Setting either drops a pool backend, so set both.
    parent: the parent proxy's name, or None for direct (forward listeners; setting a
    name looks it up in the listener's Forward policy; None or "direct" goes direct).
    backend: the pool backend's address the reverse policy picked, or None.
    attempt: 0 for the first try, 1, 2 ... after failed connects."""

    __slots__ = ("_t", "_fwd", "_valid", "attempt")

    def __init__(self, target, fwd, attempt):
        self._t = target
        self._fwd = fwd
        self._valid = True
        self.attempt = int(attempt)

    def _p(self):
        if not self._valid:
            raise StaleObjectError("ferry.Target")
        return self._t

    def _invalidate(self):
        self._valid = False
        self._t = None

    @property
    def host(self):
        return ffi.string(self._p().host).decode("utf-8", "replace")

    @host.setter
    def host(self, value):
        t = self._p()
        b = _cstr(value, "target host")
        if not b or len(b) >= lib.FERRY_HOST_MAX:
            raise ValueError("target host must be 1-%d bytes" % (lib.FERRY_HOST_MAX - 1))
        t.host = b
        t.backend = ffi.NULL

    @property
    def port(self):
        return int(self._p().port)

    @port.setter
    def port(self, value):
        t = self._p()
        value = int(value)
        if not 0 < value < 65536:
            raise ValueError("target port must be 1-65535, not %d" % value)
        t.port = value
        t.backend = ffi.NULL

    @property
    def parent(self):
        p = self._p().parent
        return None if p == ffi.NULL else _s(p.name)

    @parent.setter
    def parent(self, name):
        t = self._p()
        if name is None or (isinstance(name, str) and name.lower() == "direct"):
            t.parent = ffi.NULL
            return
        if self._fwd is None:
            raise FerryError(lib.FERRY_EINVAL, None,
                             "parents need a forward listener (this one has no Forward policy)")
        t.parent = self._fwd._parent_ptr(name)

    @property
    def backend(self):
        b = self._p().backend
        return None if b == ffi.NULL else _s(lib.ferry_backend_address(b))

    def __repr__(self):
        if not self._valid:
            return "<ferry.Target (stale)>"
        via = " via %s" % self.parent if self.parent else ""
        if self.backend:
            return "<ferry.Target backend %s>" % self.backend
        return "<ferry.Target %s:%d%s>" % (self.host, self.port, via)


def _log_dict(rec):
    info = rec.session
    d = {}
    if info != ffi.NULL:
        d.update(session_id=int(info.id), worker=int(info.worker), listener=_s(info.listener),
                 client=_s(info.client_addr), client_port=int(info.client_port),
                 proxy_protocol=_proxy_protocol(info.proxy_protocol),
                 dest_host=_s(info.dest_host), dest_port=int(info.dest_port),
                 user=_cred(info.user) or "")
    else:
        d.update(session_id=0, worker=0, listener="", client="", client_port=0,
                 proxy_protocol="", dest_host="", dest_port=0, user="")
    err = int(rec.error)
    d.update(
        target=_s(rec.target), verdict=_s(rec.verdict), error_code=err,
        error=_s(lib.ferry_err_name(err)),
        bytes_from_client=int(rec.bytes_from_client), bytes_to_client=int(rec.bytes_to_client),
        connect_us=int(rec.connect_us), duration_us=int(rec.duration_us),
        start_unix_us=int(rec.start_unix_us), connect_attempts=int(rec.connect_attempts),
        method=_view(rec.method), request_target=_view(rec.request_target),
        host=_view(rec.host), referer=_view(rec.referer), user_agent=_view(rec.user_agent),
        status=int(rec.status), first_byte_us=int(rec.first_byte_us),
        response_bytes=int(rec.response_bytes))
    return d


def _report(where):
    try:
        sys.stderr.write("ferry: exception in %s hook:\n" % where)
        traceback.print_exc()
    except Exception:
        pass


def _verdict_error(txn, status):
    lib.ferry_txn_set_reject_status(txn, status)
    return lib.FERRY_REJECT


def _make_txn_cb(fn, wrap, phase, can_respond):
    """A C verdict callback around a Python hook: the wrapper object dies with the call,
    and any exception becomes a logged traceback and a 500."""
    allowed = "None, ferry.CONTINUE, ferry.reject()" + (" or ferry.respond()" if can_respond else "")

    def cb(user_data, txn):
        _tls.in_hook = True
        obj = wrap(txn)
        try:
            v = fn(obj)
            if v is None or v is CONTINUE:
                return lib.FERRY_CONTINUE
            if isinstance(v, _Reject):
                _check(lib.ferry_txn_set_reject_status(txn, v.status),
                       "reject(%d): status must be 400-599" % v.status)
                return lib.FERRY_REJECT
            if can_respond and isinstance(v, _Respond):
                ct = ffi.NULL if v.content_type is None else _enc(v.content_type, "content_type")
                _check(lib.ferry_txn_respond(txn, v.status, ct, v.body, len(v.body)),
                       "respond(%d)" % v.status)
                return lib.FERRY_RESPOND
            raise TypeError("%s must return %s, not %r" % (phase, allowed, v))
        except BaseException:
            _report(phase)
            return _verdict_error(txn, 500)
        finally:
            obj._invalidate()
            _tls.in_hook = False
    return ffi.callback("ferry_verdict(void *, ferry_txn *)", cb, error=lib.FERRY_REJECT)


def _make_request_cb(fn):
    return _make_txn_cb(fn, Request, "on_request", True)


def _make_response_cb(fn):
    return _make_txn_cb(fn, Response, "on_response", False)


def _make_upstream_request_cb(fn):
    return _make_txn_cb(fn, Request, "on_upstream_request", False)


def _make_accept_cb(fn):
    """on_accept(session): None/CONTINUE goes on, reject() closes the connection; an
    exception (logged) closes it too."""
    def cb(user_data, info):
        _tls.in_hook = True
        session = Session(info)
        try:
            v = fn(session)
            if v is None or v is CONTINUE:
                return lib.FERRY_CONTINUE
            if isinstance(v, _Reject):
                return lib.FERRY_REJECT
            raise TypeError("on_accept must return None, ferry.CONTINUE or ferry.reject(), "
                            "not %r" % (v,))
        except BaseException:
            _report("on_accept")
            return lib.FERRY_REJECT
        finally:
            session._invalidate()
            _tls.in_hook = False
    return ffi.callback("ferry_verdict(void *, const ferry_session_info *)", cb,
                        error=lib.FERRY_REJECT)


def _make_auth_cb(fn):
    """on_auth(session, user, password) -> bool: True accepts; False, None or reject()
    refuse (HTTP 407, SOCKS failure); any other value or an exception (logged) refuses."""
    def cb(user_data, info, user, password):
        _tls.in_hook = True
        session = Session(info)
        try:
            v = fn(session, _cred(user), _cred(password) or "")
            if v is True or v is CONTINUE:
                return lib.FERRY_CONTINUE
            if v is False or v is None or isinstance(v, _Reject):
                return lib.FERRY_REJECT
            raise TypeError("on_auth must return True or False, not %r" % (v,))
        except BaseException:
            _report("on_auth")
            return lib.FERRY_REJECT
        finally:
            session._invalidate()
            _tls.in_hook = False
    return ffi.callback("ferry_verdict(void *, const ferry_session_info *, const char *, "
                        "const char *)", cb, error=lib.FERRY_REJECT)


def _make_route_cb(fn, fwd):
    """on_route(session, target): None/CONTINUE keeps the (possibly edited) target,
    reject() refuses, a str picks the parent of that name ("direct": none), a
    (host, port) pair rewrites the destination. Anything else or an exception (logged)
    refuses."""
    def cb(user_data, info, attempt, target):
        _tls.in_hook = True
        session = Session(info)
        t = Target(target, fwd, attempt)
        try:
            v = fn(session, t)
            if v is None or v is CONTINUE:
                return lib.FERRY_CONTINUE
            if isinstance(v, _Reject):
                return lib.FERRY_REJECT
            if isinstance(v, str):
                t.parent = v
                return lib.FERRY_CONTINUE
            if isinstance(v, tuple) and len(v) == 2:
                t.host, t.port = v
                return lib.FERRY_CONTINUE
            raise TypeError("on_route must return None, ferry.CONTINUE, ferry.reject(), a "
                            "parent name or a (host, port) pair, not %r" % (v,))
        except BaseException:
            _report("on_route")
            return lib.FERRY_REJECT
        finally:
            t._invalidate()
            session._invalidate()
            _tls.in_hook = False
    return ffi.callback("ferry_verdict(void *, const ferry_session_info *, unsigned, "
                        "ferry_target *)", cb, error=lib.FERRY_REJECT)


_HOOK_MAKERS = {
    "on_accept": _make_accept_cb,
    "on_auth": _make_auth_cb,
    "on_route": _make_route_cb,
    "on_request": _make_request_cb,
    "on_upstream_request": _make_upstream_request_cb,
    "on_response": _make_response_cb,
}


# ---- forward policy ----

_ANONYMITY = {"transparent": 0, "anonymous": 1, "strict": 2}
_FORWARD_PROTOCOLS = {"http": ("http", 1), "socks": ("socks", 2),
                      "http,socks": ("http,socks", 3), "socks,http": ("http,socks", 3)}


def _items(value, split=False):
    """None -> [], a str -> [it] (or its comma-separated parts), else list(value)."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        value = [value]
    out = []
    for v in value:
        if split and isinstance(v, str):
            out.extend(x.strip() for x in v.split(",") if x.strip())
        else:
            out.append(v)
    return out


class Forward:
    """A forward policy (a ferry_forward): who may use the proxy, what they may reach,
    through which parent, how much of the client the origin sees. See
    include/ferry/forward.h and doc/forward-config.md.

    Configure it first (constructor keywords, a config file, the methods below), then
    hand it to Engine.forward(policy=...) -- several listeners, even of several engines,
    may share one. Once a listener uses it, it is read-only (setters raise FerryError
    ESTATE). It is freed by close() (refused while an engine that uses it is alive), by
    the last engine using it when that engine created it, or by the garbage collector.

    Keywords are applied in this order, after the config file: allow_client, allow_dest,
    connect_ports, anonymity, header_allow, users, users_file, parents, routes, rules,
    clock."""

    def __init__(self, config=None, *, rules=None, allow_client=None, allow_dest=None,
                 connect_ports=None, anonymity=None, header_allow=None, users=None,
                 users_file=None, parents=None, routes=None, clock=None):
        out = ffi.new("ferry_forward **")
        _check(lib.ferry_forward_new(ffi.NULL, out), "ferry_forward_new")
        self._ptr = out[0]
        self._uses = 0          # listeners of live engines using it
        self._frozen = False
        self._auto_close = False
        self._clock = None      # the clock callback, alive as long as the policy
        try:
            if config is not None:
                self.load_config(config)
            for cidr in _items(allow_client, split=True):
                self.allow_client(cidr)
            for cidr in _items(allow_dest, split=True):
                self.allow_dest(cidr)
            if connect_ports is not None:
                self.set_connect_ports(connect_ports)
            if anonymity is not None:
                self.set_anonymity(anonymity)
            if header_allow is not None:
                self.set_header_allow(header_allow)
            for user, password in (users or {}).items():
                self.add_user(user, password)
            for path in _items(users_file):
                self.load_users(path)
            for pname, url in (parents or {}).items():
                self.add_parent(pname, url)
            for pattern, via in _items(routes) if not isinstance(routes, dict) else routes.items():
                self.add_route(pattern, via)
            for rule in _items(rules):
                self.add_rule(rule)
            if clock is not None:
                self.set_clock(clock)
        except BaseException:
            self.close()
            raise

    # -- state --

    def _live(self):
        if self._ptr is None:
            raise FerryError(lib.FERRY_ESTATE, None, "forward policy is closed")
        return self._ptr

    def _mutable(self):
        ptr = self._live()
        if self._frozen:
            raise FerryError(lib.FERRY_ESTATE, None,
                             "forward policy is in use by a listener: configure it before "
                             "listening")
        return ptr

    def _attach(self):
        self._live()
        self._frozen = True
        self._uses += 1

    def _detach(self):
        self._uses -= 1
        if self._uses == 0 and self._auto_close:
            self.close()

    @property
    def closed(self):
        return self._ptr is None

    def close(self):
        """Free the policy. Idempotent; FerryError ESTATE while a live engine uses it."""
        if self._ptr is None:
            return
        if self._uses:
            raise FerryError(lib.FERRY_ESTATE, None,
                             "forward policy is in use by %d listener(s) of live engines"
                             % self._uses)
        ptr, self._ptr = self._ptr, None
        lib.ferry_forward_free(ptr)
        self._clock = None

    def __del__(self):
        try:
            if self._ptr is not None and not self._uses:
                self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- configuration --

    def _with_err(self, call, context, *args):
        buf = ffi.new("char[]", 1024)
        err = call(self._mutable(), *args, buf, len(buf))
        if err != lib.FERRY_OK:
            msg = ffi.string(buf).decode("utf-8", "replace") or None
            raise FerryError(err, context, msg)

    def load_config(self, path):
        """Read a forwardd configuration file (doc/forward-config.md). Errors raise
        FerryError ECONFIG whose message is "path:line: what". What was applied before an
        error stays applied: discard the policy (close()) on error."""
        self._with_err(lib.ferry_forward_load_config, None, _cstr(path, "config path"))

    def parse_config(self, text, name="<string>"):
        """The same from a string; `name` stands for the file name in messages."""
        data = _cstr(text, "config text") if not isinstance(text, bytes) else text
        self._with_err(lib.ferry_forward_parse_config, None, data, len(data),
                       _cstr(name, "name"))

    def add_rule(self, rule):
        """Append an access rule: "allow|deny [CONDITION ...]" (first match wins)."""
        self._with_err(lib.ferry_forward_add_rule, "rule %r" % (rule,), _cstr(rule, "rule"))

    def allow_client(self, cidr):
        """Allow clients from CIDR; the first call replaces the loopback+private default."""
        _check(lib.ferry_forward_allow_client(self._mutable(), _cstr(cidr, "cidr")),
               "allow_client(%r)" % (cidr,))

    def allow_dest(self, cidr):
        """Lift the refused-destination default (loopback, link-local ...) for CIDR."""
        _check(lib.ferry_forward_allow_dest(self._mutable(), _cstr(cidr, "cidr")),
               "allow_dest(%r)" % (cidr,))

    def set_connect_ports(self, ports):
        """Ports CONNECT may reach: "443,8443", "443,1024-65535", an int or a list."""
        if isinstance(ports, int):
            ports = str(ports)
        elif not isinstance(ports, (str, bytes)):
            ports = ",".join(str(p) for p in ports)
        _check(lib.ferry_forward_set_connect_ports(self._mutable(), _cstr(ports, "ports")),
               "connect_ports(%r)" % (ports,))

    def set_anonymity(self, level):
        """"transparent", "anonymous" (the default) or "strict"."""
        if level not in _ANONYMITY:
            raise ValueError("anonymity must be transparent, anonymous or strict, not %r"
                             % (level,))
        _check(lib.ferry_forward_set_anonymity(self._mutable(), _ANONYMITY[level]),
               "anonymity(%r)" % (level,))

    def set_header_allow(self, names):
        """Request headers strict anonymity keeps: "Accept,User-Agent" or a list."""
        if not isinstance(names, (str, bytes)):
            names = ",".join(names)
        _check(lib.ferry_forward_set_header_allow(self._mutable(), _cstr(names, "names")),
               "header_allow(%r)" % (names,))

    def add_user(self, user, password):
        """Require credentials and accept this user."""
        _check(lib.ferry_forward_add_user(self._mutable(), _cstr(user, "user"),
                                          _cstr(password, "password")),
               "add_user(%r)" % (user,))

    def load_users(self, path):
        """Load "user:password" lines; requires credentials. Errors name file:line."""
        self._with_err(lib.ferry_forward_load_users, None, _cstr(path, "users file"))

    def add_parent(self, name, url):
        """Declare a parent proxy: "http://[user:pass@]host:port" or "socks5://..."."""
        self._with_err(lib.ferry_forward_add_parent, "parent %r" % (name,),
                       _cstr(name, "parent name"), _cstr(url, "parent url"))

    def add_route(self, pattern, parents):
        """Send destinations matching pattern (exact, .suffix, glob or "*") through the
        named parents, in failover order ("p1,p2,direct" or a list)."""
        if not isinstance(parents, (str, bytes)):
            parents = ",".join(parents)
        self._with_err(lib.ferry_forward_add_route, "route %r" % (pattern,),
                       _cstr(pattern, "route pattern"), _cstr(parents, "route parents"))

    def set_clock(self, clock):
        """Replace the wall clock of time-window rules (for tests): a callable returning
        Unix seconds (int or float), called on worker threads; None: the system clock.
        If it raises, the traceback is printed and the system clock is used."""
        ptr = self._mutable()
        if clock is None:
            lib.ferry_forward_set_clock(ptr, ffi.NULL, ffi.NULL)
            self._clock = None
            return
        if not callable(clock):
            raise TypeError("clock must be callable")

        def cb(user_data):
            prev = getattr(_tls, "in_hook", False)
            _tls.in_hook = True
            try:
                return int(clock())
            except BaseException:
                _report("clock")
                return int(time.time())
            finally:
                _tls.in_hook = prev
        c = ffi.callback("ferry_clock_fn", cb, error=-1)
        lib.ferry_forward_set_clock(ptr, c, ffi.NULL)
        self._clock = c

    # -- queries --

    def _parent_ptr(self, name):
        p = lib.ferry_forward_parent(self._live(), _cstr(name, "parent name"))
        if p == ffi.NULL:
            raise FerryError(lib.FERRY_EINVAL, None, "no parent named %r" % (name,))
        return p

    def parent(self, name):
        """The parent declared under name, as a ferry.Parent, or None."""
        p = lib.ferry_forward_parent(self._live(), _cstr(name, "parent name"))
        return None if p == ffi.NULL else _parent_tuple(p)

    @property
    def listen(self):
        """`listen` addresses of a config file (the program opens the listeners)."""
        ptr = self._live()
        return [_s(lib.ferry_forward_listen_at(ptr, i))
                for i in range(lib.ferry_forward_listen_count(ptr))]

    @property
    def workers(self):
        """`workers` of a config file, 0 when not given."""
        return int(lib.ferry_forward_workers(self._live()))

    @property
    def access_log(self):
        """`access-log` of a config file, None when not given."""
        v = lib.ferry_forward_access_log(self._live())
        return None if v == ffi.NULL else _s(v)

    @property
    def is_open(self):
        """True if clients from anywhere may use the proxy without credentials."""
        return bool(lib.ferry_forward_is_open(self._live()))

    def __repr__(self):
        if self._ptr is None:
            return "<ferry.Forward (closed)>"
        return "<ferry.Forward%s%s>" % (" in use" if self._uses else "",
                                        " OPEN" if self.is_open else "")


def _make_log_cb(fn):
    def cb(user_data, rec):
        _tls.in_hook = True
        try:
            fn(_log_dict(rec))
        except BaseException:
            _report("on_log")
        finally:
            _tls.in_hook = False
    return ffi.callback("void(void *, const ferry_log_record *)", cb)


# ---- reverse side: pools and routers ----

_BALANCE = {"roundrobin": 0, "round-robin": 0, "leastconn": 1, "least-conn": 1,
            "random2": 2, "hash-client": 3, "hash-ip": 3, "hash-uri": 4}
_BALANCE_KEYED = {"hash-header": 5, "hash-cookie": 6}
_HEALTH_KINDS = {"none": 0, "tcp": 1, "http": 2}
_HEALTH_KEYS = frozenset(("kind", "path", "host", "interval_ms", "timeout_ms", "rise", "fall",
                          "status_min", "status_max", "status"))


def _balance(spec):
    """(ferry_balance, key or None) from "roundrobin", "hash-header:X-User",
    ("hash-cookie", "sid") ..."""
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2:
            raise ValueError("balance must be a name or a (kind, key) pair, not %r" % (spec,))
        kind, key = spec
    else:
        kind, _, key = str(spec).partition(":")
        key = key or None
    kind = str(kind).lower()
    if kind in _BALANCE:
        if key:
            raise ValueError("balance %r takes no key" % (kind,))
        return _BALANCE[kind], None
    if kind in _BALANCE_KEYED:
        if not key:
            raise ValueError("balance %r needs a %s name: (%r, NAME)"
                             % (kind, kind.split("-")[1], kind))
        return _BALANCE_KEYED[kind], key
    raise ValueError("balance must be roundrobin, leastconn, random2, hash-client, hash-uri, "
                     "('hash-header', NAME) or ('hash-cookie', NAME), not %r" % (spec,))


class Backend:
    """One member of a Pool (a ferry_backend). .address is as added; .weight and
    .draining may be set, also while the engine runs; .down (by a failed connect or the
    health check), .active (sessions or requests using it now) and .removed are read-only.
    The handle stays usable until the engine is closed; after Pool.remove() setting
    .weight or .draining raises FerryError ESTATE."""

    __slots__ = ("_ptr", "pool", "address", "_removed", "__weakref__")

    def __init__(self, pool, ptr, address):
        self._ptr = ptr
        self.pool = pool
        self.address = address
        self._removed = False

    def _call(self, fn, *args):
        return self.pool._engine._locked(lambda: fn(self._p(), *args))

    def _p(self):
        if self._ptr is None:
            raise FerryError(lib.FERRY_ESTATE, None, "backend's engine is closed")
        return self._ptr

    @property
    def weight(self):
        return int(self._call(lib.ferry_backend_weight))

    @weight.setter
    def weight(self, value):
        value = int(value)
        _check(self._call(lib.ferry_backend_set_weight, value),
               "backend %s: weight %d (1-1000)" % (self.address, value))

    @property
    def draining(self):
        return bool(self._call(lib.ferry_backend_is_draining))

    @draining.setter
    def draining(self, value):
        _check(self._call(lib.ferry_backend_set_draining, 1 if value else 0),
               "backend %s: draining" % self.address)

    @property
    def down(self):
        return bool(self._call(lib.ferry_backend_is_down))

    @property
    def active(self):
        return int(self._call(lib.ferry_backend_active))

    @property
    def removed(self):
        return self._removed

    def __repr__(self):
        if self._ptr is None:
            return "<ferry.Backend %s (engine closed)>" % self.address
        if self._removed:
            return "<ferry.Backend %s removed>" % self.address
        flags = "".join((" down" if self.down else "", " draining" if self.draining else ""))
        return "<ferry.Backend %s weight=%d active=%d%s>" % (self.address, self.weight,
                                                              self.active, flags)


class Pool:
    """A backend pool (a ferry_pool) of an Engine, made by Engine.pool(); freed with the
    engine. Balancer, health check, down time and resolve interval are set when it is
    made (before start()); backends may be added, removed, drained and re-weighted at any
    time, also while the engine runs (add() not from a hook: it may resolve a name)."""

    def __init__(self, engine, ptr, name):
        self._engine = engine
        self._ptr = ptr
        self.name = name
        self._backends = []     # in service or draining; removed ones are dropped
        self._handles = []      # every Backend made, removed ones too (engine-owned)
        self._lock = threading.Lock()

    def _p(self):
        if self._ptr is None:
            raise FerryError(lib.FERRY_ESTATE, None, "pool's engine is closed")
        return self._ptr

    def _closed(self):
        self._ptr = None
        for b in self._handles:
            b._ptr = None

    # -- configuration (before start) --

    def set_balance(self, balance):
        kind, key = _balance(balance)
        _check(self._engine._locked(lambda: lib.ferry_pool_set_balancer(
            self._p(), kind, ffi.NULL if key is None else _cstr_latin1(key, "balance key"))),
            "pool %s: balance %r" % (self.name, balance))

    def set_health_check(self, health):
        """None/False/"none": no active checks; "tcp"; "/path" (HTTP GET); or a dict of
        ferry_health_opts fields: kind ("tcp"/"http"; default "http" with a path, else
        "tcp"), path, host, interval_ms, timeout_ms, rise, fall, status_min, status_max
        (or status=(min, max))."""
        h, owner = _new_opts("ferry_health_opts")
        lib.ferry_health_opts_init(h)
        keep = []
        if health is None or health is False:
            spec = {"kind": "none"}
        elif isinstance(health, str):
            spec = {"path": health} if health.startswith("/") else {"kind": health}
        elif isinstance(health, dict):
            spec = dict(health)
        else:
            raise TypeError("health must be None, 'tcp', '/path' or a dict, not %r" % (health,))
        unknown = set(spec) - _HEALTH_KEYS
        if unknown:
            raise TypeError("unknown health option(s): %s" % ", ".join(sorted(unknown)))
        kind = str(spec.pop("kind", "http" if spec.get("path") else "tcp")).lower()
        if kind not in _HEALTH_KINDS:
            raise ValueError("health kind must be tcp, http or none, not %r" % (kind,))
        h.kind = _HEALTH_KINDS[kind]
        if "status" in spec:
            spec["status_min"], spec["status_max"] = spec.pop("status")
        for key, value in spec.items():
            if value is None:
                continue
            if key in ("path", "host"):
                c = ffi.new("char[]", _cstr_latin1(value, "health " + key))
                keep.append(c)
                setattr(h, key, c)
            else:
                setattr(h, key, int(value))
        _check(self._engine._locked(lambda: lib.ferry_pool_set_health_check(self._p(), h)),
               "pool %s: health check" % self.name)

    def set_sticky_cookie(self, name, secret=None):
        """HTTP cookie stickiness: requests carrying cookie `name` that names a backend
        of the pool go there while it is up (draining included); other responses get
        Set-Cookie naming the backend that served. The value is a keyed hash of the pool
        name and backend address under `secret` (stable across restarts; never the
        address). The cookie is not sent upstream. name None or "": off."""
        _check(self._engine._locked(lambda: lib.ferry_pool_set_sticky_cookie(
            self._p(), ffi.NULL if not name else _cstr_latin1(name, "sticky cookie name"),
            ffi.NULL if secret is None else _cstr(secret, "sticky cookie secret"))),
            "pool %s: sticky cookie %r" % (self.name, name))

    def set_down_time(self, ms):
        """How long a backend whose connect failed is skipped (default 2000; 0: never)."""
        _check(self._engine._locked(lambda: lib.ferry_pool_set_down_time(self._p(), int(ms))),
               "pool %s: down time" % self.name)

    def set_passive_checks(self, fails=1, responses=False, http_5xx=False):
        """Skip a backend for the down time after `fails` failures in a row: failed
        connects, and with responses=True requests without a usable response (closed,
        timed out, malformed), with http_5xx=True 5xx responses."""
        flags = (lib.FERRY_PASSIVE_CONNECT | (lib.FERRY_PASSIVE_RESPONSES if responses else 0)
                 | (lib.FERRY_PASSIVE_5XX if http_5xx else 0))
        _check(self._engine._locked(lambda: lib.ferry_pool_set_passive_checks(
            self._p(), int(fails), flags)), "pool %s: passive checks" % self.name)

    def set_resolve_interval(self, ms):
        """How often backends given by name are resolved again (0: never)."""
        _check(self._engine._locked(
            lambda: lib.ferry_pool_set_resolve_interval(self._p(), int(ms))),
            "pool %s: resolve interval" % self.name)

    # -- membership (any time) --

    def add(self, address, weight=1):
        """Add a backend "IP:PORT", "[V6]:PORT" or "NAME:PORT" (a name is resolved now,
        blocking) with weight 1-1000; returns its Backend. Also while the engine runs;
        not from a hook."""
        if getattr(_tls, "in_hook", False):
            raise FerryError(lib.FERRY_ESTATE, None,
                             "Pool.add() called from a hook (it may block on DNS)")
        addr = _cstr_latin1(address, "backend address")
        text = addr.decode("latin-1")
        out = ffi.new("ferry_backend **")

        def locked():  # the engine's lock first, then the pool's (hooks take only this one)
            with self._lock:
                _check(lib.ferry_pool_add(self._p(), addr, int(weight), out),
                       "pool %s: backend %r" % (self.name, text))
                b = Backend(self, out[0], text)
                self._backends.append(b)
                self._handles.append(b)
                return b
        return self._engine._locked(locked)

    def remove(self, backend):
        """Take a backend (a Backend, or the address of one) out of the pool: no new
        sessions; live ones finish. It cannot be put back: add the address again."""
        def locked(backend=backend):
            with self._lock:
                if not isinstance(backend, Backend):
                    found = [b for b in self._backends if b.address == backend]
                    if not found:
                        raise FerryError(lib.FERRY_EINVAL, None,
                                         "pool %s has no backend %r" % (self.name, backend))
                    backend = found[0]
                if backend.pool is not self:
                    raise FerryError(lib.FERRY_EINVAL, None, "%r belongs to pool %s, not %s"
                                     % (backend, backend.pool.name, self.name))
                _check(lib.ferry_pool_remove(self._p(), backend._p()),
                       "pool %s: remove %s" % (self.name, backend.address))
                backend._removed = True
                self._backends = [b for b in self._backends if b is not backend]
        self._engine._locked(locked)

    def backend(self, address):
        """The Backend in the pool with this address, or None."""
        for b in self.backends:
            if b.address == address:
                return b
        return None

    @property
    def backends(self):
        """Backends in the pool now (draining ones included, removed ones not)."""
        with self._lock:
            return list(self._backends)

    def __iter__(self):
        return iter(self.backends)

    def __len__(self):
        return int(self._engine._locked(lambda: lib.ferry_pool_size(self._p())))

    def __repr__(self):
        if self._ptr is None:
            return "<ferry.Pool %s (engine closed)>" % self.name
        return "<ferry.Pool %s %s>" % (self.name, [b.address for b in self.backends])


_MATCH = {"prefix": 0, "exact": 1, "regex": 2}
_ROUTE_STR = ("host", "path", "strip_prefix", "add_prefix", "name", "cookie_domain",
              "public_cookie_domain")
_ROUTE_INT = ("connect_timeout_ms", "response_timeout_ms", "max_body_bytes")
_ROUTE_KEYS = frozenset(_ROUTE_STR + _ROUTE_INT + (
    "match", "methods", "pool", "backend_host", "set_headers", "remove_headers",
    "substitutions", "substitute_icase"))


def _no_newline(value, what):
    if "\n" in value or "\r" in value:
        raise ValueError("%s must not contain CR or LF: %r" % (what, value))
    return value


def _header_lines(headers):
    """{"X-A": "1"} / [("X-A", "1")] / "X-A: 1\\nX-B: 2" -> "X-A: 1\\nX-B: 2"."""
    if isinstance(headers, (str, bytes)):
        return headers
    items = headers.items() if isinstance(headers, dict) else headers
    lines = []
    for name, value in items:
        name, value = _no_newline(str(name), "header name"), _no_newline(str(value),
                                                                            "header value")
        if ":" in name:
            raise ValueError("header name must not contain ':': %r" % (name,))
        lines.append("%s: %s" % (name, value))
    return "\n".join(lines)


def _substitution_lines(subs):
    """{"from": "to"} / [("from", "to")] / "from=>to\\n..." -> "from=>to\\n..."."""
    if isinstance(subs, (str, bytes)):
        return subs
    items = subs.items() if isinstance(subs, dict) else subs
    lines = []
    for old, new in items:
        old, new = _no_newline(str(old), "substitution"), _no_newline(str(new), "substitution")
        if "=>" in old:
            raise ValueError("substituted text must not contain '=>': %r" % (old,))
        lines.append("%s=>%s" % (old, new))
    return "\n".join(lines)


def _name_list(value, what):
    """"A,B" / ["A", "B"] -> "A,B"."""
    if isinstance(value, (str, bytes)):
        return value
    out = []
    for v in value:
        v = str(v)
        if "," in v:
            raise ValueError("%s must not contain ',': %r" % (what, v))
        out.append(v)
    return ",".join(out)


class Router:
    """A routing table (a ferry_router) of an Engine, made by Engine.router(): routes by
    virtual host, then path (exact, regular expression, longest prefix), then method, to
    pools; see include/ferry/router.h. Add routes before start(); the engine frees it
    after itself. Use it with Engine.reverse_http(router=...) or reverse_sni(router=...)."""

    def __init__(self, engine, ptr):
        self._engine = engine
        self._ptr = ptr
        self.routes = []   # the routes as added (normalized dicts)

    def _p(self):
        if self._ptr is None:
            raise FerryError(lib.FERRY_ESTATE, None, "router's engine is closed")
        return self._ptr

    def _free(self):
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            lib.ferry_router_free(ptr)

    def add(self, route=None, **kw):
        """Append a route, given as a dict or as keywords:

        host ("example.com", "*.example.com", None/"*": any), path (default "/"),
        match ("prefix" (whole segments; default), "exact" or "regex" (POSIX ERE)),
        methods ("GET,HEAD" or a list), pool (a Pool of this engine, or backends as for
        Engine.pool(): a new round-robin pool), strip_prefix, add_prefix, backend_host
        (True: Host becomes the backend's address), set_headers ({name: value}),
        remove_headers (a list or "A,B"), connect_timeout_ms, response_timeout_ms,
        max_body_bytes (0: the listener's), name (for logs), cookie_domain and
        public_cookie_domain (Set-Cookie Domain mapping, with rewrite_responses),
        substitutions ({from: to}, response body text) and substitute_icase.
        Errors raise FerryError ECONFIG naming the problem."""
        spec = dict(route or {}, **kw)
        unknown = set(spec) - _ROUTE_KEYS
        if unknown:
            raise TypeError("unknown route option(s): %s" % ", ".join(sorted(unknown)))
        engine = self._engine
        if engine._started:
            raise FerryError(lib.FERRY_ESTATE, None,
                             "routes are added before Engine.start() (the router is shared "
                             "read-only by the workers)")
        self._p()
        pool = spec.get("pool")
        if pool is None:
            raise TypeError("a route needs a pool")
        if not isinstance(pool, Pool):
            pool = spec["pool"] = engine.pool(None, pool)
        elif pool._engine is not engine:
            raise FerryError(lib.FERRY_EINVAL, None, "%r belongs to another engine" % (pool,))
        o, owner = _new_opts("ferry_route_opts")
        lib.ferry_route_opts_init(o)
        keep = []

        def c(value, what):
            b = ffi.new("char[]", _cstr(value, what))
            keep.append(b)
            return b

        for key in _ROUTE_STR:
            if spec.get(key) is not None:
                setattr(o, key, c(spec[key], key))
        for key in _ROUTE_INT:
            if spec.get(key) is not None:
                setattr(o, key, int(spec[key]))
        match = spec.get("match") or "prefix"
        if match not in _MATCH:
            raise ValueError("match must be prefix, exact or regex, not %r" % (match,))
        o.match = _MATCH[match]
        if spec.get("methods"):
            o.methods = c(_name_list(spec["methods"], "method"), "methods")
        if spec.get("set_headers"):
            o.set_headers = c(_header_lines(spec["set_headers"]), "set_headers")
        if spec.get("remove_headers"):
            o.remove_headers = c(_name_list(spec["remove_headers"], "header name"),
                                 "remove_headers")
        if spec.get("substitutions"):
            o.substitutions = c(_substitution_lines(spec["substitutions"]), "substitutions")
        o.substitute_icase = 1 if spec.get("substitute_icase") else 0
        o.backend_host = 1 if spec.get("backend_host") else 0
        o.pool = pool._p()
        buf = ffi.new("char[]", 512)
        err = engine._locked(lambda: lib.ferry_router_add(self._p(), o, buf, len(buf)))
        if err != lib.FERRY_OK:
            raise FerryError(err, "route %d" % (len(self.routes) + 1),
                             ffi.string(buf).decode("utf-8", "replace") or None)
        spec["pool"] = pool
        self.routes.append(spec)
        return spec

    def __len__(self):
        return int(lib.ferry_router_size(self._p()))

    def __repr__(self):
        if self._ptr is None:
            return "<ferry.Router (engine closed)>"
        return "<ferry.Router %d routes>" % len(self.routes)


# ---- engine ----

class Listener:
    """A bound listener; .port is the actual port (useful with port 0). .direction is
    "reverse" or "forward"; forward listeners carry their Forward in .policy, reverse
    ones their Pool in .pool or their Router in .router (the other is None)."""

    def __init__(self, engine, ptr, address, protocol, direction="reverse", policy=None,
                 pool=None, router=None):
        self._engine = weakref.ref(engine)
        self._ptr = ptr
        self.address = address
        self.protocol = protocol
        self.direction = direction
        self.policy = policy
        self.pool = pool
        self.router = router
        self.port = int(lib.ferry_listener_port(ptr))

    def __repr__(self):
        return "<ferry.Listener %s %s %s port=%d>" % (self.direction, self.protocol,
                                                      self.address, self.port)


_live_engines = weakref.WeakSet()


class Engine:
    """A ferry engine (worker threads with their event loops). Use as a context manager,
    or call close() when done. Listeners are added before start()."""

    _LISTENER_OPTS = frozenset(
        name for name, f in ffi.typeof("ferry_listener_opts").fields
        if f.type.kind == "primitive")
    # String options (comma-separated lists may be given as lists).
    _LISTENER_STR_OPTS = frozenset(
        name for name, f in ffi.typeof("ferry_listener_opts").fields
        if f.type.kind == "pointer" and f.type.item.cname == "char"
        and name not in ("address", "name"))

    def __init__(self, workers=1, _opts=None):
        opts = _opts
        if opts is None:
            opts = ffi.new("ferry_engine_opts *")
            lib.ferry_engine_opts_init(opts)
            opts.workers = int(workers)
        out = ffi.new("ferry_engine **")
        _check(lib.ferry_engine_new(opts, out), "ferry_engine_new")
        self._ptr = out[0]
        self._reverse_configs = []  # reverse configuration handles: freed after the engine
        self._keep = []  # hook ops, callbacks and strings that must outlive the C engine
        self._listeners = []
        self._policies = []  # Forward policies of our listeners: freed after the engine
        self._pools = []     # Pool objects (the C pools are freed with the engine)
        self._routers = []   # Router objects: freed after the engine
        self._lock = threading.Lock()  # close() vs. other threads using pools/backends
        self._started = False
        self._predecessor = None  # take_listeners(): kept alive while we may listen
        _live_engines.add(self)

    def _engine(self):
        if self._ptr is None:
            raise FerryError(lib.FERRY_ESTATE, None, "engine is closed")
        return self._ptr

    def _locked(self, fn):
        """fn() with the engine alive throughout: outside hooks, under the lock close()
        takes; inside a hook the engine cannot be freed before the hook returns (close()
        joins the workers), so no lock is taken there."""
        if getattr(_tls, "in_hook", False):
            self._engine()
            return fn()
        with self._lock:
            self._engine()
            return fn()

    # -- pools and routers --

    def pool(self, name=None, backends=(), *, balance=None, health=None, down_time_ms=None,
             resolve_interval_ms=None, sticky_cookie=None, passive=None):
        """A backend Pool owned by this engine (before start()).

        backends: "IP:PORT" / "NAME:PORT" strings or (address, weight) pairs.
        balance: "roundrobin" (default), "leastconn", "random2", "hash-client",
        "hash-uri", ("hash-header", NAME) or ("hash-cookie", NAME) (also "hash-header:NAME").
        health: None, "tcp", "/path", or dict(kind="http"|"tcp", path=, host=,
        interval_ms=, timeout_ms=, rise=, fall=, status_min=, status_max=).
        down_time_ms: how long a failed backend is skipped (default 2000).
        resolve_interval_ms: re-resolution of named backends (0: never).
        sticky_cookie: HTTP stickiness by a cookie: NAME or (NAME, SECRET) (see
        Pool.set_sticky_cookie).
        passive: dict(fails=, responses=, http_5xx=) (see Pool.set_passive_checks)."""
        if isinstance(backends, (str, bytes)):
            backends = [backends]
        if name is None:
            name = "pool%d" % (len(self._pools) + 1)
        out = ffi.new("ferry_pool **")
        _check(self._locked(lambda: lib.ferry_pool_new(self._engine(),
                                                       _cstr(name, "pool name"), out)),
               "pool %r" % (name,))
        p = Pool(self, out[0], name if isinstance(name, str) else name.decode("latin-1"))
        self._pools.append(p)
        if balance is not None:
            p.set_balance(balance)
        if health is not None:
            p.set_health_check(health)
        if down_time_ms is not None:
            p.set_down_time(down_time_ms)
        if resolve_interval_ms is not None:
            p.set_resolve_interval(resolve_interval_ms)
        if passive is not None:
            p.set_passive_checks(**passive)
        if sticky_cookie is not None:
            p.set_sticky_cookie(*((sticky_cookie,) if isinstance(sticky_cookie, (str, bytes))
                                  else sticky_cookie))
        for b in backends:
            addr, weight = (b, 1) if isinstance(b, (str, bytes)) else b
            p.add(addr, weight)
        return p

    @property
    def pools(self):
        return list(self._pools)

    def router(self, routes=()):
        """A Router owned by this engine (freed after it), with `routes` (dicts of
        Router.add() keywords) added in order."""
        self._engine()
        if self._started:
            raise FerryError(lib.FERRY_ESTATE, None,
                             "routers are made before Engine.start() (listeners need them)")
        out = ffi.new("ferry_router **")
        _check(lib.ferry_router_new(ffi.NULL, out), "ferry_router_new")
        r = Router(self, out[0])
        self._routers.append(r)
        for route in routes:
            r.add(route)
        return r

    def stats(self):
        """Counters since the engine was created (ferry_engine_get_stats) as a dict:
        requests_retried, retries_refused; plus sessions (open now)."""
        st, owner = _new_opts("ferry_engine_stats")

        def get():
            lib.ferry_engine_get_stats(self._engine(), st)
            return int(lib.ferry_engine_sessions(self._engine()))
        sessions = self._locked(get)
        d = {name: int(getattr(st, name)) for name, _ in ffi.typeof("ferry_engine_stats").fields}
        d["sessions"] = sessions
        return d

    # -- listeners --

    def _listener_opts(self, protocol, listen, name, ops, options):
        """Filled ferry_listener_opts (direction still unset) and the C strings it points
        to, which must live until ferry_engine_listen() returns."""
        self._engine()
        lo, owner = _new_opts("ferry_listener_opts")
        lib.ferry_listener_opts_init(lo)
        strings = [owner]
        for key, value in options.items():
            if key in self._LISTENER_STR_OPTS:
                if value is None:
                    continue
                if not isinstance(value, (str, bytes, os.PathLike)):
                    value = ",".join(str(v) for v in value)  # a list of CIDRs
                c = ffi.new("char[]", _cstr(value, key))
                strings.append(c)
                setattr(lo, key, c)
            elif key in self._LISTENER_OPTS:
                setattr(lo, key, int(value))
            else:
                raise TypeError("unknown listener option %r" % (key,))
        name_c = ffi.new("char[]", _enc(name, "name")) if name else ffi.NULL
        addr_c = ffi.new("char[]", _enc(listen, "listen"))
        strings += [addr_c, name_c]
        lo.address = addr_c
        lo.name = name_c
        lo.protocol = protocol
        if ops is not None:
            lo.hooks.ops = ops
            lo.hooks.user_data = ffi.NULL
        return lo, strings

    def _bind(self, lo, listen):
        out = ffi.new("ferry_listener **")
        _check(lib.ferry_engine_listen(self._engine(), lo, out), "listen on %s" % (listen,))
        return out[0]

    def _listen(self, protocol, label, listen, backends, router, name, ops, options):
        self._engine()
        pool = None
        if router is not None:
            if backends:
                raise TypeError("give either backends or a router, not both")
            if not isinstance(router, Router):
                router = self.router(router)  # a list of route dicts
            elif router._engine is not self:
                raise FerryError(lib.FERRY_EINVAL, None, "the router belongs to another engine")
            router._p()
        elif isinstance(backends, Pool):
            pool = backends
            if pool._engine is not self:
                raise FerryError(lib.FERRY_EINVAL, None, "the pool belongs to another engine")
        else:
            pool = self.pool(None, backends)
        lo, strings = self._listener_opts(protocol, listen, name, ops, options)
        if router is not None:
            lo.direction = lib.ferry_direction_router()
            lo.direction_data = router._ptr
        else:
            lo.direction = lib.ferry_direction_reverse()
            lo.direction_data = pool._p()
        ptr = self._bind(lo, listen)
        l = Listener(self, ptr, listen, label, pool=pool, router=router)
        self._listeners.append(l)
        return l

    def _ops(self, fwd=None, **fns):
        ops = ffi.new("ferry_hook_ops *")
        cbs = []
        for key, fn in fns.items():
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError("%s must be callable" % key)
            if key == "on_log":
                cb = _make_log_cb(fn)
            elif key == "on_route":
                cb = _make_route_cb(fn, fwd)
            else:
                cb = _HOOK_MAKERS[key](fn)
            cbs.append(cb)
            setattr(ops, key, cb)
        if not cbs:
            return None
        self._keep.append((ops, cbs))
        return ops

    def reverse_http(self, listen="127.0.0.1:0", backends=(), on_request=None, on_response=None,
                     on_log=None, name=None, on_accept=None, on_route=None,
                     on_upstream_request=None, *, router=None, **options):
        """An HTTP/1.1 reverse proxy listener in front of `backends` ("IP:PORT" strings or
        (address, weight) pairs: a new round-robin pool; or a Pool), or of a `router`
        (a Router, or a list of route dicts: see Router.add()). Extra keyword arguments
        set ferry_listener_opts fields: numbers and booleans (connect_timeout_ms=1000,
        forwarded_headers=False, accept_proxy=True, send_proxy=1, forwarded_rfc7239=True,
        add_via=True, rewrite_responses=False, hide_backend_headers=True, ...) and
        strings (proxy_trusted="10.0.0.0/8", trusted_forwarders=[...],
        public_scheme="https")."""
        ops = self._ops(on_request=on_request, on_response=on_response, on_log=on_log,
                        on_accept=on_accept, on_route=on_route,
                        on_upstream_request=on_upstream_request)
        return self._listen(lib.FERRY_PROTO_HTTP, "http", listen, backends, router, name, ops,
                            options)

    def reverse_tcp(self, listen="127.0.0.1:0", backends=(), on_log=None, name=None,
                    on_accept=None, on_route=None, **options):
        """A TCP relay listener in front of `backends` (as for reverse_http)."""
        ops = self._ops(on_log=on_log, on_accept=on_accept, on_route=on_route)
        return self._listen(lib.FERRY_PROTO_TCP, "tcp", listen, backends, None, name, ops,
                            options)

    def reverse_sni(self, listen="127.0.0.1:0", backends=(), on_log=None, name=None,
                    on_accept=None, on_route=None, *, router=None, **options):
        """TLS passthrough: the client's ClientHello is read for its server name (it is
        not decrypted), then everything is relayed byte for byte. With a `router`, the
        name picks the route by host (exact, "*.suffix", then a route for any host; paths
        and methods do not apply); a hello without a name goes to a route for any host,
        or the connection is closed. With `backends`, every connection goes to the pool.
        The name is session.dest_host in on_route and on_log's dest_host."""
        ops = self._ops(on_log=on_log, on_accept=on_accept, on_route=on_route)
        return self._listen(lib.FERRY_PROTO_SNI, "sni", listen, backends, router, name, ops,
                            options)

    def forward(self, listen="127.0.0.1:0", *, policy=None, protocols="http,socks",
                config=None, rules=None, allow_client=None, allow_dest=None,
                connect_ports=None, anonymity=None, header_allow=None, users=None,
                users_file=None, parents=None, routes=None, clock=None,
                on_accept=None, on_auth=None, on_route=None, on_request=None,
                on_upstream_request=None, on_response=None, on_log=None, name=None,
                **options):
        """A forward proxy listener: clients name the destination (HTTP absolute-form and
        CONNECT, SOCKS4/4a/5). protocols: "http", "socks" or "http,socks" (one port, told
        apart by the first byte).

        The policy is either policy=ferry.Forward(...) (shareable), or built here from the
        keywords (see Forward): config (a forwardd configuration file, read first),
        rules, allow_client, allow_dest, connect_ports (library default "443"),
        anonymity (default "anonymous"), header_allow, users ({name: password}),
        users_file, parents ({name: url}), routes ([(pattern, "p1,p2")]), clock (a
        callable returning Unix seconds). Such a policy belongs to the engine and is
        freed after it; listener.policy gives it. The config file's listen, workers and
        access-log settings are not applied (see Forward.listen / .workers).

        Hooks: on_accept(session), on_auth(session, user, password) -> bool,
        on_route(session, target), on_request(req), on_upstream_request(req),
        on_response(resp), on_log(record). Other keywords set numeric
        ferry_listener_opts fields (connect_timeout_ms=..., header_timeout_ms=...)."""
        self._engine()
        key = protocols.replace(" ", "").replace("+", ",").lower() \
            if isinstance(protocols, str) else None
        if key not in _FORWARD_PROTOCOLS:
            raise ValueError("protocols must be 'http', 'socks' or 'http,socks', not %r"
                             % (protocols,))
        label, proto = _FORWARD_PROTOCOLS[key]
        policy_kw = dict(config=config, rules=rules, allow_client=allow_client,
                         allow_dest=allow_dest, connect_ports=connect_ports,
                         anonymity=anonymity, header_allow=header_allow, users=users,
                         users_file=users_file, parents=parents, routes=routes, clock=clock)
        given = {k: v for k, v in policy_kw.items() if v is not None}
        if policy is not None:
            if given:
                raise TypeError("policy= excludes the policy keywords (%s): configure the "
                                "Forward instead" % ", ".join(sorted(given)))
            if not isinstance(policy, Forward):
                raise TypeError("policy must be a ferry.Forward, not %s"
                                % type(policy).__name__)
            fwd = policy
            fwd._live()
        else:
            fwd = Forward(**given)
            fwd._auto_close = True
        try:
            ops = self._ops(fwd, on_accept=on_accept, on_auth=on_auth, on_route=on_route,
                            on_request=on_request, on_upstream_request=on_upstream_request,
                            on_response=on_response, on_log=on_log)
            lo, strings = self._listener_opts(proto, listen, name, ops, options)
            lo.direction = lib.ferry_direction_forward()
            lo.direction_data = fwd._ptr
            ptr = self._bind(lo, listen)
        except BaseException:
            if policy is None:
                fwd.close()
            raise
        fwd._attach()
        self._policies.append(fwd)
        l = Listener(self, ptr, listen, label, "forward", fwd)
        self._listeners.append(l)
        return l

    @property
    def listeners(self):
        return list(self._listeners)

    # -- running --

    def take_listeners(self, previous):
        """Before start(): listeners added from now on whose address is one of
        `previous`'s (a running Engine) share its listening socket instead of binding, so
        that a reload refuses no client: build this engine, take_listeners(old), add the
        listeners, start(), then old.stop(drain_ms), old.wait(), old.close(). The old
        engine finishes its live connections; this one serves every new connection."""
        if not isinstance(previous, Engine) or previous is self:
            raise TypeError("take_listeners() needs another Engine")
        _check(lib.ferry_engine_take_listeners(self._engine(), previous._engine()),
               "ferry_engine_take_listeners")
        self._predecessor = previous

    def _forget_predecessor(self):
        if self._predecessor is not None and self._ptr is not None:
            lib.ferry_engine_take_listeners(self._ptr, ffi.NULL)
        self._predecessor = None

    def start(self):
        _check(lib.ferry_engine_start(self._engine()), "ferry_engine_start")
        self._started = True
        self._predecessor = None  # the C engine forgot it too

    def stop(self, drain_ms=0):
        """Ask the engine to stop (returns at once; any thread, also from a hook)."""
        _check(lib.ferry_engine_stop(self._engine(), int(drain_ms)), "ferry_engine_stop")

    def wait(self):
        """Block until every worker has stopped (after stop()). Not from a hook."""
        if getattr(_tls, "in_hook", False):
            raise FerryError(lib.FERRY_ESTATE, None, "Engine.wait() called from a hook")
        _check(lib.ferry_engine_wait(self._engine()), "ferry_engine_wait")

    @property
    def sessions(self):
        return int(lib.ferry_engine_sessions(self._engine()))

    @property
    def closed(self):
        return self._ptr is None

    def close(self):
        """Stop (no drain), join the workers and free everything. Idempotent. Not from a hook."""
        if self._ptr is None:
            return
        if getattr(_tls, "in_hook", False):
            raise FerryError(lib.FERRY_ESTATE, None, "Engine.close() called from a hook")
        for e in list(_live_engines):  # successors that did not start must not read us
            if e._predecessor is self:
                e._forget_predecessor()
        self._predecessor = None
        with self._lock:  # no other thread is inside a pool or backend call
            ptr, self._ptr = self._ptr, None
            lib.ferry_engine_free(ptr)  # cffi releases the GIL: hooks in flight can finish
            for p in self._pools:  # freed with the engine
                p._closed()
        self._keep = []  # now no worker can call back: release callbacks and ops
        for l in self._listeners:
            l._ptr = None
        routers, self._routers = self._routers, []
        for r in routers:  # after the engine, as ferry_router_free() requires
            r._free()
        policies, self._policies = self._policies, []
        for fwd in policies:  # after the engine, as ferry_forward_free() requires
            fwd._detach()
        configs, self._reverse_configs = self._reverse_configs, []
        for cfg in configs:  # its routers and logs serve the listeners until the engine is gone
            lib.ferry_reverse_config_free(cfg)
        _live_engines.discard(self)

    @classmethod
    def from_reverse_config(cls, path, previous=None):
        """An engine built from a reverse-proxy configuration file (the format `reversed
        --config` reads, doc/reverse-config.md): its workers, pools, routes and listeners,
        bound now. Returns (engine, ports) with the bound port of each listen directive in
        file order. Errors raise FerryError with "path:line: message".
        previous: a running Engine to take the listening sockets of (a reload, see
        take_listeners())."""
        err = ffi.new("char[]", 512)
        handle = ffi.new("ferry_reverse_config **")
        _check_config(lib.ferry_reverse_config_load(os.fsencode(path), ffi.NULL, handle, err, 512),
                      "ferry_reverse_config_load", err)
        cfg = handle[0]
        try:
            opts = ffi.new("ferry_engine_opts *")
            lib.ferry_engine_opts_init(opts)
            _check_config(lib.ferry_reverse_config_engine_opts(cfg, opts, err, 512),
                          "ferry_reverse_config_engine_opts", err)
            engine = cls(_opts=opts)
        except BaseException:
            lib.ferry_reverse_config_free(cfg)
            raise
        engine._reverse_configs.append(cfg)  # freed by close(), after the engine
        try:
            if previous is not None:
                engine.take_listeners(previous)
            _check_config(lib.ferry_reverse_config_apply(cfg, engine._ptr, err, 512),
                          "ferry_reverse_config_apply", err)
        except BaseException:
            engine.close()
            raise
        ports = [lib.ferry_listener_port(lib.ferry_reverse_config_listener(cfg, i))
                 for i in range(lib.ferry_reverse_config_listener_count(cfg))]
        return engine, ports

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._ptr is not None:
            if self._started:
                lib.ferry_engine_stop(self._ptr, 0)
            self.close()
        return False

    def __del__(self):
        try:
            if self._ptr is not None and not getattr(_tls, "in_hook", False):
                self.close()
        except Exception:
            pass

    def __repr__(self):
        return "<ferry.Engine %s>" % ("closed" if self._ptr is None else
                                      "running" if self._started else "idle")


@atexit.register
def _close_all():
    for e in list(_live_engines):
        try:
            e.close()
        except Exception:
            pass
