#!/usr/bin/env bash
# Requests/s and proxy CPU per request: reversed --mode http vs the same engine built from
# Python (no Python hook) vs Python with one on_request hook. One worker each, proxy on
# CPU 0, wrk and an nginx origin on CPU 1, wrk -t1 -c64 keep-alive, small responses.
# Usage: bench/python.sh   (env: DURATION=5 ROUNDS=2 REVERSED=... FERRY_LIB=...)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-2}
REVERSED=${REVERSED:-$ROOT/build/examples/reversed/reversed}
export FERRY_LIB=${FERRY_LIB:-$ROOT/build/libferry.so}
for tool in wrk nginx; do command -v $tool >/dev/null || { apt-get update -qq; apt-get install -y -qq $tool >/dev/null; }; done
[ -x "$REVERSED" ] && [ -f "$FERRY_LIB" ] || { echo "build first: meson setup build && ninja -C build" >&2; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

origin=$(free_port)
proxy=$(free_port)
head -c 94 /dev/zero | tr '\0' 'a' > "$tmp/small.txt"
cat > "$tmp/nginx.conf" <<CONF
worker_processes 1;
error_log $tmp/error.log;
pid $tmp/nginx.pid;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$origin; root $tmp; } }
CONF
taskset -c 1 nginx -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon off;' &
pids+=($!)
sleep 0.5

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
run() { # label command... -> "label req/s cpu_us_per_req"
  local label=$1; shift
  taskset -c 0 "$@" >/dev/null 2>&1 &
  local p=$!
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$proxy/small.txt" && break; sleep 0.1; done
  local t0 out t1 n rps
  t0=$(ticks $p)
  out=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$proxy/small.txt")
  t1=$(ticks $p)
  kill -TERM $p; wait $p 2>/dev/null || true
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  echo "$label $rps $(/usr/bin/python3 -c "print(round(($t1-$t0)*1e6/$(getconf CLK_TCK)/$n,1))")"
}

for r in $(seq "$ROUNDS"); do
  run reversed "$REVERSED" --listen "127.0.0.1:$proxy" --backend "127.0.0.1:$origin" --mode http
  run python-nohook /usr/bin/python3 "$ROOT/bench/python_proxy.py" none "$proxy" "127.0.0.1:$origin"
  run python-hook /usr/bin/python3 "$ROOT/bench/python_proxy.py" hook "$proxy" "127.0.0.1:$origin"
done | tee "$tmp/results"
/usr/bin/python3 - "$tmp/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, rps, cpu = line.split()
    rows.setdefault(label, []).append((float(rps), float(cpu)))
med = {k: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v)) for k, v in rows.items()}
print("\nconfig          req/s   CPU us/req   req/s vs reversed   CPU vs reversed")
for k in ("reversed", "python-nohook", "python-hook"):
    r, c = med[k]
    print(f"{k:14} {r:8.0f} {c:12.1f} {r / med['reversed'][0]:19.2f} {c / med['reversed'][1]:17.2f}")
PY
