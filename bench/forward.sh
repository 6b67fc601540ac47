#!/usr/bin/env bash
# bench/forward.sh - forward-proxy benchmark, all in one run, loopback only.
#   1. small requests: wrk -t1 -c64 --latency (keep-alive on the client side), ~100 B
#      response, the request line in absolute form (GET http://127.0.0.1:ORIGIN/small.txt)
#      sent to the proxy; "direct" (origin-form, straight to the origin) as reference.
#      Reports requests/s, p99 latency and proxy CPU time per request.
#   2. CONNECT tunnel: curl -p -x downloads a big file through a CONNECT tunnel, and
#      directly for reference. Reports MB/s, the ratio to direct and proxy CPU s per GB.
#   Proxies (one worker each): forwardd, squid (cache off), tinyproxy.
# Prints tables and writes bench/results/forward-<timestamp>.json. See bench/README.md.
#
# Knobs (environment): DURATION=5 ROUNDS=2 WARMUP=1 CONNS=64 PROXY_CPU=0 LOAD_CPU=1
#   NICE=0 (e.g. -10 on a shared box)  KEEP_TMP=1
#   TUNNEL_MB=1024 (size of the downloaded file)  TUNNEL_COUNT=1 (downloads per run)
#   TUNNEL_TIMEOUT=120 (seconds, per download)
#   FORWARDD=path (default build/examples/forwardd/forwardd)
#   FORWARDD_ARGS="..." extra arguments for forwardd
# Flag: --skip-forwardd  measure only direct + squid + tinyproxy (e.g. before forwardd works)
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
TUNNEL_MB=${TUNNEL_MB:-1024}
TUNNEL_COUNT=${TUNNEL_COUNT:-1}
TUNNEL_TIMEOUT=${TUNNEL_TIMEOUT:-120}
if [[ -z ${FORWARDD:-} ]]; then
    FORWARDD=$ROOT/build/examples/forwardd/forwardd
fi
SKIP_FORWARDD=0
read -r -a FWD_EXTRA <<<"${FORWARDD_ARGS:-}"
RESULTS=$HERE/results

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
for arg in "$@"; do
    case $arg in
        --skip-forwardd) SKIP_FORWARDD=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

die() { echo "forward.sh: error: $*" >&2; exit 1; }
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
log() { echo "== $*" >&2; }
warn() { echo "forward.sh: WARNING: $*" >&2; }

for v in DURATION ROUNDS CONNS PROXY_CPU LOAD_CPU TUNNEL_MB TUNNEL_COUNT TUNNEL_TIMEOUT WARMUP; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer, got '${!v}'"
done
((DURATION > 0 && ROUNDS > 0 && CONNS > 0 && TUNNEL_MB > 0 && TUNNEL_COUNT > 0)) ||
    die "DURATION, ROUNDS, CONNS, TUNNEL_MB and TUNNEL_COUNT must be > 0"

# ---------------------------------------------------------------- prerequisites
# Install only what is missing; `apt-get update` only when an install is needed.
# The squid / tinyproxy / nginx packages may try to start their system services; we
# never touch those: our instances run in the foreground with configs, pid files and
# logs in our temp dir and on ports picked here.
missing=()
command -v wrk       >/dev/null || missing+=(wrk)
command -v nginx     >/dev/null || missing+=(nginx)
[[ -x /usr/sbin/squid ]] || command -v squid >/dev/null || missing+=(squid)
command -v tinyproxy >/dev/null || missing+=(tinyproxy)
command -v curl      >/dev/null || missing+=(curl)
command -v taskset   >/dev/null || missing+=(util-linux)
command -v ss        >/dev/null || missing+=(iproute2)
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]})"
    log "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
SQUID=$(command -v squid || echo /usr/sbin/squid)
[[ -x $SQUID ]] || die "squid not found after install"
[[ -x $PY ]] || die "$PY not found"

