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
"""
import atexit
import ctypes.util
import os
import sys
import threading
import traceback
import weakref

import cffi

from ._cdef import CDEF, ERRORS

__all__ = [
    "FerryError", "StaleObjectError", "Engine", "Listener", "Request", "Response", "Headers",
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


def _enc(value, what):
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise TypeError("%s must be str or bytes, not %s" % (what, type(value).__name__))
    return value.encode("latin-1")


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
    """The request head, as on_request sees it. Valid only during the hook."""
    _part = 0  # FERRY_TXN_REQUEST

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


def _log_dict(rec):
    info = rec.session
    d = {}
    if info != ffi.NULL:
        d.update(session_id=int(info.id), worker=int(info.worker), listener=_s(info.listener),
                 client=_s(info.client_addr), client_port=int(info.client_port))
    else:
        d.update(session_id=0, worker=0, listener="", client="", client_port=0)
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


# ---- engine ----

class Listener:
    """A bound listener; .port is the actual port (useful with port 0)."""

    def __init__(self, engine, ptr, address, protocol):
        self._engine = weakref.ref(engine)
        self._ptr = ptr
        self.address = address
        self.protocol = protocol
        self.port = int(lib.ferry_listener_port(ptr))

    def __repr__(self):
        return "<ferry.Listener %s %s port=%d>" % (self.protocol, self.address, self.port)


_live_engines = weakref.WeakSet()


class Engine:
    """A ferry engine (worker threads with their event loops). Use as a context manager,
    or call close() when done. Listeners are added before start()."""

    _LISTENER_OPTS = frozenset(
        name for name, f in ffi.typeof("ferry_listener_opts").fields
        if f.type.kind == "primitive")

    def __init__(self, workers=1):
        opts = ffi.new("ferry_engine_opts *")
        lib.ferry_engine_opts_init(opts)
        opts.workers = int(workers)
        out = ffi.new("ferry_engine **")
        _check(lib.ferry_engine_new(opts, out), "ferry_engine_new")
        self._ptr = out[0]
        self._keep = []  # hook ops, callbacks and strings that must outlive the C engine
        self._listeners = []
        self._pools = 0
        self._started = False
        _live_engines.add(self)

    def _engine(self):
        if self._ptr is None:
            raise FerryError(lib.FERRY_ESTATE, None, "engine is closed")
        return self._ptr

    # -- listeners --

    def _pool(self, backends):
        if isinstance(backends, (str, bytes)):
            backends = [backends]
        pool = ffi.new("ferry_pool **")
        self._pools += 1
        _check(lib.ferry_pool_new(self._engine(), b"pool%d" % self._pools, pool), "ferry_pool_new")
        for b in backends:
            addr, weight = (b, 1) if isinstance(b, (str, bytes)) else b
            _check(lib.ferry_pool_add(pool[0], _enc(addr, "backend"), int(weight), ffi.NULL),
                   "backend %r" % (addr,))
        return pool[0]

    def _listen(self, protocol, listen, backends, name, ops, options):
        engine = self._engine()
        lo = ffi.new("ferry_listener_opts *")
        lib.ferry_listener_opts_init(lo)
        for key, value in options.items():
            if key not in self._LISTENER_OPTS:
                raise TypeError("unknown listener option %r" % (key,))
            setattr(lo, key, value)
        addr = _enc(listen, "listen")
        name_c = ffi.new("char[]", _enc(name, "name")) if name else ffi.NULL
        addr_c = ffi.new("char[]", addr)
        lo.address = addr_c
        lo.name = name_c
        lo.protocol = protocol
        lo.direction = lib.ferry_direction_reverse()
        lo.direction_data = self._pool(backends)
        if ops is not None:
            lo.hooks.ops = ops
            lo.hooks.user_data = ffi.NULL
        out = ffi.new("ferry_listener **")
        _check(lib.ferry_engine_listen(engine, lo, out), "listen on %s" % (listen,))
        l = Listener(self, out[0], listen, "http" if protocol == lib.FERRY_PROTO_HTTP else "tcp")
        self._listeners.append(l)
        return l

    def _ops(self, **fns):
        ops = ffi.new("ferry_hook_ops *")
        cbs = []
        makers = {"on_request": _make_request_cb, "on_response": _make_response_cb,
                  "on_log": _make_log_cb}
        for key, fn in fns.items():
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError("%s must be callable" % key)
            cb = makers[key](fn)
            cbs.append(cb)
            setattr(ops, key, cb)
        if not cbs:
            return None
        self._keep.append((ops, cbs))
        return ops

    def reverse_http(self, listen="127.0.0.1:0", backends=(), on_request=None, on_response=None,
                     on_log=None, name=None, **options):
        """An HTTP/1.1 reverse proxy listener in front of `backends` ("IP:PORT" strings or
        (address, weight) pairs, round-robin). Extra keyword arguments set the numeric
        ferry_listener_opts fields (e.g. connect_timeout_ms=1000, forwarded_headers=0)."""
        ops = self._ops(on_request=on_request, on_response=on_response, on_log=on_log)
        return self._listen(lib.FERRY_PROTO_HTTP, listen, backends, name, ops, options)

    def reverse_tcp(self, listen="127.0.0.1:0", backends=(), on_log=None, name=None, **options):
        """A TCP relay listener in front of `backends`."""
        ops = self._ops(on_log=on_log)
        return self._listen(lib.FERRY_PROTO_TCP, listen, backends, name, ops, options)

    @property
    def listeners(self):
        return list(self._listeners)

    # -- running --

    def start(self):
        _check(lib.ferry_engine_start(self._engine()), "ferry_engine_start")
        self._started = True

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
        ptr, self._ptr = self._ptr, None
        lib.ferry_engine_free(ptr)  # cffi releases the GIL, so hooks in flight can finish
        self._keep = []  # now no worker can call back: release callbacks and ops
        for l in self._listeners:
            l._ptr = None
        _live_engines.discard(self)

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
