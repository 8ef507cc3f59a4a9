# Shared by the benchmark scripts: stop every background process they
# started (listed in PIDS) and remove their work directory (WORK) on exit,
# also on error or Ctrl-C; `die`; the accept-counting target; and for the
# half-open gates (halfopen_under_load.sh, soak.sh) the probe namespace,
# its counters, the late-close control and the exporter's probe counts.
# Source it before setting PIDS or WORK.

# die MESSAGE: a setup or measurement error, exit status 2.
die() {
    echo >&2
    echo "ERROR: $*" >&2
    exit 2
}

# parse_load_flags HELP_LAST_LINE "$@": the flags of the scripts that load
# /probe with wrk for a while: -r ROUNDS (1..20), -d DURATION (whole
# seconds up to 600s), -c CONNECTIONS, -h (prints the script's header, lines
# 2..HELP_LAST_LINE). Sets ROUNDS, DURATION and CONNECTIONS, whose defaults
# the caller sets first.
parse_load_flags() {
    local help_last_line=$1 opt OPTIND=1
    shift
    while getopts "r:d:c:h" opt; do
        case $opt in
            r) ROUNDS=$OPTARG ;;
            d) DURATION=$OPTARG ;;
            c) CONNECTIONS=$OPTARG ;;
            h) sed -n "2,${help_last_line}p" "$0"; exit 0 ;;
            *) exit 2 ;;
        esac
    done
    [[ $ROUNDS =~ ^[1-9][0-9]*$ && $ROUNDS -le 20 ]] || die "ROUNDS must be 1..20"
    [[ $DURATION =~ ^[1-9][0-9]*s$ && ${DURATION%s} -le 600 ]] ||
        die "DURATION must be whole seconds up to 600s, such as 60s"
    [[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive integer"
}

# start_counting_target HELPER PORT [NETNS [HOST]]: bench_helper.py's
# accept-and-close listener on HOST:PORT (default 127.0.0.1), inside the
# network namespace NETNS if given, which reports its accept count on
# SIGUSR1; sets TARGET_PID and waits until it listens. With TARGET_BANNER
# set, it sends that text to each connection before closing it; with
# TARGET_TLS_CERT and TARGET_TLS_KEY (PEM files) set, it serves TLS and
# counts completed handshakes instead of accepts.
start_counting_target() {
    local helper=$1 port=$2 netns=${3:-} host=${4:-127.0.0.1}
    local prefix=()
    [[ -z $netns ]] || prefix=(ip netns exec "$netns")
    "${prefix[@]}" python3 "$helper" target --port "$port" --host "$host" --backlog 4096 \
        --count-file "$WORK/target.count" --ready-file "$WORK/target.ready" \
        ${TARGET_BANNER:+--banner "$TARGET_BANNER"} \
        ${TARGET_TLS_CERT:+--tls-cert "$TARGET_TLS_CERT" --tls-key "$TARGET_TLS_KEY"} \
        >"$WORK/target.log" 2>&1 &
    TARGET_PID=$!
    PIDS+=("$TARGET_PID")
    for _ in $(seq 100); do
        [[ -f $WORK/target.ready ]] && return 0
        kill -0 "$TARGET_PID" 2>/dev/null || die "target exited: $(cat "$WORK/target.log")"
        sleep 0.1
    done
    die "target did not start within 10 s"
}
# build_ours ROOT: cargo build --release in ROOT; sets OURS_BIN to a copy in
# WORK of the synack_exporter binary cargo reports, so that a build of
# another tree sharing CARGO_TARGET_DIR cannot swap it during the run.
build_ours() {
    local root=$1
    echo "== cargo build --release (in $root)"
    (cd "$root" && timeout 1800 cargo build --release --message-format=json-render-diagnostics \
        >"$WORK/cargo.json") || die "cargo build --release failed"
    OURS_BIN=$(python3 -c '
import json, sys
exe = None
for line in open(sys.argv[1]):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
            and msg["target"]["name"] == "synack_exporter" and "bin" in msg["target"]["kind"]:
        exe = msg["executable"]
print(exe or "")' "$WORK/cargo.json")
    [[ -x $OURS_BIN ]] || die "cannot find the synack_exporter binary from cargo's output"
    cp "$OURS_BIN" "$WORK/synack_exporter" || die "cannot copy $OURS_BIN to $WORK"
    OURS_BIN="$WORK/synack_exporter"
}

# wait_http NAME PID URL: until URL answers 200, the process dies, or 15 s
# pass; NAME's output is in $WORK/NAME.log.
wait_http() {
    local name=$1 pid=$2 url=$3
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup; its log:
$(tail -n 20 "$WORK/$name.log")"
        if curl -sf --max-time 1 -o /dev/null "$url"; then
            return 0
        fi
        sleep 0.1
    done
    die "$name did not answer $url within 15 s; its log:
$(tail -n 20 "$WORK/$name.log")"
}

# verify_probe NAME URL: one curl of /probe must return probe_success 1.
verify_probe() {
    local name=$1 url=$2 body
    body=$(curl -sS --max-time 10 "$url") || die "$name: curl $url failed"
    # "probe_success 1" (blackbox) or "probe_success 1.0" (ours): compare numerically.
    if [[ $(awk '$1 == "probe_success" { print $2 + 0 }' <<<"$body") != 1 ]]; then
        die "$name: curl $url did not return 'probe_success 1'; got:
$body"
    fi
}

# run_measured KIND ROUND URL PID [METRICS_PORT]: a warm-up, one checked
# probe (none for KIND healthy, whose URL is /-/healthy), then the measured
# wrk run of the exporter PID on URL through bench_helper.py (record in
# $WORK/rROUND-KIND.json). METRICS_PORT is the synack_exporter whose
# /metrics counts the probes (OURS_PORT by default).
# Needs HELPER, THREADS, CONNECTIONS, DURATION, WARMUP, TARGET_PID, WORK.
run_measured() {
    local kind=$1 round=$2 url=$3 pid=$4
    local metrics="http://127.0.0.1:${5:-$OURS_PORT}/metrics"
    local common=(--kind "$kind" --round "$round" --url "$url" --threads "$THREADS"
        --connections "$CONNECTIONS" --duration "$DURATION" --wrk-timeout 300)
    kill -0 "$pid" 2>/dev/null || die "$kind (pid $pid) is not running"
    python3 "$HELPER" measure "${common[@]}" --warmup "$WARMUP" ||
        die "$kind: warm-up failed"
    [[ $kind == healthy ]] || verify_probe "$kind" "$url"
    echo "-- round $round $kind: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency '$url'"
    python3 "$HELPER" measure "${common[@]}" --metrics-url "$metrics" \
        --exporter-pid "$pid" --target-pid "$TARGET_PID" --count-file "$WORK/target.count" \
        --out "$WORK/r$round-$kind.json" --raw-out "$WORK/r$round-$kind.wrk.txt" ||
        die "$kind round $round: the measured run failed (see above; raw output in $WORK)"
    sed 's/^/   | /' "$WORK/r$round-$kind.wrk.txt"
}

# bench_py EXPR: prints EXPR evaluated in Python with bench/bench_helper.py
# imported as h (needs BENCH_DIR).
bench_py() {
    python3 -c "import sys; sys.path.insert(0, '$BENCH_DIR'); import bench_helper as h; print($1)"
}

# target_accepts: connections the counting target has accepted so far.
target_accepts() { bench_py "h.target_count($TARGET_PID, '$WORK/target.count')"; }

# tcpext NETNS NAME: a TcpExt counter of /proc/net/netstat in NETNS.
tcpext() {
    ip netns exec "$1" awk -v name="$2" '/^TcpExt:/ { if (!n) { for (i = 1; i <= NF; i++) col[$i] = i; n = 1 } else print $col[name] }' /proc/net/netstat
}

# probe_results PORT RESULT: synack_exporter_probes_total of module
# tcp_halfopen with result RESULT, from the exporter on 127.0.0.1:PORT (0
# when absent).
probe_results() {
    curl -sf --max-time 10 "http://127.0.0.1:$1/metrics" |
        awk -v r="$2" '$1 == "synack_exporter_probes_total{module=\"tcp_halfopen\",result=\"" r "\"}" { print $2 + 0; f = 1 } END { if (!f) print 0 }'
}

# check_netns_load_setup [TOOL...]: what the namespace gates need: root,
# wrk, stress-ng, curl, python3, cargo, ip and the TOOLs, and an open file
# limit (raised to the hard one) that holds CONNECTIONS twice over, as wrk
# and the exporter each hold a descriptor per connection.
check_netns_load_setup() {
    local tool
    [[ $(id -u) == 0 ]] || die "run as root: the script creates a network namespace"
    for tool in wrk stress-ng curl python3 cargo ip "$@"; do
        command -v "$tool" >/dev/null ||
            die "missing $tool; as root run: apt-get install -y wrk stress-ng curl python3 iproute2"
    done
    ulimit -n "$(ulimit -Hn)"
    (($(ulimit -n) > CONNECTIONS * 2 + 100)) || die "open file limit $(ulimit -n) is too low for -c $CONNECTIONS"
}

# make_netns NAME: a network namespace with lo up, deleted on exit.
make_netns() {
    NETNS=$1
    cleanup_more() { ip netns del "$NETNS" 2>/dev/null; }
    ip netns add "$NETNS" || die "ip netns add $NETNS failed"
    ip netns exec "$NETNS" ip link set lo up || die "cannot bring up lo in $NETNS"
}

# late_close_control NETNS PORT: the positive control of the accept and
# delayed-ACK counts. One half-open connect in NETNS to the counting target
# on PORT that closes 500 ms after the SYN-ACK, too late, must show as an
# accept and a delayed ACK; otherwise zeros measured later would prove
# nothing.
late_close_control() {
    local netns=$1 port=$2 a0 d0 a1 d1
    a0=$(target_accepts); d0=$(tcpext "$netns" DelayedACKs)
    ip netns exec "$netns" python3 -c '
import socket, struct, sys, time
s = socket.socket()
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.settimeout(5)
s.connect(("127.0.0.1", int(sys.argv[1])))
time.sleep(0.5)
s.close()' "$port" || die "the control connect failed"
    sleep 0.2
    a1=$(target_accepts); d1=$(tcpext "$netns" DelayedACKs)
    ((a1 - a0 == 1 && d1 - d0 >= 1)) ||
        die "control: a late close gave $((a1 - a0)) accepts and $((d1 - d0)) delayed ACKs, expected 1 and >= 1"
    echo "control: a close 500 ms after the SYN-ACK counted $((a1 - a0)) accept and $((d1 - d0)) delayed ACK (expected)"
}

# wait_healthy PID PORT LOG: waits up to 10 s for the exporter PID to answer
# /-/healthy on 127.0.0.1:PORT; dies with the end of LOG if it exits.
wait_healthy() {
    local pid=$1 port=$2 log=$3
    for _ in $(seq 100); do
        curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$port/-/healthy" && return 0
        kill -0 "$pid" 2>/dev/null || die "exporter exited: $(tail -3 "$log")"
        sleep 0.1
    done
    die "exporter did not answer /-/healthy within 10 s: $(tail -3 "$log")"
}

# start_netns_exporter LOG [FLAG...]: starts $BIN on 127.0.0.1:$PORT with
# its probe threads in namespace $NETNS (and on the CPUs $EXPORTER_CPUS
# when set), with FLAGs added and its output in LOG; waits until it is
# healthy and one probe of 127.0.0.1:$TARGET_PORT succeeds. Sets EXPORTER.
start_netns_exporter() {
    local log=$1
    shift
    local pin=()
    [[ -z ${EXPORTER_CPUS:-} ]] || pin=(taskset -c "$EXPORTER_CPUS")
    SYNACK_BENCH_PROBE_NETNS="/run/netns/$NETNS" "${pin[@]}" \
        "$BIN" --web.listen-address "127.0.0.1:$PORT" --log.level warn \
        --web.max-connections "$((CONNECTIONS + 64))" "$@" >"$log" 2>&1 &
    EXPORTER=$!
    PIDS+=("$EXPORTER")
    wait_healthy "$EXPORTER" "$PORT" "$log"
    local url="http://127.0.0.1:$PORT/probe?target=127.0.0.1:$TARGET_PORT&module=tcp_halfopen"
    [[ $(curl -sf --max-time 5 "$url") == *$'\nprobe_success 1'* ]] ||
        die "a single probe of the target did not succeed (does this binary move its probe threads into SYNACK_BENCH_PROBE_NETNS? see $log)"
}

PIDS=()
WORK=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    # A script's own last step, such as deleting a network namespace it
    # made, after its processes are gone.
    if declare -F cleanup_more >/dev/null; then
        cleanup_more || true
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $status -ge 2 || ${KEEP_DIR:-0} == 1 ]]; then
            echo "work directory kept for inspection: $WORK" >&2
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'echo "ERROR: command failed (line $LINENO): $BASH_COMMAND" >&2' ERR
