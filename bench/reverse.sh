#!/usr/bin/env bash
# bench/reverse.sh - reverse proxy with 4 backends, all in one run, loopback only.
#   Like http.sh, but every proxy spreads requests round-robin over FOUR origin
#   backends and runs active health checks against them: `reversed --mode http`
#   (--lb roundrobin --health-check /health --health-interval 2000), nginx
#   (upstream round-robin; open-source nginx has passive checks only: max_fails /
#   fail_timeout) and haproxy (balance roundrobin, option httpchk GET /health,
#   check inter 2s). One worker each, upstream keep-alive on in each.
#   wrk -t1 -c64 --latency (keep-alive) for a small (~100 B) and a 64 KiB response.
#   Reports requests/s, p99, proxy CPU time per request (utime+stime delta of the
#   proxy's process tree / requests), how the requests were spread over the four
#   origins (counted by the origins), and the health checks the origins saw.
# Prints a table and writes bench/results/reverse-<timestamp>.json. See bench/README.md.
#
# Knobs (environment): DURATION=5 ROUNDS=3 WARMUP=1 CONNS=64 PROXY_CPU=0 LOAD_CPU=1
#   NICE=0 (e.g. -10: run proxies, origins and wrk at that nice level)  KEEP_TMP=1
#   REVERSED=path (default build/examples/reversed/reversed)
#   REVERSED_ARGS="..." extra arguments for reversed
#   HEALTH_INTERVAL_MS=2000 (reversed --health-interval, haproxy check inter)
#   QUIET_PCT=0 (e.g. 20: before each run wait, at most QUIET_MAX_WAIT=60 s, until
#   PROXY_CPU + LOAD_CPU were less than that % busy over 2 s: on a shared box)
# Flag: --skip-reversed  run only nginx + haproxy
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
PY=/usr/bin/python3
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
NICE=${NICE:-0}
HEALTH_INTERVAL_MS=${HEALTH_INTERVAL_MS:-2000}
QUIET_PCT=${QUIET_PCT:-0}
QUIET_MAX_WAIT=${QUIET_MAX_WAIT:-60}
if [[ -z ${REVERSED:-} ]]; then
    REVERSED=$ROOT/build/examples/reversed/reversed
fi
SKIP_REVERSED=0
read -r -a REV_EXTRA <<<"${REVERSED_ARGS:-}"
RESULTS=$HERE/results
SIZES=(small big)
declare -A PATH_OF=([small]=/small.txt [big]=/big.bin)
NORIGINS=4
# nginx writes the per-origin request counters (access logs with a 1-byte format) in
# 64 KiB chunks, at the latest 1 s after a request: wait this long before reading them.
FLUSH_WAIT=1.3

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
for arg in "$@"; do
    case $arg in
        --skip-reversed) SKIP_REVERSED=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

die() { echo "reverse.sh: error: $*" >&2; exit 1; }
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
log() { echo "== $*" >&2; }
warn() { echo "reverse.sh: WARNING: $*" >&2; }

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
  or set REVERSED=/path/to/reversed, or pass --skip-reversed for nginx + haproxy only"
fi
if ((!SKIP_REVERSED)); then
    rev_help=$("$REVERSED" --help 2>&1) || true
    for flag in --lb --health-check --health-interval; do
        [[ $rev_help == *"$flag"* ]] || die "$REVERSED has no $flag option (too old a build?)"
    done
fi

taskset -c "$PROXY_CPU" true 2>/dev/null || die "cannot pin to CPU $PROXY_CPU"
taskset -c "$LOAD_CPU" true 2>/dev/null || die "cannot pin to CPU $LOAD_CPU"
NICE_CMD=()
if [[ $NICE != 0 ]]; then
    nice -n "$NICE" true 2>/dev/null || die "cannot run at nice $NICE"
    NICE_CMD=(nice -n "$NICE")
fi
ulimit -Sn 65536 2>/dev/null || ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
# curl must not pick up a proxy from the environment
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

