#!/usr/bin/env bash
# bench/tcp.sh - TCP proxy benchmark, all in one run, loopback only:
#   1. one-stream iperf3 throughput: direct, through `reversed --mode tcp`,
#      through haproxy `mode tcp` with splice-auto (reversed --no-splice, plain
#      and forced-splice haproxy as extra information), plus Gbit moved per
#      proxy CPU-second;
#   2. RSS growth per idle connection with IDLE_CONNS connections held open
#      through reversed and through haproxy.
# Prints a table and writes bench/results/tcp-<timestamp>.json. See bench/README.md.
#
# Knobs (environment): DURATION=5 ROUNDS=3 IDLE_CONNS=5000 PROXY_CPU=0 LOAD_CPU=1
#   REVERSED=path (default build/examples/reversed/reversed)  KEEP_TMP=1
#   REVERSED_ARGS="..." extra arguments for every reversed instance
# Flag: --skip-reversed  run only direct + haproxy (e.g. before reversed is built)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
PY=/usr/bin/python3
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
IDLE_CONNS=${IDLE_CONNS:-5000}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
if [[ -z ${REVERSED:-} ]]; then
    REVERSED=$ROOT/build/examples/reversed/reversed
fi
SKIP_REVERSED=0
read -r -a REV_EXTRA <<<"${REVERSED_ARGS:-}"
RESULTS=$HERE/results

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
for arg in "$@"; do
    case $arg in
        --skip-reversed) SKIP_REVERSED=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

die() { echo "tcp.sh: error: $*" >&2; exit 1; }
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
log() { echo "== $*" >&2; }

# ---------------------------------------------------------------- prerequisites
# Install only what is missing; `apt-get update` only when an install is needed.
missing=()
command -v iperf3  >/dev/null || missing+=(iperf3)
command -v haproxy >/dev/null || missing+=(haproxy)
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
  or set REVERSED=/path/to/reversed, or pass --skip-reversed for direct + haproxy only"
fi

# Pinning needs both CPUs to exist and be allowed for us.
taskset -c "$PROXY_CPU" true 2>/dev/null || die "cannot pin to CPU $PROXY_CPU"
taskset -c "$LOAD_CPU" true 2>/dev/null || die "cannot pin to CPU $LOAD_CPU"

# Each idle connection costs 2 fds in the proxy and 1 in each helper.
ulimit -Hn 65536 2>/dev/null || true
ulimit -Sn 65536 2>/dev/null || ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
# haproxy refuses to start unless ~2*maxconn fds are available, so size maxconn to fit.
HA_MAXCONN=$((IDLE_CONNS + 1000))
(( $(ulimit -Sn) >= 2 * HA_MAXCONN + 256 )) || die "open-file limit $(ulimit -Sn) too low for IDLE_CONNS=$IDLE_CONNS"

# ---------------------------------------------------------------- process bookkeeping
TMP=$(mktemp -d /tmp/ferry-bench-tcp.XXXXXX)
PIDS=()      # every background process we started, killed by PID on exit
LAST_PID=
FAILED=1     # cleared at the very end; keeps TMP around for post-mortem on failure

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 30); do  # up to 3 s for a graceful stop
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if ((FAILED)) || [[ ${KEEP_TMP:-0} == 1 ]]; then
        echo "tcp.sh: logs kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CPU CMD...: run CMD pinned to CPU in the background, log to TMP/NAME.log.
# taskset execs CMD, so $! is the PID of CMD itself (what we read /proc of).
start() {
    local name=$1 cpu=$2; shift 2
    taskset -c "$cpu" "$@" >"$TMP/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# stop PID: SIGTERM, bounded wait, SIGKILL; forget the PID so it is never signalled again.
stop() {
    local pid=$1 i keep=()
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for i in "${PIDS[@]}"; do [[ $i == "$pid" ]] || keep+=("$i"); done
    PIDS=("${keep[@]}")
}



# haproxy_cfg FILE LISTEN_PORT BACKEND_PORT SPLICE(auto|none|forced)
# "auto" is the tuned peer we compare against. Note: haproxy 2.6 on loopback was seen
# not to splice at all with splice-auto (strace: only recvfrom/sendto), so
# "forced" (splice-request + splice-response) is run as well, as extra information.
haproxy_cfg() {
    local splice
    case $4 in
        auto)   splice="option splice-auto" ;;
        forced) splice=$'option splice-request\n    option splice-response' ;;
        *)      splice="# no splice" ;;
    esac
    cat >"$1" <<EOF
