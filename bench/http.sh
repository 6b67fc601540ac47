#!/usr/bin/env bash
# bench/http.sh - HTTP/1.1 reverse-proxy benchmark, all in one run, loopback only.
#   wrk -t1 -c64 --latency (keep-alive) for a small (~100 B) and a 64 KiB response,
#   straight to the origin ("direct", reference) and through three proxies, one
#   worker each: `reversed --mode http`, nginx (proxy_pass + upstream keepalive)
#   and haproxy `mode http`. Reports requests/s, p99 latency and proxy CPU time
#   per request (utime+stime delta of the proxy's process tree / requests).
# Prints a table and writes bench/results/http-<timestamp>.json. See bench/README.md.
#
# Knobs (environment): DURATION=5 ROUNDS=2 WARMUP=1 CONNS=64 PROXY_CPU=0 LOAD_CPU=1
#   NICE=0 (e.g. -10: run proxies, origin and wrk at that nice level, less disturbed
#   by other jobs on a shared box)  KEEP_TMP=1
#   REVERSED=path (default build/examples/reversed/reversed)
#   REVERSED_ARGS="..." extra arguments for reversed
# Flag: --skip-reversed  run only direct + nginx + haproxy (e.g. before reversed works)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
PY=/usr/bin/python3
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
NICE=${NICE:-0}
if [[ -z ${REVERSED:-} ]]; then
    REVERSED=$ROOT/build/examples/reversed/reversed
fi
SKIP_REVERSED=0
read -r -a REV_EXTRA <<<"${REVERSED_ARGS:-}"
RESULTS=$HERE/results
SIZES=(small big)
declare -A PATH_OF=([small]=/small.txt [big]=/big.bin)

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
for arg in "$@"; do
    case $arg in
        --skip-reversed) SKIP_REVERSED=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

die() { echo "http.sh: error: $*" >&2; exit 1; }
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
log() { echo "== $*" >&2; }
warn() { echo "http.sh: WARNING: $*" >&2; }

# ---------------------------------------------------------------- prerequisites
# Install only what is missing; `apt-get update` only when an install is needed.
# Installing the nginx package may start the system nginx service; we never touch
# it: our instances use their own prefix, config and ports.
missing=()
command -v wrk     >/dev/null || missing+=(wrk)
command -v nginx   >/dev/null || missing+=(nginx)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v curl    >/dev/null || missing+=(curl)
command -v taskset >/dev/null || missing+=(util-linux)
command -v ss      >/dev/null || missing+=(iproute2)
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]})"
    log "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
[[ -x $PY ]] || die "$PY not found"

if ((!SKIP_REVERSED)) && [[ ! -x $REVERSED ]]; then
    die "reversed binary not found at $REVERSED
  build it first:  (cd $ROOT && meson setup build && ninja -C build)
  or set REVERSED=/path/to/reversed, or pass --skip-reversed for direct + nginx + haproxy"
fi

taskset -c "$PROXY_CPU" true 2>/dev/null || die "cannot pin to CPU $PROXY_CPU"
taskset -c "$LOAD_CPU" true 2>/dev/null || die "cannot pin to CPU $LOAD_CPU"
NICE_CMD=()
if [[ $NICE != 0 ]]; then
    nice -n "$NICE" true 2>/dev/null || die "cannot run at nice $NICE"
    NICE_CMD=(nice -n "$NICE")
fi
ulimit -Sn 65536 2>/dev/null || ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- process bookkeeping
TMP=$(mktemp -d /tmp/ferry-bench-http.XXXXXX)
chmod 755 "$TMP"   # nginx workers (user nobody when started as root) read files below
PIDS=()      # every background process we started, killed by PID on exit
LAST_PID=
FAILED=1     # cleared at the very end; keeps TMP around for post-mortem on failure