# ---------------------------------------------------------------- process bookkeeping
TMP=$(mktemp -d /tmp/ferry-bench-reverse.XXXXXX)
chmod 755 "$TMP"   # nginx workers (user nobody when started as root) write/read below
PIDS=()      # every background process we started, killed by PID on exit (lib.sh start)
LAST_PID=
FAILED=1     # cleared at the very end; keeps TMP around for post-mortem on failure

# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
    stop_started 30   # up to 3 s for a graceful stop, then SIGKILL by saved PID
    if ((FAILED)) || [[ ${KEEP_TMP:-0} == 1 ]]; then
        echo "reverse.sh: logs kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

HZ=$(getconf CLK_TCK)
TS=$(date -u +%Y%m%dT%H%M%SZ)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
mapfile -t PORTS < <("$PY" "$HERE/idle_conns.py" freeports $((NORIGINS + 3)))   # distinct free loopback ports
for p in "${PORTS[@]}"; do port_free "$p"; done
ORIGIN_PORTS=("${PORTS[@]:0:NORIGINS}")
declare -A PORT_OF=([reversed]=${PORTS[NORIGINS]} [nginx]=${PORTS[NORIGINS + 1]} [haproxy]=${PORTS[NORIGINS + 2]})
declare -A PID_OF=()

# origin_stats: "accepts requests" from the origin's stub_status page (one nginx serves
# all four origin ports, so these are totals). Our own status request counts as one of each.
origin_stats() {
    curl -s --max-time 2 "http://127.0.0.1:${ORIGIN_PORTS[0]}/nginx_status" |
        awk 'NR == 3 { print $1, $3; ok = 1 } END { if (!ok) print "- -" }'
}

# origin_counts: data requests (/small.txt, /big.bin) each origin served so far, as
# "n1,n2,n3,n4": every request writes 2 bytes ".\n" to that origin's counter log.
# The logs are buffered (up to FLUSH_WAIT behind).
origin_counts() {
    local i s out=
    for i in $(seq "$NORIGINS"); do
        s=$(stat -c %s "$TMP/origin$i-data.log" 2>/dev/null || echo 0)
        out+=${out:+,}$((s / 2))
    done
    echo "$out"
}

# health_counts: "reversed haproxy other" totals of /health requests over all origins,
# told apart by User-Agent (reversed sends ferry-health-check, haproxy none). Unbuffered.
health_counts() {
    cat "$TMP"/origin*-health.log 2>/dev/null |
        awk '{ if ($0 == "ferry-health-check") r++; else if ($0 == "-") h++; else o++ }
             END { print r + 0, h + 0, o + 0 }'
}

# health_per_origin: one line per origin: "reversed haproxy other" /health requests.
health_per_origin() {
    local i
    for i in $(seq "$NORIGINS"); do
        awk '{ if ($0 == "ferry-health-check") r++; else if ($0 == "-") h++; else o++ }
             END { print r + 0, h + 0, o + 0 }' "$TMP/origin$i-health.log" 2>/dev/null || echo "0 0 0"
    done
}

# two_cpu_ticks: "busy total" ticks of PROXY_CPU + LOAD_CPU from /proc/stat.
two_cpu_ticks() {
    awk -v a="cpu$PROXY_CPU" -v b="cpu$LOAD_CPU" '$1 == a || $1 == b {
        busy += $2 + $3 + $4 + $7 + $8 + $9; total += $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }
        END { print busy, total }' /proc/stat
}

