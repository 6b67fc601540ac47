# Helpers shared by the benchmark scripts. They expect $TMP (log directory) and die().

# wait_listen NAME PID PORT: wait (max 10 s) until PORT is listening. Uses ss instead of a
# probe connection, which would reach the backend (iperf3 dislikes stray connections).
wait_listen() {
    local name=$1 pid=$2 port=$3
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$TMP/$name.log" >&2; die "$name exited at startup"; }
        [[ -n $(ss -Hltn "sport = :$port") ]] && return 0
        sleep 0.1
    done
    tail -n 20 "$TMP/$name.log" >&2
    die "$name not listening on port $port after 10 s"
}

# cpu_ticks PID: utime+stime (fields 14+15 of /proc/PID/stat) plus reaped children's
# cutime+cstime (16+17), summed over PID and its descendants, in clock ticks.
cpu_ticks() {
    local pid=$1 line f total=0 c
    read -r line <"/proc/$pid/stat" 2>/dev/null || { echo 0; return; }
    read -r -a f <<<"${line##*) }"   # comm may hold spaces: split after its ')'
    total=$((f[11] + f[12] + f[13] + f[14]))   # f[0] is field 3 (state)
    for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        total=$((total + $(cpu_ticks "$c")))
    done
    echo "$total"
}

# ---- processes, ports and CPU accounting shared by http.sh, forward.sh and reverse.sh

# start NAME CPU CMD...: run CMD pinned to CPU in the background, log to TMP/NAME.log,
# its PID in LAST_PID and appended to PIDS. Runs under ${NICE_CMD[@]} if set. taskset
# (and nice) exec CMD, so $! is the PID of CMD itself; children inherit the CPU mask.
start() {
    local name=$1 cpu=$2; shift 2
    taskset -c "$cpu" ${NICE_CMD[@]+"${NICE_CMD[@]}"} "$@" >"$TMP/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# stop_started [TENTHS]: SIGTERM every PID in PIDS, wait up to TENTHS/10 s (default 30)
# for them to exit, then SIGKILL what is left, children (nginx workers) by their own PIDs.
stop_started() {
    local pid c alive
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq "${1:-30}"); do
        alive=0
        for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        kill -0 "$pid" 2>/dev/null || continue
        for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do kill -KILL "$c" 2>/dev/null || true; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}

# tree_pids PID: PID and its descendants, one a line.
tree_pids() {
    local c
    echo "$1"
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree_pids "$c"; done
}

# port_free PORT: refuse to go on if anything listens on PORT already.
port_free() {
    [[ -z $(ss -Hltn "sport = :$1") ]] || die "port $1 is taken: $(ss -Hltnp "sport = :$1" | head -n1)"
}

# listen_ours NAME PID PORT: wait until PORT listens, then check that the listener is
# PID or one of its children (not some other program that grabbed the port meanwhile).
listen_ours() {
    local name=$1 pid=$2 port=$3 owners p
    wait_listen "$name" "$pid" "$port"
    owners=$(ss -Hltnp "sport = :$port")
    [[ -z $owners || $owners != *pid=* ]] && return 0   # no process info (permissions): trust wait_listen
    for p in $(tree_pids "$pid"); do
        [[ $owners == *"pid=$p,"* ]] && return 0
    done
    die "port $port is held by another process, not by our $name (pid $pid): $owners"
}

# cpu_busy CPU: busy ticks (user+nice+system+irq+softirq+steal) of one CPU from
# /proc/stat. On a CPU we use, busy minus our own processes' ticks is other work.
cpu_busy() {
    awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# reaped_ticks: set REAPED to cutime+cstime of this shell: CPU time of every child it
# has reaped (wrk under timeout and taskset). Builtins only and no $(...), so taking the
# reading forks and reaps nothing itself.
reaped_ticks() {
    local line f
    read -r line <"/proc/$$/stat"
    read -r -a f <<<"${line##*) }"
    # shellcheck disable=SC2034  # REAPED is read by the caller
    REAPED=$((f[13] + f[14]))
}

# nginx_common DIR: common nginx http-block lines: every temp path inside DIR (so
# nothing under /var/lib/nginx is created), no access log, and no per-connection request
# limit (nginx >= 1.19.10 closes a keep-alive connection after 1000 requests by default).
nginx_common() {
    local d=$1
    mkdir -p "$d"
    cat <<EON
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    tcp_nodelay on;
EON
}