global
    nbthread 1
    maxconn $HA_MAXCONN
    # no 'daemon': run in the foreground under our control (-db)

defaults
    mode tcp
    timeout connect 5s
    timeout client 5m
    timeout server 5m
    $splice

frontend fe
    bind 127.0.0.1:$2
    maxconn $HA_MAXCONN
    default_backend be

backend be
    server s1 127.0.0.1:$3 maxconn $HA_MAXCONN
EOF
}

HZ=$(getconf CLK_TCK)
TS=$(date -u +%Y%m%dT%H%M%SZ)
mapfile -t PORTS < <("$PY" "$HERE/idle_conns.py" freeports 9)   # distinct free loopback ports
P_IPERF=${PORTS[0]} P_REV=${PORTS[1]} P_BACK=${PORTS[2]} P_REV_IDLE=${PORTS[3]} P_HA_IDLE=${PORTS[4]}
P_REV_NS=${PORTS[8]}
declare -A HA_PORT=([haproxy-splice]=${PORTS[5]} [haproxy-plain]=${PORTS[6]} [haproxy-splice-forced]=${PORTS[7]})

# ---------------------------------------------------------------- 1. throughput
log "throughput: ${ROUNDS} rounds x ${DURATION} s per config"
start iperf3-server "$LOAD_CPU" iperf3 -s -B 127.0.0.1 -p "$P_IPERF"
PID_IPERF=$LAST_PID
wait_listen iperf3-server "$PID_IPERF" "$P_IPERF"

CONFIGS=(direct)
declare -A PORT_OF=([direct]=$P_IPERF) PID_OF=([direct]=-)
if ((!SKIP_REVERSED)); then
    start reversed "$PROXY_CPU" "$REVERSED" --listen "127.0.0.1:$P_REV" \
        --backend "127.0.0.1:$P_IPERF" --mode tcp --workers 1 ${REV_EXTRA[@]+"${REV_EXTRA[@]}"}
    wait_listen reversed "$LAST_PID" "$P_REV"
    CONFIGS+=(reversed); PORT_OF[reversed]=$P_REV; PID_OF[reversed]=$LAST_PID
    # extra: reversed splices by default; its user-space copy path, for comparison
    start reversed-nosplice "$PROXY_CPU" "$REVERSED" --listen "127.0.0.1:$P_REV_NS" \
        --backend "127.0.0.1:$P_IPERF" --mode tcp --workers 1 --no-splice ${REV_EXTRA[@]+"${REV_EXTRA[@]}"}
    wait_listen reversed-nosplice "$LAST_PID" "$P_REV_NS"
    CONFIGS+=(reversed-nosplice); PORT_OF[reversed-nosplice]=$P_REV_NS; PID_OF[reversed-nosplice]=$LAST_PID
fi
# name:splice-mode; each instance listens on its own port, all forward to iperf3.
for spec in haproxy-splice:auto haproxy-plain:none haproxy-splice-forced:forced; do
    name=${spec%%:*} port=${HA_PORT[$name]}
    haproxy_cfg "$TMP/$name.cfg" "$port" "$P_IPERF" "${spec#*:}"
    start "$name" "$PROXY_CPU" haproxy -f "$TMP/$name.cfg" -db
    wait_listen "$name" "$LAST_PID" "$port"
    CONFIGS+=("$name"); PORT_OF[$name]=$port; PID_OF[$name]=$LAST_PID
done