# wait_quiet: with QUIET_PCT > 0, wait (at most QUIET_MAX_WAIT s) until our two CPUs
# were less than QUIET_PCT % busy over 2 s (between runs our processes are idle, so
# that is other jobs). Sets QUIET_WAITED (s) and QUIET_LAST (% busy last seen).
wait_quiet() {
    local t0=$SECONDS b0 a0 b1 a1
    QUIET_WAITED=0 QUIET_LAST=-
    ((QUIET_PCT > 0)) || return 0
    while :; do
        read -r b0 a0 < <(two_cpu_ticks); sleep 2; read -r b1 a1 < <(two_cpu_ticks)
        QUIET_LAST=$((100 * (b1 - b0) / (a1 - a0 + 1)))
        QUIET_WAITED=$((SECONDS - t0))
        ((QUIET_LAST < QUIET_PCT)) && return 0
        if ((QUIET_WAITED >= QUIET_MAX_WAIT)); then
            warn "CPUs $PROXY_CPU+$LOAD_CPU still ${QUIET_LAST}% busy after ${QUIET_WAITED} s; measuring anyway"
            return 0
        fi
    done
}

# origin_cfg FILE: ONE static-file nginx (1 worker) listening on the four origin
# ports, one server block each. Each block counts its data requests in its own access
# log (1-byte format, buffered) and logs /health requests with their User-Agent.
origin_cfg() {
    local i
    {
        cat <<EOF
# bench/reverse.sh origins (static files), written per run
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
    log_format count '.';
    log_format health '\$http_user_agent';
EOF
        for i in $(seq "$NORIGINS"); do
            cat <<EOF
    server {
        listen 127.0.0.1:${ORIGIN_PORTS[i - 1]} backlog=4096;
        root $TMP/www;
        location / { access_log $TMP/origin$i-data.log count buffer=64k flush=1s; }
        location = /health { access_log $TMP/origin$i-health.log health; return 200 "ok\n"; }
        location = /nginx_status { stub_status; }
    }
EOF
        done
        echo "}"
    } >"$1"
}

