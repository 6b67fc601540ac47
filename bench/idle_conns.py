#!/usr/bin/python3
"""Idle-connection helper for bench/tcp.sh (Python 3 standard library only).

Subcommands:
  freeports N   print N free loopback TCP ports, one per line
  backend       accept and hold connections; publish {"open", "accepted"} to a
                status file so the client side can tell when the proxy has
                connected through
  clients       read the proxy's VmRSS, open COUNT idle connections through it,
                wait until the backend holds them all, wait SETTLE seconds, read
                VmRSS again, close everything; print one JSON object on stdout

Every loop is bounded in count and time; the backend exits by itself after
--max-seconds even if nobody stops it.
"""

import argparse
import errno
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time

HOST = "127.0.0.1"


def raise_nofile(want=65536):
    """Lift RLIMIT_NOFILE as far as allowed: each side holds one fd per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else max(soft, min(want, hard))
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def tree_pids(pid):
    """pid and all its descendants (a proxy that forks workers is measured whole)."""
    out, todo = [], [pid]
    while todo and len(out) < 10000:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                try:
                    with open(f"/proc/{p}/task/{t}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
                except OSError:
                    pass
        except OSError:
            pass
    return out


def vmrss_kb(pid):
    """Sum of VmRSS (kB) over the process tree rooted at pid."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def read_status(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"open": 0, "accepted": 0}


# ---------------------------------------------------------------- freeports
def cmd_freeports(args):
    # Hold all sockets until every port is chosen so the N ports are distinct.
    socks = []
    for _ in range(args.n):
        s = socket.socket()
        s.bind((HOST, 0))
        socks.append(s)
    for s in socks:
        print(s.getsockname()[1])
        s.close()


# ---------------------------------------------------------------- backend
def cmd_backend(args):
    raise_nofile()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((HOST, args.port))
    ls.listen(4096)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()  # epoll: fine for 10k+ fds
    sel.register(ls, selectors.EVENT_READ)

    n_open = n_acc = 0
    last = None
    last_write = 0.0
    deadline = time.monotonic() + args.max_seconds

    def publish():
        tmp = args.status + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"open": n_open, "accepted": n_acc}, f)
        os.replace(tmp, args.status)  # atomic: readers never see half a file

    publish()
    while not stop and time.monotonic() < deadline:
        for key, _ in sel.select(0.02):
            if key.fileobj is ls:
                for _ in range(512):  # bounded accept burst
                    try:
                        c, _ = ls.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:  # EMFILE etc.: report, keep going
                        print(f"backend: accept: {e}", file=sys.stderr)
                        break
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ)
                    n_open += 1
                    n_acc += 1
            else:
                c = key.fileobj
                try:
                    data = c.recv(65536)  # discard anything sent
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(c)
                    c.close()
                    n_open -= 1
        now = time.monotonic()
        if (n_open, n_acc) != last and now - last_write >= 0.02:
            publish()
            last, last_write = (n_open, n_acc), now
    publish()


# ---------------------------------------------------------------- clients
def cmd_clients(args):
    limit = raise_nofile()
    if limit < args.count + 64:
        sys.exit(f"clients: RLIMIT_NOFILE {limit} too low for {args.count} connections")

    t_start = time.monotonic()
    deadline = t_start + args.timeout
    base = read_status(args.status)["open"]  # should be 0: previous run drained
    rss_before = vmrss_kb(args.pid)
    fds_before = fd_count(args.pid)

    sel = selectors.DefaultSelector()
    held = []  # established client sockets
    pending = 0
    failed = 0
    backend_open = 0
    last_poll = 0.0
    while (len(held) < args.count or pending) and time.monotonic() < deadline:
        now = time.monotonic()
        if now - last_poll >= 0.01:
            backend_open = read_status(args.status)["open"] - base
            last_poll = now
        # Pace the connects: a bounded number in flight and not too far ahead of
        # what the backend has seen, so the proxy's accept queue never overflows
        # (an overflow means SYN retransmits and 1 s stalls).
        while (len(held) + pending < args.count and pending < args.window
               and len(held) + pending - backend_open < args.ahead):
            s = socket.socket()
            s.setblocking(False)
            rc = s.connect_ex((HOST, args.port))
            if rc in (0, errno.EINPROGRESS):
                sel.register(s, selectors.EVENT_WRITE)
                pending += 1
            else:
                s.close()
                failed += 1
                break
        for key, _ in sel.select(0.01):
            s = key.fileobj
            sel.unregister(s)
            pending -= 1
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                held.append(s)
            else:
                s.close()
                failed += 1
        if failed > max(100, args.count // 10):
            break
    t_connected = time.monotonic() - t_start

    # Established on our side only means "in the proxy's accept queue": wait
    # until the backend actually holds them all.
    while time.monotonic() < deadline:
        backend_open = read_status(args.status)["open"] - base
        if backend_open >= len(held):
            break
        time.sleep(0.02)
    t_backend = time.monotonic() - t_start

    time.sleep(args.settle)
    rss_after = vmrss_kb(args.pid)
    fds_after = fd_count(args.pid)
    backend_open = read_status(args.status)["open"] - base

    # Connections the proxy closed on us would show as readable (EOF).
    dropped = 0
    rsel = selectors.DefaultSelector()
    for s in held:
        rsel.register(s, selectors.EVENT_READ)
    dropped = len(rsel.select(0))
    rsel.close()

    for s in held:
        s.close()
    n_held = len(held)
    held.clear()
    # Let the proxy and backend drain before the next proxy is measured.
    drain_deadline = time.monotonic() + 15
    while time.monotonic() < drain_deadline:
        if read_status(args.status)["open"] <= base:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    rss_closed = vmrss_kb(args.pid)

    ok = n_held == args.count and backend_open >= args.count and dropped == 0
    per_conn = (rss_after - rss_before) * 1024 / n_held if n_held else None
    json.dump({
        "ok": ok,
        "requested": args.count,
        "established": n_held,
        "connect_failures": failed,
        "backend_open": backend_open,
        "dropped_by_proxy": dropped,
        "seconds_to_connect": round(t_connected, 3),
        "seconds_until_backend_holds_all": round(t_backend, 3),
        "settle_seconds": args.settle,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "rss_after_close_kb": rss_closed,
        "proxy_fds_before": fds_before,
        "proxy_fds_after": fds_after,
        "rss_bytes_per_conn": round(per_conn, 1) if per_conn is not None else None,
    }, sys.stdout)
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("freeports")
    p.add_argument("n", type=int)
    p.set_defaults(fn=cmd_freeports)

    p = sub.add_parser("backend")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--status", required=True)
    p.add_argument("--max-seconds", type=float, default=900)
    p.set_defaults(fn=cmd_backend)

    p = sub.add_parser("clients")
    p.add_argument("--port", type=int, required=True, help="proxy listen port")
    p.add_argument("--pid", type=int, required=True, help="proxy PID (RSS is read from it)")
    p.add_argument("--status", required=True, help="backend status file")
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--window", type=int, default=256, help="max connects in flight")
    p.add_argument("--ahead", type=int, default=1024,
                   help="max connections not yet seen by the backend")
    p.set_defaults(fn=cmd_clients)

    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