cleanup() {
    stop_started 30  # up to 3 s for a graceful stop
    if ((FAILED)) || [[ ${KEEP_TMP:-0} == 1 ]]; then
        echo "http.sh: logs kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM



# origin_stats: "accepts requests" from the origin's stub_status page. The deltas
# around a run show how many connections the proxy opened to the origin (upstream
# keep-alive) and how many requests reached it. Our own status request counts as
# one accept and one request.
origin_stats() {
    curl -s --max-time 2 "http://127.0.0.1:$P_ORIGIN/nginx_status" |
        awk 'NR == 3 { print $1, $3; ok = 1 } END { if (!ok) print "- -" }'
}

# origin_cfg FILE PORT: static file server, 1 worker.
origin_cfg() {
    cat >"$1" <<EOF
# bench/http.sh origin (static files), written per run
worker_processes 1;
pid $TMP/origin.pid;
error_log $TMP/origin-error.log warn;
events { worker_connections 4096; }
http {
$(nginx_common "$TMP/origin-tmp")
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16 inactive=300s;
    open_file_cache_valid 300s;
    server {
        listen 127.0.0.1:$2 backlog=4096;
        root $TMP/www;
        location = /nginx_status { stub_status; }
    }
}
EOF
}

# nginx_proxy_cfg FILE LISTEN_PORT ORIGIN_PORT: reverse proxy, 1 worker, upstream
# keep-alive. The proxy buffers hold a 64 KiB response in memory (the default
# 8 x 4k would spill it to a temp file), and temp files are off.
nginx_proxy_cfg() {
    cat >"$1" <<EOF
# bench/http.sh nginx reverse proxy, written per run
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
$(nginx_common "$TMP/nginx-tmp")
    upstream origin {
        server 127.0.0.1:$3;
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$2 backlog=4096;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # What reversed sends upstream by default: the client's Host and X-Forwarded-*.
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_buffer_size 16k;
            proxy_buffers 8 16k;
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
}

# haproxy_cfg FILE LISTEN_PORT ORIGIN_PORT: mode http, 1 thread, keep-alive both sides
# (http-reuse safe, the default, keeps idle server connections for reuse).
haproxy_cfg() {
    cat >"$1" <<EOF
# bench/http.sh haproxy, written per run; no 'daemon': foreground under our control (-db)
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend fe
    bind 127.0.0.1:$2
    default_backend be

backend be
    # what reversed sends upstream by default: the client's Host and X-Forwarded-*
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    server s1 127.0.0.1:$3 maxconn 1000
EOF
}

HZ=$(getconf CLK_TCK)
TS=$(date -u +%Y%m%dT%H%M%SZ)
mapfile -t PORTS < <("$PY" "$HERE/idle_conns.py" freeports 4)   # distinct free loopback ports
P_ORIGIN=${PORTS[0]}
declare -A PORT_OF=([direct]=$P_ORIGIN [reversed]=${PORTS[1]} [nginx]=${PORTS[2]} [haproxy]=${PORTS[3]})
declare -A PID_OF=([direct]=-)

# ---------------------------------------------------------------- origin
mkdir -p "$TMP/www"
# ~100 bytes of text; 64 KiB of random bytes (the check compares bodies byte for byte)
printf 'ferry http bench: small response body, about one hundred bytes long, used for requests/s.....\n' \
    >"$TMP/www/small.txt"
head -c 65536 /dev/urandom >"$TMP/www/big.bin"
chmod 755 "$TMP/www"; chmod 644 "$TMP/www"/*
origin_cfg "$TMP/origin.conf" "$P_ORIGIN"
start origin "$LOAD_CPU" nginx -e "$TMP/origin-error.log" -p "$TMP/origin-tmp" -c "$TMP/origin.conf" -g 'daemon off;'
PID_ORIGIN=$LAST_PID
wait_listen origin "$PID_ORIGIN" "$P_ORIGIN"

# ---------------------------------------------------------------- proxies
CONFIGS=(direct)
if ((!SKIP_REVERSED)); then
    start reversed "$PROXY_CPU" "$REVERSED" --mode http --workers 1 \
        --listen "127.0.0.1:${PORT_OF[reversed]}" --backend "127.0.0.1:$P_ORIGIN" \
        ${REV_EXTRA[@]+"${REV_EXTRA[@]}"}
    PID_OF[reversed]=$LAST_PID
    wait_listen reversed "$LAST_PID" "${PORT_OF[reversed]}"
    CONFIGS+=(reversed)
fi
nginx_proxy_cfg "$TMP/nginx.conf" "${PORT_OF[nginx]}" "$P_ORIGIN"
start nginx "$PROXY_CPU" nginx -e "$TMP/nginx-error.log" -p "$TMP/nginx-tmp" -c "$TMP/nginx.conf" -g 'daemon off;'
PID_OF[nginx]=$LAST_PID
wait_listen nginx "$LAST_PID" "${PORT_OF[nginx]}"
CONFIGS+=(nginx)
haproxy_cfg "$TMP/haproxy.cfg" "${PORT_OF[haproxy]}" "$P_ORIGIN"
start haproxy "$PROXY_CPU" haproxy -f "$TMP/haproxy.cfg" -db
PID_OF[haproxy]=$LAST_PID
wait_listen haproxy "$LAST_PID" "${PORT_OF[haproxy]}"
CONFIGS+=(haproxy)

# ---------------------------------------------------------------- correctness check
# One plain GET per config and size with curl: status 200, exact body (cmp), and a
# second request on the same connection (curl reuses it if keep-alive works).
: >"$TMP/checks.tsv"
for cfg in "${CONFIGS[@]}"; do
    for size in "${SIZES[@]}"; do
        url="http://127.0.0.1:${PORT_OF[$cfg]}${PATH_OF[$size]}"
        body="$TMP/check-$cfg-$size.body"
        rc=0
        out=$(curl -s --max-time 5 -o "$body" -o "$body.2" -w '%{http_code} %{num_connects}\n' \
            "$url" "$url" 2>&1) || rc=$?
        codes=$(echo "$out" | awk '{printf "%s%s", (NR>1?",":""), $1}')
        conns=$(echo "$out" | awk '{s += $2} END {print s + 0}')
        problem=
        [[ $rc == 0 ]] || problem="curl exit $rc"
        [[ -z $problem && $codes != 200,200 ]] && problem="HTTP status $codes"
        if [[ -z $problem ]]; then
            cmp -s "$body" "$TMP/www${PATH_OF[$size]}" && cmp -s "$body.2" "$TMP/www${PATH_OF[$size]}" ||
                problem="body differs from origin file ($(stat -c %s "$body") bytes, want $(stat -c %s "$TMP/www${PATH_OF[$size]}"))"
        fi
        [[ -z $problem && $conns != 1 ]] && problem="no keep-alive: 2 requests took $conns connections"
        printf '%s\t%s\t%s\n' "$cfg" "$size" "${problem:-ok}" >>"$TMP/checks.tsv"
        [[ -z $problem ]] || warn "check $cfg $size ($url): $problem"
    done
done

# alive CFG: 0 if the config's process is running (direct: always).
alive() {
    local pid=${PID_OF[$1]}
    [[ $pid == - ]] || kill -0 "$pid" 2>/dev/null
}
declare -A DEAD=()
mark_dead() {
    [[ -n ${DEAD[$1]:-} ]] && return 0
    DEAD[$1]=1
    warn "$1 (pid ${PID_OF[$1]}) is gone; last log lines:"
    tail -n 20 "$TMP/$1.log" >&2 || true
}

# ---------------------------------------------------------------- warm-up
if ((WARMUP > 0)); then
    log "warm-up: ${WARMUP} s per config and size"
    for cfg in "${CONFIGS[@]}"; do
        for size in "${SIZES[@]}"; do
            timeout $((WARMUP + 20)) taskset -c "$LOAD_CPU" ${NICE_CMD[@]+"${NICE_CMD[@]}"} wrk -t1 -c"$CONNS" -d"${WARMUP}s" \
                "http://127.0.0.1:${PORT_OF[$cfg]}${PATH_OF[$size]}" >>"$TMP/warmup.log" 2>&1 || true
            alive "$cfg" || mark_dead "$cfg"
        done
    done
fi

# ---------------------------------------------------------------- measured runs
log "measure: ${ROUNDS} rounds x ${#SIZES[@]} sizes x ${#CONFIGS[@]} configs x ${DURATION} s"
: >"$TMP/runs.tsv"
for round in $(seq "$ROUNDS"); do
    # rotate the order each round so drift does not always hit the same config
    order=()
    for i in "${!CONFIGS[@]}"; do order+=("${CONFIGS[$(((i + round - 1) % ${#CONFIGS[@]}))]}"); done
    for size in "${SIZES[@]}"; do
        for cfg in "${order[@]}"; do
            out="$TMP/wrk-$cfg-$size-$round.txt"
            pid=${PID_OF[$cfg]}
            if ! alive "$cfg"; then
                mark_dead "$cfg"
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg" "$size" "$round" "$out" dead - "$HZ" - - - - - >>"$TMP/runs.tsv"
                continue
            fi
            read -r acc0 req0 < <(origin_stats)
            t0=0; [[ $pid == - ]] || t0=$(cpu_ticks "$pid")
            o0=$(cpu_ticks "$PID_ORIGIN")
            b0=$(cpu_busy "$PROXY_CPU") l0=$(cpu_busy "$LOAD_CPU")
            reaped_ticks; w0=$REAPED   # last, so no other child of ours is counted as wrk
            rc=0
            # timeout: a wedged proxy must not hang the benchmark
            timeout $((DURATION + 20)) taskset -c "$LOAD_CPU" ${NICE_CMD[@]+"${NICE_CMD[@]}"} wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
                "http://127.0.0.1:${PORT_OF[$cfg]}${PATH_OF[$size]}" >"$out" 2>&1 || rc=$?
            reaped_ticks; w1=$REAPED   # first, before any other child of ours is reaped
            ticks=-; [[ $pid == - ]] || ticks=$(($(cpu_ticks "$pid") - t0))
            busy=$(($(cpu_busy "$PROXY_CPU") - b0)) lbusy=$(($(cpu_busy "$LOAD_CPU") - l0))
            lours=$(($(cpu_ticks "$PID_ORIGIN") - o0 + w1 - w0))   # origin + wrk
            read -r acc1 req1 < <(origin_stats)
            dacc=-; dreq=-
            if [[ $acc0 != - && $acc1 != - ]]; then dacc=$((acc1 - acc0 - 1)); dreq=$((req1 - req0 - 1)); fi
            alive "$cfg" || { rc=dead; mark_dead "$cfg"; }
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg" "$size" "$round" "$out" "$rc" "$ticks" "$HZ" "$dacc" "$dreq" "$busy" "$lbusy" "$lours" >>"$TMP/runs.tsv"
            log "round $round/$ROUNDS $size $cfg: $("$PY" "$HERE/http_report.py" summary "$out" "$ticks" "$HZ"), origin conns opened $dacc"
            sleep 0.3   # let sockets wind down between runs
        done
    done
done

# ---------------------------------------------------------------- report
mkdir -p "$RESULTS"
out="$RESULTS/http-$TS.json"
rev_meta="skipped"
((SKIP_REVERSED)) || rev_meta="$REVERSED --mode http --workers 1 ${REVERSED_ARGS:-}"
rc=0
"$PY" "$HERE/http_report.py" report --tmp "$TMP" --out "$out" \
    --meta "timestamp=$TS" --meta "duration_s=$DURATION" --meta "rounds=$ROUNDS" \
    --meta "connections=$CONNS" --meta "proxy_cpu=$PROXY_CPU" --meta "load_cpu=$LOAD_CPU" --meta "nice=$NICE" \
    --meta "small_bytes=$(stat -c %s "$TMP/www/small.txt")" --meta "big_bytes=$(stat -c %s "$TMP/www/big.bin")" \
    --meta "reversed=$rev_meta" \
    --meta "git_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --meta "nginx=$(nginx -v 2>&1 | head -n1)" --meta "haproxy=$(haproxy -v | head -n1)" \
    --meta "wrk=$(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)" \
    --meta "kernel=$(uname -r)" --meta "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)" \
    --meta "nproc=$(nproc)" || rc=$?
FAILED=$rc
exit "$rc"