if ((!SKIP_FORWARDD)) && [[ ! -x $FORWARDD ]]; then
    die "forwardd binary not found at $FORWARDD
  build it first:  (cd $ROOT && meson setup build && ninja -C build)
  or set FORWARDD=/path/to/forwardd, or pass --skip-forwardd for direct + squid + tinyproxy"
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
TMP=$(mktemp -d /tmp/ferry-bench-forward.XXXXXX)
chmod 755 "$TMP"   # nginx workers / squid (other users when started as root) read below
PIDS=()      # every background process we started, killed by PID on exit
LAST_PID=
FAILED=1     # cleared at the very end; keeps TMP around for post-mortem on failure

cleanup() {
    stop_started 50  # up to 5 s for a graceful stop
    if ((FAILED)) || [[ ${KEEP_TMP:-0} == 1 ]]; then
        echo "forward.sh: logs kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# origin_stats: "accepts requests" from the origin's stub_status page (our own status
# request counts as one of each).
origin_stats() {
    curl -s --noproxy '*' --max-time 2 "http://127.0.0.1:$P_ORIGIN/nginx_status" |
        awk 'NR == 3 { print $1, $3; ok = 1 } END { if (!ok) print "- -" }'
}

HZ=$(getconf CLK_TCK)
TS=$(date -u +%Y%m%dT%H%M%SZ)
mapfile -t PORTS < <("$PY" "$HERE/idle_conns.py" freeports 4)   # distinct free loopback ports
P_ORIGIN=${PORTS[0]}
declare -A PORT_OF=([direct]=$P_ORIGIN [forwardd]=${PORTS[1]} [squid]=${PORTS[2]} [tinyproxy]=${PORTS[3]})
declare -A PID_OF=([direct]=-)
for p in "${PORTS[@]}"; do port_free "$p"; done
# curl must not pick up a proxy from the environment
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

# ---------------------------------------------------------------- origin
mkdir -p "$TMP/www" "$TMP/origin-tmp"
printf 'ferry forward bench: small response body, one hundred bytes long, used for measuring requests/s....\n' \
    >"$TMP/www/small.txt"   # 100 bytes
# the big file is sparse (zeros): no disk writes; the page cache holds it after the first read
truncate -s "${TUNNEL_MB}M" "$TMP/www/big.bin"
chmod 755 "$TMP/www"; chmod 644 "$TMP/www"/*
SMALL_BYTES=$(stat -c %s "$TMP/www/small.txt")
BIG_BYTES=$(stat -c %s "$TMP/www/big.bin")
cat >"$TMP/origin.conf" <<EOF
# bench/forward.sh origin (static files), written per run
worker_processes 1;
pid $TMP/origin.pid;
error_log $TMP/origin-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path $TMP/origin-tmp/client_body;
    proxy_temp_path $TMP/origin-tmp/proxy;
    fastcgi_temp_path $TMP/origin-tmp/fastcgi;
    uwsgi_temp_path $TMP/origin-tmp/uwsgi;
    scgi_temp_path $TMP/origin-tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    tcp_nodelay on;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16 inactive=300s;
    open_file_cache_valid 300s;
    server {
        listen 127.0.0.1:$P_ORIGIN backlog=4096;
        root $TMP/www;
        location = /nginx_status { stub_status; }
    }
}
EOF
start origin "$LOAD_CPU" nginx -e "$TMP/origin-error.log" -p "$TMP/origin-tmp" -c "$TMP/origin.conf" -g 'daemon off;'
PID_ORIGIN=$LAST_PID
listen_ours origin "$PID_ORIGIN" "$P_ORIGIN"
cat "$TMP/www/big.bin" >/dev/null   # into the page cache before anything is timed

# ---------------------------------------------------------------- proxies
CONFIGS=(direct)
FWD_CMD=()
if ((!SKIP_FORWARDD)); then
    FWD_CMD=("$FORWARDD" --listen "127.0.0.1:${PORT_OF[forwardd]}" --workers 1
        --allow-dest 127.0.0.0/8 --connect-ports "$P_ORIGIN" ${FWD_EXTRA[@]+"${FWD_EXTRA[@]}"})
    FWD_BUILD=$(for f in "$FORWARDD" $(ldd "$FORWARDD" 2>/dev/null | awk '/libferry/ { print $3 }'); do
        printf '%s %s %s; ' "$(basename "$f")" "$(sha256sum "$f" | cut -c1-12)" "$(date -u -r "$f" +%FT%TZ)"
    done)
    start forwardd "$PROXY_CPU" "${FWD_CMD[@]}"
    PID_OF[forwardd]=$LAST_PID
    listen_ours forwardd "$LAST_PID" "${PORT_OF[forwardd]}"
    [[ -s $TMP/forwardd.log ]] && warn "forwardd printed at startup: $(head -c 300 "$TMP/forwardd.log")"
    CONFIGS+=(forwardd)
fi

# squid: no disk cache (no cache_dir), nothing cached in memory (cache deny all), no
# access log, one worker, foreground (-N). Started as root it switches to
# cache_effective_user, which then needs to write its own directory.
mkdir -p "$TMP/squid"
SQUID_USER_LINE=
if [[ $(id -u) == 0 ]]; then
    su=proxy; id -u "$su" >/dev/null 2>&1 || su=nobody
    SQUID_USER_LINE="cache_effective_user $su"
    chown "$su" "$TMP/squid"
fi
cat >"$TMP/squid.conf" <<EOF
# bench/forward.sh squid, written per run
http_port 127.0.0.1:${PORT_OF[squid]}
workers 1
$SQUID_USER_LINE
cache deny all
cache_mem 0 MB
pid_filename $TMP/squid/squid.pid
cache_log $TMP/squid/cache.log
access_log none
cache_store_log none
netdb_filename none
coredump_dir $TMP/squid
pinger_enable off
digest_generation off
shutdown_lifetime 0 seconds
acl SSL_ports port $P_ORIGIN
acl CONNECT method CONNECT
http_access deny CONNECT !SSL_ports
http_access allow localhost
http_access deny all
EOF
start squid "$PROXY_CPU" "$SQUID" -N -f "$TMP/squid.conf"
PID_OF[squid]=$LAST_PID
listen_ours squid "$LAST_PID" "${PORT_OF[squid]}"
CONFIGS+=(squid)

# tinyproxy: one process, a thread per client connection (it has no worker setting);
# foreground (-d). It closes the client connection after every response.
cat >"$TMP/tinyproxy.conf" <<EOF
# bench/forward.sh tinyproxy, written per run
Port ${PORT_OF[tinyproxy]}
Listen 127.0.0.1
Timeout 600
MaxClients 1024
LogLevel Warning
PidFile "$TMP/tinyproxy.pid"
Allow 127.0.0.1
ConnectPort $P_ORIGIN
EOF
start tinyproxy "$PROXY_CPU" tinyproxy -d -c "$TMP/tinyproxy.conf"
PID_OF[tinyproxy]=$LAST_PID
listen_ours tinyproxy "$LAST_PID" "${PORT_OF[tinyproxy]}"
CONFIGS+=(tinyproxy)

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

# ---------------------------------------------------------------- correctness check
# Per proxy, before anything is measured:
#   small:  two absolute-form GETs (curl -x) in one curl run: status 200 both times, body
#           identical to the origin's file; the number of connections curl opened tells
#           whether the proxy keeps the client connection alive (not a failure if not).
#   tunnel: GET through a CONNECT tunnel (curl -p -x): CONNECT answered 200, then 200 and
#           the exact body.
# A failed check is an error: that config is left out of the phase, the script exits 1.
: >"$TMP/checks.tsv"
declare -A CHECK_OK=() KEEPALIVE=()
URL_SMALL="http://127.0.0.1:$P_ORIGIN/small.txt"
URL_BIG="http://127.0.0.1:$P_ORIGIN/big.bin"
for cfg in "${CONFIGS[@]}"; do
    px=(--noproxy '*'); [[ $cfg == direct ]] || px=(-x "http://127.0.0.1:${PORT_OF[$cfg]}")
    # small, absolute form (for direct: origin-form)
    body=$TMP/check-$cfg-small.body
    rc=0
    out=$(curl -sS --stderr "$body.err" --max-time 5 "${px[@]}" -o "$body" -o "$body.2" \
        -w '%{http_code} %{num_connects}\n' "$URL_SMALL" "$URL_SMALL") || rc=$?
    codes=$(echo "$out" | awk '{printf "%s%s", (NR>1?",":""), $1}')
    conns=$(echo "$out" | awk '{s += $2} END {print s + 0}')
    problem=
    [[ $rc == 0 ]] || problem="curl exit $rc: $(head -c 200 "$body.err")"
    [[ -z $problem && $codes != 200,200 ]] && problem="HTTP status $codes"
    if [[ -z $problem ]]; then
        cmp -s "$body" "$TMP/www/small.txt" && cmp -s "$body.2" "$TMP/www/small.txt" ||
            problem="body differs from origin file ($(stat -c %s "$body") bytes, want $SMALL_BYTES)"
    fi
    [[ -z $problem ]] || conns=-   # only a good check says anything about keep-alive
    KEEPALIVE[$cfg]=$conns
    printf '%s\t%s\t%s\n' "$cfg" small "${problem:-ok}" >>"$TMP/checks.tsv"
    printf '%s\t%s\t%s\n' "$cfg" keepalive "$conns" >>"$TMP/checks.tsv"
    if [[ -z $problem ]]; then CHECK_OK[$cfg/small]=1; else warn "CHECK FAILED $cfg small ($URL_SMALL): $problem"; fi
    # tunnel
    [[ $cfg == direct ]] && { CHECK_OK[$cfg/tunnel]=1; printf '%s\ttunnel\tok\n' "$cfg" >>"$TMP/checks.tsv"; continue; }
    body=$TMP/check-$cfg-tunnel.body
    rc=0
    out=$(curl -sS --stderr "$body.err" --max-time 5 -p "${px[@]}" -o "$body" \
        -w '%{http_connect} %{http_code}' "$URL_SMALL") || rc=$?
    problem=
    [[ $rc == 0 ]] || problem="curl exit $rc (CONNECT status ${out%% *}): $(head -c 200 "$body.err")"
    [[ -z $problem && $out != "200 200" ]] && problem="CONNECT status ${out%% *}, HTTP status ${out##* }"
    [[ -z $problem ]] && ! cmp -s "$body" "$TMP/www/small.txt" &&
        problem="body through the tunnel differs from origin file ($(stat -c %s "$body") bytes, want $SMALL_BYTES)"
    printf '%s\t%s\t%s\n' "$cfg" tunnel "${problem:-ok}" >>"$TMP/checks.tsv"
    if [[ -z $problem ]]; then CHECK_OK[$cfg/tunnel]=1; else warn "CHECK FAILED $cfg tunnel (CONNECT 127.0.0.1:$P_ORIGIN): $problem"; fi
    alive "$cfg" || mark_dead "$cfg"
done

# ---------------------------------------------------------------- wrk scripts
# request() returns one fixed string, for direct too, so wrk does the same work per
# request in every config.
lua_req() {
    cat >"$1" <<EOF
-- bench/forward.sh, written per run
local req = "GET $2 HTTP/1.1\r\nHost: 127.0.0.1:$P_ORIGIN\r\n\r\n"
request = function() return req end
EOF
}
lua_req "$TMP/direct.lua" /small.txt
lua_req "$TMP/absolute.lua" "$URL_SMALL"
wrk_cmd() {   # wrk_cmd CFG SECONDS [--latency]: the wrk command line for CFG
    local script=$TMP/absolute.lua
    [[ $1 == direct ]] && script=$TMP/direct.lua
    WRK=(wrk -t1 -c"$CONNS" -d"${2}s" ${3:+"$3"} -s "$script" "http://127.0.0.1:${PORT_OF[$1]}/")
}

SMALL_CONFIGS=() TUNNEL_CONFIGS=()
for cfg in "${CONFIGS[@]}"; do
    [[ -n ${CHECK_OK[$cfg/small]:-} ]] && SMALL_CONFIGS+=("$cfg")
    [[ -n ${CHECK_OK[$cfg/tunnel]:-} ]] && TUNNEL_CONFIGS+=("$cfg")
done

# ---------------------------------------------------------------- 1. small requests
if ((WARMUP > 0)); then
    log "warm-up: ${WARMUP} s per config"
    for cfg in "${SMALL_CONFIGS[@]}"; do
        alive "$cfg" || { mark_dead "$cfg"; continue; }
        wrk_cmd "$cfg" "$WARMUP"
        timeout $((WARMUP + 20)) taskset -c "$LOAD_CPU" ${NICE_CMD[@]+"${NICE_CMD[@]}"} "${WRK[@]}" \
            >>"$TMP/warmup.log" 2>&1 || true
        alive "$cfg" || mark_dead "$cfg"
    done
fi

log "small requests: ${ROUNDS} rounds x ${#SMALL_CONFIGS[@]} configs x ${DURATION} s"
: >"$TMP/runs.tsv"
for round in $(seq "$ROUNDS"); do
    # rotate the order each round so drift does not always hit the same config
    order=()
    n=${#SMALL_CONFIGS[@]}
    for i in "${!SMALL_CONFIGS[@]}"; do order+=("${SMALL_CONFIGS[$(((i + round - 1) % n))]}"); done
    for cfg in "${order[@]}"; do
        out="$TMP/wrk-$cfg-$round.txt"
        pid=${PID_OF[$cfg]}
        if ! alive "$cfg"; then
            mark_dead "$cfg"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg" "$round" "$out" dead - "$HZ" - - - - - - >>"$TMP/runs.tsv"
            continue
        fi
        wrk_cmd "$cfg" "$DURATION" --latency
        read -r acc0 req0 < <(origin_stats)
        t0=0; [[ $pid == - ]] || t0=$(cpu_ticks "$pid")
        o0=$(cpu_ticks "$PID_ORIGIN")
        b0=$(cpu_busy "$PROXY_CPU") l0=$(cpu_busy "$LOAD_CPU")
        reaped_ticks; w0=$REAPED   # last, so no other child of ours is counted as wrk
        s0=$EPOCHREALTIME
        rc=0
        # timeout: a wedged proxy must not hang the benchmark
        timeout $((DURATION + 20)) taskset -c "$LOAD_CPU" ${NICE_CMD[@]+"${NICE_CMD[@]}"} "${WRK[@]}" >"$out" 2>&1 || rc=$?
        s1=$EPOCHREALTIME
        reaped_ticks; w1=$REAPED   # first, before any other child of ours is reaped
        wall_us=$(( 10#${s1//[.,]/} - 10#${s0//[.,]/} ))
        ticks=-; [[ $pid == - ]] || ticks=$(($(cpu_ticks "$pid") - t0))
        busy=$(($(cpu_busy "$PROXY_CPU") - b0)) lbusy=$(($(cpu_busy "$LOAD_CPU") - l0))
        lours=$(($(cpu_ticks "$PID_ORIGIN") - o0 + w1 - w0))   # origin + wrk
        read -r acc1 req1 < <(origin_stats)
        dacc=-; dreq=-
        if [[ $acc0 != - && $acc1 != - ]]; then dacc=$((acc1 - acc0 - 1)); dreq=$((req1 - req0 - 1)); fi
        alive "$cfg" || { rc=dead; mark_dead "$cfg"; }
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg" "$round" "$out" "$rc" "$ticks" "$HZ" "$dacc" "$dreq" "$busy" "$lbusy" "$lours" "$wall_us" >>"$TMP/runs.tsv"
        log "round $round/$ROUNDS small $cfg: $("$PY" "$HERE/forward_report.py" summary "$out" "$ticks" "$HZ" "$dreq" "${KEEPALIVE[$cfg]}" "$CONNS")"
        sleep 0.3   # let sockets wind down between runs
    done
done

# ---------------------------------------------------------------- 2. CONNECT tunnel
# Per run: TUNNEL_COUNT downloads of big.bin, each a fresh curl (a new CONNECT through a
# proxy; direct: plain GET). curl's -w line per download goes to a file (no command
# substitution, so the reaped-ticks reading of curl stays clean).
log "CONNECT tunnel: ${ROUNDS} rounds x ${#TUNNEL_CONFIGS[@]} configs x ${TUNNEL_COUNT} download(s) of ${TUNNEL_MB} MiB"
: >"$TMP/tunnel.tsv"
TUNNEL_FMT='%{http_connect} %{http_code} %{size_download} %{time_total} %{speed_download}\n'
for round in $(seq "$ROUNDS"); do
    order=()
    n=${#TUNNEL_CONFIGS[@]}
    for i in "${!TUNNEL_CONFIGS[@]}"; do order+=("${TUNNEL_CONFIGS[$(((i + round - 1) % n))]}"); done
    for cfg in "${order[@]}"; do
        out="$TMP/tunnel-$cfg-$round.txt"
        : >"$out"
        pid=${PID_OF[$cfg]}
        if ! alive "$cfg"; then
            mark_dead "$cfg"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg" "$round" "$out" dead - "$HZ" - - - - >>"$TMP/tunnel.tsv"
            continue
        fi
        px=(--noproxy '*'); [[ $cfg == direct ]] || px=(-p -x "http://127.0.0.1:${PORT_OF[$cfg]}")
        t0=0; [[ $pid == - ]] || t0=$(cpu_ticks "$pid")
        o0=$(cpu_ticks "$PID_ORIGIN")
        b0=$(cpu_busy "$PROXY_CPU") l0=$(cpu_busy "$LOAD_CPU")
        reaped_ticks; w0=$REAPED
        s0=$EPOCHREALTIME
        rc=0
        for _ in $(seq "$TUNNEL_COUNT"); do
            timeout $((TUNNEL_TIMEOUT + 10)) taskset -c "$LOAD_CPU" ${NICE_CMD[@]+"${NICE_CMD[@]}"} \
                curl -s --max-time "$TUNNEL_TIMEOUT" "${px[@]}" -o /dev/null -w "$TUNNEL_FMT" "$URL_BIG" \
                >>"$out" 2>>"$out.err" || { rc=$?; break; }
        done
        s1=$EPOCHREALTIME
        reaped_ticks; w1=$REAPED
        ticks=-; [[ $pid == - ]] || ticks=$(($(cpu_ticks "$pid") - t0))
        busy=$(($(cpu_busy "$PROXY_CPU") - b0)) lbusy=$(($(cpu_busy "$LOAD_CPU") - l0))
        lours=$(($(cpu_ticks "$PID_ORIGIN") - o0 + w1 - w0))   # origin + curl
        wall_us=$(( 10#${s1//[.,]/} - 10#${s0//[.,]/} ))
        alive "$cfg" || { rc=dead; mark_dead "$cfg"; }
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg" "$round" "$out" "$rc" "$ticks" "$HZ" "$wall_us" "$busy" "$lbusy" "$lours" >>"$TMP/tunnel.tsv"
        log "round $round/$ROUNDS tunnel $cfg: $("$PY" "$HERE/forward_report.py" tsummary "$out" "$ticks" "$HZ" "$BIG_BYTES" "$cfg" "$rc")"
        sleep 0.3
    done
done

# ---------------------------------------------------------------- report
mkdir -p "$RESULTS"
out="$RESULTS/forward-$TS.json"
fwd_meta="skipped" fwd_build=-
if ((!SKIP_FORWARDD)); then
    fwd_meta="${FWD_CMD[*]}"
    # the binary and the libferry it loaded, as of the start (a rebuild may replace them later)
    fwd_build=$FWD_BUILD
fi
rc=0
"$PY" "$HERE/forward_report.py" report --tmp "$TMP" --out "$out" \
    --meta "timestamp=$TS" --meta "duration_s=$DURATION" --meta "rounds=$ROUNDS" \
    --meta "connections=$CONNS" --meta "proxy_cpu=$PROXY_CPU" --meta "load_cpu=$LOAD_CPU" --meta "nice=$NICE" \
    --meta "small_bytes=$SMALL_BYTES" --meta "big_bytes=$BIG_BYTES" --meta "tunnel_count=$TUNNEL_COUNT" \
    --meta "forwardd=$fwd_meta" --meta "forwardd_build=$fwd_build" \
    --meta "git_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --meta "squid=$("$SQUID" -v 2>&1 | head -n1)" \
    --meta "tinyproxy=$(tinyproxy -v 2>&1 | head -n1)" \
    --meta "nginx=$(nginx -v 2>&1 | head -n1)" \
    --meta "wrk=$(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)" \
    --meta "curl=$(curl -V | head -n1 | cut -d' ' -f1-2)" \
    --meta "kernel=$(uname -r)" --meta "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)" \
    --meta "nproc=$(nproc)" || rc=$?
FAILED=$rc
exit "$rc"