: >"$TMP/runs.tsv"
for round in $(seq "$ROUNDS"); do
    for cfg in "${CONFIGS[@]}"; do   # alternate configs so drift hits all of them alike
        pid=${PID_OF[$cfg]} out="$TMP/iperf-$cfg-$round.json"
        [[ $pid == - ]] || kill -0 "$pid" 2>/dev/null || { tail -n 20 "$TMP/$cfg.log" >&2; die "$cfg died"; }
        t0=0; [[ $pid == - ]] || t0=$(cpu_ticks "$pid")
        rc=0
        # timeout: a wedged proxy must not hang the benchmark
        timeout $((DURATION + 20)) taskset -c "$LOAD_CPU" \
            iperf3 -c 127.0.0.1 -p "${PORT_OF[$cfg]}" -t "$DURATION" -J >"$out" 2>>"$TMP/iperf3-client.log" || rc=$?
        ticks=-; [[ $pid == - ]] || ticks=$(($(cpu_ticks "$pid") - t0))
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg" "$round" "$out" "$rc" "$ticks" "$HZ" >>"$TMP/runs.tsv"
        log "round $round/$ROUNDS $cfg: $("$PY" "$HERE/tcp_report.py" gbps "$out") Gbit/s, proxy CPU ticks $ticks"
        sleep 0.3   # let sockets wind down between runs
    done
done

# Free CPU and memory before the idle test.
for cfg in "${CONFIGS[@]}"; do [[ ${PID_OF[$cfg]} == - ]] || stop "${PID_OF[$cfg]}"; done
stop "$PID_IPERF"

# ---------------------------------------------------------------- 2. idle connections
log "idle: $IDLE_CONNS connections per proxy"
start idle-backend "$LOAD_CPU" "$PY" "$HERE/idle_conns.py" backend --port "$P_BACK" \
    --status "$TMP/backend.status" --max-seconds 600
PID_BACK=$LAST_PID
wait_listen idle-backend "$PID_BACK" "$P_BACK"

# idle_run NAME PORT PID: hold IDLE_CONNS connections through the proxy, result in TMP.
idle_run() {
    local name=$1 port=$2 pid=$3
    wait_listen "$name" "$pid" "$port"
    sleep 0.5   # let the fresh process settle before the "before" RSS sample
    timeout 120 taskset -c "$LOAD_CPU" "$PY" "$HERE/idle_conns.py" clients --port "$port" \
        --pid "$pid" --status "$TMP/backend.status" --count "$IDLE_CONNS" --settle 1 \
        --timeout 60 >"$TMP/idle-$name.json" || die "idle client helper failed for $name"
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$TMP/$name.log" >&2; die "$name died during idle test"; }
    log "idle $name: $("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["rss_bytes_per_conn"], "B/conn, ok =", d["ok"])' "$TMP/idle-$name.json")"
    stop "$pid"
}

if ((!SKIP_REVERSED)); then
    start reversed-idle "$PROXY_CPU" "$REVERSED" --listen "127.0.0.1:$P_REV_IDLE" \
        --backend "127.0.0.1:$P_BACK" --mode tcp --workers 1 ${REV_EXTRA[@]+"${REV_EXTRA[@]}"}
    idle_run reversed-idle "$P_REV_IDLE" "$LAST_PID"
    mv "$TMP/idle-reversed-idle.json" "$TMP/idle-reversed.json"
fi
haproxy_cfg "$TMP/haproxy-idle.cfg" "$P_HA_IDLE" "$P_BACK" auto
start haproxy-idle "$PROXY_CPU" haproxy -f "$TMP/haproxy-idle.cfg" -db
idle_run haproxy-idle "$P_HA_IDLE" "$LAST_PID"
mv "$TMP/idle-haproxy-idle.json" "$TMP/idle-haproxy-splice.json"
stop "$PID_BACK"

# ---------------------------------------------------------------- report
mkdir -p "$RESULTS"
out="$RESULTS/tcp-$TS.json"
rev_meta="skipped"
((SKIP_REVERSED)) || rev_meta="$REVERSED ${REVERSED_ARGS:-}"
rc=0
"$PY" "$HERE/tcp_report.py" report --tmp "$TMP" --out "$out" \
    --meta "timestamp=$TS" --meta "duration_s=$DURATION" --meta "rounds=$ROUNDS" \
    --meta "idle_conns=$IDLE_CONNS" --meta "proxy_cpu=$PROXY_CPU" --meta "load_cpu=$LOAD_CPU" \
    --meta "reversed=$rev_meta" \
    --meta "git_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --meta "haproxy=$(haproxy -v | head -n1)" --meta "iperf3=$(iperf3 -v | head -n1)" \
    --meta "kernel=$(uname -r)" --meta "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)" \
    --meta "nproc=$(nproc)" || rc=$?
FAILED=$rc
exit "$rc"
