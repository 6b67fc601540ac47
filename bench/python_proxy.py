#!/usr/bin/python3
"""A reverse proxy built with the Python bindings, for bench/python.sh.
Usage: python_proxy.py none|hook PORT BACKEND   (runs until SIGTERM)"""
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))
import ferry  # noqa: E402

mode, port, backend = sys.argv[1], int(sys.argv[2]), sys.argv[3]
hooks = {}
if mode == "hook":
    def on_request(req):  # one cheap Python decision per request
        return ferry.reject(403) if req.target.startswith("/blocked") else None
    hooks["on_request"] = on_request

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
with ferry.Engine(workers=1) as engine:
    engine.reverse_http(listen="127.0.0.1:%d" % port, backends=[backend], **hooks)
    engine.start()
    stop.wait()
    engine.stop(0)