# nginx_proxy_cfg FILE LISTEN_PORT: reverse proxy, 1 worker, round-robin (nginx's
# default) over the four origins, upstream keep-alive, passive health checks only
# (open-source nginx has no active ones): 3 failures in 10 s take a server out for 10 s.
nginx_proxy_cfg() {
    local p servers=
    for p in "${ORIGIN_PORTS[@]}"; do
        servers+="        server 127.0.0.1:$p max_fails=3 fail_timeout=10s;"$'\n'
    done
    cat >"$1" <<EOF
# bench/reverse.sh nginx reverse proxy, written per run
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
$(nginx_common "$TMP/nginx-tmp")
    upstream origins {
$servers        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$2 backlog=4096;
        location / {
            proxy_pass http://origins;
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

# haproxy_cfg FILE LISTEN_PORT: mode http, 1 thread, balance roundrobin over the four
# origins, active checks (GET /health every HEALTH_INTERVAL_MS; default rise 2 fall 3,
# as reversed), keep-alive both sides (http-reuse safe, the default).
haproxy_cfg() {
    local i servers=
    for i in $(seq "$NORIGINS"); do
        servers+="    server s$i 127.0.0.1:${ORIGIN_PORTS[i - 1]}"$'\n'
    done
    cat >"$1" <<EOF
# bench/reverse.sh haproxy, written per run; no 'daemon': foreground under our control (-db)
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
    timeout check 1s

frontend fe
    bind 127.0.0.1:$2
    default_backend be

backend be
    # what reversed sends upstream by default: the client's Host and X-Forwarded-*
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    balance roundrobin
    option httpchk GET /health
    default-server check inter ${HEALTH_INTERVAL_MS}ms maxconn 1000
$servers
EOF
}

# ---------------------------------------------------------------- origins
mkdir -p "$TMP/www"
# ~100 bytes of text; 64 KiB of random bytes (the check compares bodies byte for byte)
printf 'ferry reverse bench: small response body, about one hundred bytes long, for requests/s...\n' \
    >"$TMP/www/small.txt"
head -c 65536 /dev/urandom >"$TMP/www/big.bin"
chmod 755 "$TMP/www"; chmod 644 "$TMP/www"/*
for i in $(seq "$NORIGINS"); do : >"$TMP/origin$i-data.log"; : >"$TMP/origin$i-health.log"; done
chmod 666 "$TMP"/origin*-data.log "$TMP"/origin*-health.log
origin_cfg "$TMP/origin.conf"
start origin "$LOAD_CPU" nginx -e "$TMP/origin-error.log" -p "$TMP/origin-tmp" -c "$TMP/origin.conf" -g 'daemon off;'
PID_ORIGIN=$LAST_PID
for p in "${ORIGIN_PORTS[@]}"; do listen_ours origin "$PID_ORIGIN" "$p"; done

# ---------------------------------------------------------------- proxies
CONFIGS=()
T_PROXIES=$(date +%s.%N)   # health checks start about now
if ((!SKIP_REVERSED)); then
    rev_backends=()
    for p in "${ORIGIN_PORTS[@]}"; do rev_backends+=(--backend "127.0.0.1:$p"); done
    REV_CMD=("$REVERSED" --mode http --workers 1 --listen "127.0.0.1:${PORT_OF[reversed]}"
        "${rev_backends[@]}" --lb roundrobin --health-check /health
        --health-interval "$HEALTH_INTERVAL_MS" ${REV_EXTRA[@]+"${REV_EXTRA[@]}"})
    start reversed "$PROXY_CPU" "${REV_CMD[@]}"
    PID_OF[reversed]=$LAST_PID
    listen_ours reversed "$LAST_PID" "${PORT_OF[reversed]}"
    CONFIGS+=(reversed)
fi
nginx_proxy_cfg "$TMP/nginx.conf" "${PORT_OF[nginx]}"
start nginx "$PROXY_CPU" nginx -e "$TMP/nginx-error.log" -p "$TMP/nginx-tmp" -c "$TMP/nginx.conf" -g 'daemon off;'
PID_OF[nginx]=$LAST_PID
listen_ours nginx "$LAST_PID" "${PORT_OF[nginx]}"
CONFIGS+=(nginx)
haproxy_cfg "$TMP/haproxy.cfg" "${PORT_OF[haproxy]}"
start haproxy "$PROXY_CPU" haproxy -f "$TMP/haproxy.cfg" -db
PID_OF[haproxy]=$LAST_PID
listen_ours haproxy "$LAST_PID" "${PORT_OF[haproxy]}"
CONFIGS+=(haproxy)

: >"$TMP/checks.tsv"

# ---------------------------------------------------------------- health checks seen?
# Wait (max 4 intervals + 2 s) until every origin has answered at least 2 checks (the
# default rise) from reversed and from haproxy: checks are on and have passed.
log "waiting for active health checks at all $NORIGINS origins"
deadline=$(($(date +%s) + 4 * HEALTH_INTERVAL_MS / 1000 + 2))
while :; do
    mapfile -t hper < <(health_per_origin)
    short=()
    for i in "${!hper[@]}"; do
        read -r hr hh _ <<<"${hper[i]}"
        ((SKIP_REVERSED || hr >= 2)) || short+=("reversed@origin$((i + 1))")
        ((hh >= 2)) || short+=("haproxy@origin$((i + 1))")
    done
    ((${#short[@]} == 0)) && break
    if (($(date +%s) >= deadline)); then
        warn "too few health checks seen: ${short[*]}"
        break
    fi
    sleep 0.5
done
for cfg in "${CONFIGS[@]}"; do
    res=ok
    case $cfg in
        nginx) res="passive only" ;;
        *) for s in ${short[@]+"${short[@]}"}; do [[ $s == "$cfg@"* ]] && res="too few checks seen at ${s#*@}" && break; done ;;
    esac
    printf '%s\t%s\t%s\n' "$cfg" health "$res" >>"$TMP/checks.tsv"
done

# ---------------------------------------------------------------- correctness check
# Per proxy and size, 2 x NORIGINS GETs in one curl run: status 200 every time, bodies
# byte-identical to the origin's file, and one client connection (keep-alive works).
NCHECK=$((2 * NORIGINS))
for cfg in "${CONFIGS[@]}"; do
    for size in "${SIZES[@]}"; do
        url="http://127.0.0.1:${PORT_OF[$cfg]}${PATH_OF[$size]}"
        args=()
        for n in $(seq "$NCHECK"); do args+=(-o "$TMP/check-$cfg-$size.$n" "$url"); done
        rc=0
        out=$(curl -s --max-time 10 -w '%{http_code} %{num_connects}\n' "${args[@]}" 2>&1) || rc=$?
        codes=$(echo "$out" | awk '{printf "%s%s", (NR>1?",":""), $1}')
        want=$(printf '200,%.0s' $(seq "$NCHECK")); want=${want%,}
        conns=$(echo "$out" | awk '{s += $2} END {print s + 0}')
        problem=
        [[ $rc == 0 ]] || problem="curl exit $rc"
        [[ -z $problem && $codes != "$want" ]] && problem="HTTP status $codes"
        if [[ -z $problem ]]; then
            for n in $(seq "$NCHECK"); do
                cmp -s "$TMP/check-$cfg-$size.$n" "$TMP/www${PATH_OF[$size]}" && continue
                problem="body $n differs from origin file ($(stat -c %s "$TMP/check-$cfg-$size.$n") bytes, want $(stat -c %s "$TMP/www${PATH_OF[$size]}"))"
                break
            done
        fi
        [[ -z $problem && $conns != 1 ]] && problem="no keep-alive: $NCHECK requests took $conns connections"
        printf '%s\t%s\t%s\n' "$cfg" "$size" "${problem:-ok}" >>"$TMP/checks.tsv"
        [[ -z $problem ]] || warn "check $cfg $size ($url): $problem"
    done
done

# a proxy that failed its check is not measured (its figures would mean nothing); the
# report lists the failure and the script exits 1
measured=()
for cfg in "${CONFIGS[@]}"; do
    if awk -F'\t' -v c="$cfg" '$1 == c && $2 != "health" && $3 != "ok" { bad = 1 } END { exit !bad }' "$TMP/checks.tsv"; then
        warn "$cfg failed its check: not measured"
    else
        measured+=("$cfg")
    fi
done
((${#measured[@]})) || die "no proxy passed its check"
CONFIGS=("${measured[@]}")

# alive CFG: 0 if the config's process is running.
alive() { kill -0 "${PID_OF[$1]}" 2>/dev/null; }
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
sleep "$FLUSH_WAIT"   # counter logs flushed: the first run's "before" reading is exact

# ---------------------------------------------------------------- measured runs
log "measure: ${ROUNDS} rounds x ${#SIZES[@]} sizes x ${#CONFIGS[@]} configs x ${DURATION} s"
: >"$TMP/runs.tsv"
row() { local IFS=$'\t'; echo "$*" >>"$TMP/runs.tsv"; }
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
                row "$cfg" "$size" "$round" "$out" dead - "$HZ" - - - - - -
                continue
            fi
            wait_quiet
            read -r acc0 _ < <(origin_stats)
            read -r hr0 hh0 ho0 < <(health_counts)
            oc0=$(origin_counts)
            t0=$(cpu_ticks "$pid")
            o0=$(cpu_ticks "$PID_ORIGIN")
            b0=$(cpu_busy "$PROXY_CPU") l0=$(cpu_busy "$LOAD_CPU")
            reaped_ticks; w0=$REAPED   # last, so no other child of ours is counted as wrk
            rc=0
            # timeout: a wedged proxy must not hang the benchmark
            timeout $((DURATION + 20)) taskset -c "$LOAD_CPU" ${NICE_CMD[@]+"${NICE_CMD[@]}"} wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
                "http://127.0.0.1:${PORT_OF[$cfg]}${PATH_OF[$size]}" >"$out" 2>&1 || rc=$?
            reaped_ticks; w1=$REAPED   # first, before any other child of ours is reaped
            ticks=$(($(cpu_ticks "$pid") - t0))
            busy=$(($(cpu_busy "$PROXY_CPU") - b0)) lbusy=$(($(cpu_busy "$LOAD_CPU") - l0))
            lours=$(($(cpu_ticks "$PID_ORIGIN") - o0 + w1 - w0))   # origins + wrk
            alive "$cfg" || { rc=dead; mark_dead "$cfg"; }
            sleep "$FLUSH_WAIT"   # in-flight requests land, counter logs are flushed
            oc1=$(origin_counts)
            read -r hr1 hh1 ho1 < <(health_counts)
            read -r acc1 _ < <(origin_stats)
            # per-origin data requests during the run
            per=$(paste -d' ' <(tr , '\n' <<<"$oc1") <(tr , '\n' <<<"$oc0") | awk '{printf "%s%d", (NR>1?",":""), $1 - $2}')
            dhealth=$((hr1 - hr0 + hh1 - hh0 + ho1 - ho0))
            # connections the origins accepted, less our status request and the health
            # checks (each check is a connection of its own: both checkers close it)
            dacc=-
            [[ $acc0 != - && $acc1 != - ]] && dacc=$((acc1 - acc0 - 1 - dhealth))
            row "$cfg" "$size" "$round" "$out" "$rc" "$ticks" "$HZ" "$dacc" "$dhealth" "$per" "$busy" "$lbusy" "$lours"
            log "round $round/$ROUNDS $size $cfg: $("$PY" "$HERE/http_report.py" summary "$out" "$ticks" "$HZ"), per origin $per, origin conns opened $dacc$( ((QUIET_PCT > 0)) && echo ", waited ${QUIET_WAITED} s for quiet (${QUIET_LAST}% busy)")"
        done
    done
done

# ---------------------------------------------------------------- health checks seen
T_END=$(date +%s.%N)
{
    echo "seconds $(awk -v a="$T_PROXIES" -v b="$T_END" 'BEGIN { printf "%.1f", b - a }')"
    i=0
    while read -r hr hh ho; do
        i=$((i + 1))
        echo "origin$i $hr $hh $ho"
    done < <(health_per_origin)
} >"$TMP/health.txt"
# state changes the proxies logged (a backend marked down would skew the spread)
grep -iE 'health|down|unhealthy' "$TMP/reversed.log" >"$TMP/reversed-health.log" 2>/dev/null || true
grep -iE ' is DOWN| is UP' "$TMP/haproxy.log" >"$TMP/haproxy-health.log" 2>/dev/null || true
grep -iE 'upstream server temporarily disabled|no live upstreams' "$TMP/nginx-error.log" >"$TMP/nginx-health.log" 2>/dev/null || true

# ---------------------------------------------------------------- report
mkdir -p "$RESULTS"
out="$RESULTS/reverse-$TS.json"
rev_meta="skipped"
((SKIP_REVERSED)) || rev_meta="${REV_CMD[*]}"
rc=0
"$PY" "$HERE/reverse_report.py" report --tmp "$TMP" --out "$out" \
    --meta "timestamp=$TS" --meta "duration_s=$DURATION" --meta "rounds=$ROUNDS" \
    --meta "connections=$CONNS" --meta "proxy_cpu=$PROXY_CPU" --meta "load_cpu=$LOAD_CPU" --meta "nice=$NICE" \
    --meta "origins=$NORIGINS" --meta "origin_ports=${ORIGIN_PORTS[*]}" \
    --meta "health_interval_ms=$HEALTH_INTERVAL_MS" --meta "quiet_pct=$QUIET_PCT" \
    --meta "small_bytes=$(stat -c %s "$TMP/www/small.txt")" --meta "big_bytes=$(stat -c %s "$TMP/www/big.bin")" \
    --meta "reversed=$rev_meta" \
    --meta "git_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --meta "nginx=$(nginx -v 2>&1 | head -n1)" --meta "haproxy=$(haproxy -v | head -n1)" \
    --meta "wrk=$(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)" \
    --meta "kernel=$(uname -r)" --meta "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)" \
    --meta "nproc=$(nproc)" --meta "loadavg_start=$LOADAVG_START" --meta "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" || rc=$?
FAILED=$rc
exit "$rc"
