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
