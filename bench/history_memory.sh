#!/usr/bin/env bash
# Issue 18 item 14: what the history of /probe requests costs in memory.
# An exporter started with --history.limit 10000 gets REQUESTS /probe
# requests of one module, and its resident memory (VmRSS from
# /proc/PID/status) is read after a warm-up of 20 requests and after the
# run. The modules:
#   attempts100  tcp_halfopen with tcp.attempts: 100 (10 ms apart,
#                stop_on_success: false) against a loopback listener
#   big_argv     exec /bin/true with 255 arguments of 4096 bytes (about
#                1 MB, the most the config allows)
#   tcp_halfopen the built-in module, one attempt: a usual probe
# Each (binary, module) gets a fresh exporter. Two controls run this
# tree's binary again: "history 1" with --history.limit 1 (every probe
# still keeps its step log while it runs, so this is what the requests
# cost in flight, with the allocator's slack, and no history to speak of)
# and "history off" with --history.limit 0 (no step log at all), which
# is how the issue measured (397 MiB with the history, 8 MiB without).
#
# Usage: bash bench/history_memory.sh [-n REQUESTS] [-c CONCURRENCY]
#   -n REQUESTS     /probe requests per run              default 10000
#   -c CONCURRENCY  clients at once                      default 200
#   env BASELINE_REV   a git revision (such as main) to build and measure
#                      too; its build is cached in target/bench-baseline
#   env BASELINE_EXEC_REQUESTS  requests of big_argv for the baseline only
#                      (default REQUESTS): the baseline keeps about 1 MiB a
#                      request there, so 10000 need about 10 GiB of RAM
#   env MODULES        the modules to measure, default
#                      "attempts100 big_argv tcp_halfopen"
#   env EXPORTER_ENV   VAR=VALUE words for the exporters' environment,
#                      such as MALLOC_ARENA_MAX=1
#   env KEEP_DIR=1     keep the work directory (configs, logs)
# Exit status: 0 PASS (for every module, this tree's binary grew by at
# most 16 MiB more with --history.limit 10000 than with the history off),
# 1 FAIL, 2 setup or measurement error. Only 127.0.0.1 is used; every
# process started is stopped on exit.
set -Eeuo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=lib.sh
source "$BENCH_DIR/lib.sh"

REQUESTS=10000
CONCURRENCY=200
while getopts "n:c:h" opt; do
    case $opt in
        n) REQUESTS=$OPTARG ;;
        c) CONCURRENCY=$OPTARG ;;
        h) sed -n '2,36p' "$0"; exit 0 ;;
        *) exit 2 ;;
    esac
done
[[ $REQUESTS =~ ^[1-9][0-9]*$ ]] || die "REQUESTS must be a positive integer"
[[ $CONCURRENCY =~ ^[1-9][0-9]*$ && $CONCURRENCY -le 1000 ]] || die "CONCURRENCY must be 1..1000"
BASELINE_EXEC_REQUESTS=${BASELINE_EXEC_REQUESTS:-$REQUESTS}
[[ $BASELINE_EXEC_REQUESTS =~ ^[1-9][0-9]*$ ]] || die "BASELINE_EXEC_REQUESTS must be a positive integer"
for tool in cargo curl python3; do
    command -v "$tool" >/dev/null || die "missing $tool"
done
ulimit -n "$(ulimit -Hn)"
WORK=$(mktemp -d)

echo "== cargo build --release (this tree: $(git -C "$ROOT" rev-parse --short HEAD)$(
    [[ -z $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock) ]] || echo ", with uncommitted changes"))"
(cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
OURS_BIN="$ROOT/target/release/synack_exporter"
BEFORE_BIN=""
if [[ -n ${BASELINE_REV:-} ]]; then
    BASELINE_COMMIT=$(git -C "$ROOT" rev-parse --verify --quiet "$BASELINE_REV^{commit}") ||
        die "BASELINE_REV=$BASELINE_REV is not a commit of $ROOT"
    echo "== cargo build --release of $BASELINE_REV (${BASELINE_COMMIT:0:7}), the baseline"
    git -C "$ROOT" archive --format=tar --prefix=baseline/ "$BASELINE_COMMIT" | tar -x -C "$WORK" ||
        die "cannot export $BASELINE_REV"
    (cd "$WORK/baseline" && CARGO_TARGET_DIR="$ROOT/target/bench-baseline" \
        timeout 3600 cargo build --release --quiet) || die "cargo build --release of $BASELINE_REV failed"
    BEFORE_BIN="$ROOT/target/bench-baseline/release/synack_exporter"
fi

# A loopback listener that never accepts: a half-open probe gets its
# SYN-ACK and closes with RST, so the queue never fills.
python3 - "$WORK/target.port" <<'PY' &
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(4096)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
__import__("os").replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(7200)
PY
PIDS+=($!)
for _ in $(seq 50); do [[ -s $WORK/target.port ]] && break; sleep 0.1; done
TARGET_PORT=$(cat "$WORK/target.port") || die "the target listener did not start"

{
    cat <<'YAML'
modules:
  attempts100:
    prober: tcp_halfopen
    timeout: 5s
    tcp:
      attempts: 100
      attempt_interval: 10ms
      stop_on_success: false
  big_argv:
    prober: exec
    timeout: 10s
    exec:
      command:
        - /bin/true
YAML
    python3 -c 'print("".join("        - " + "x" * 4096 + "\n" for _ in range(255)), end="")'
} >"$WORK/config.yml"

# load PORT MODULE COUNT: COUNT /probe requests from CONCURRENCY clients on
# kept-alive connections; prints the seconds taken, fails on any answer
# that is not a successful probe.
load() {
    python3 - "$1" "$2" "$3" "$CONCURRENCY" "$TARGET_PORT" <<'PY'
import http.client, sys, threading, time
port, module, count, clients, target_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
path = f"/probe?module={module}&target=127.0.0.1:{target_port}"
errors = []
lock = threading.Lock()
left = [count]
def client():
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
    while True:
        with lock:
            if left[0] == 0 or errors:
                return
            left[0] -= 1
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode()
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
            return
        if response.status != 200 or "\nprobe_success 1\n" not in body:
            errors.append(f"{response.status}: {body[:300]}")
            return
start = time.monotonic()
threads = [threading.Thread(target=client) for _ in range(min(clients, count))]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    sys.exit(f"{len(errors)} failed requests, the first: {errors[0]}")
print(f"{time.monotonic() - start:.1f}")
PY
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

FAILED=0
# measure NAME BIN MODULE COUNT [FLAG...]: prints the row, and sets GROWN
# to the KiB the exporter grew by.
measure() {
    local name=$1 bin=$2 module=$3 count=$4
    shift 4
    local port log="$WORK/$name.$module.log"
    port=$(python3 "$BENCH_DIR/bench_helper.py" freeport)
    env ${EXPORTER_ENV:-} "$bin" --web.listen-address "127.0.0.1:$port" --config.file "$WORK/config.yml" \
        --log.level warn "$@" >"$log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_healthy "$pid" "$port" "$log"
    load "$port" "$module" 20 >/dev/null || die "warm-up of $name $module failed"
    local before after seconds
    before=$(rss_kib "$pid")
    seconds=$(load "$port" "$module" "$count") || die "the run of $name $module failed"
    after=$(rss_kib "$pid")
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    local grown=$((after - before))
    GROWN=$grown
    awk -v name="$name" -v module="$module" -v count="$count" -v before="$before" \
        -v after="$after" -v grown="$grown" -v seconds="$seconds" 'BEGIN {
        printf "%-22s %-12s %6d %9.1f %9.1f %9.1f %12d %8s\n", name, module, count,
            before / 1024, after / 1024, grown / 1024, grown * 1024 / count, seconds }'
}

echo "== $REQUESTS requests a run, $CONCURRENCY clients, --history.limit 10000 unless said"
printf '%-22s %-12s %6s %9s %9s %9s %12s %8s\n' binary module reqs "RSS0 MiB" "RSS1 MiB" "grew MiB" "bytes/req" seconds
for module in ${MODULES:-attempts100 big_argv tcp_halfopen}; do
    if [[ -n $BEFORE_BIN ]]; then
        count=$REQUESTS
        [[ $module != big_argv ]] || count=$BASELINE_EXEC_REQUESTS
        measure "baseline $BASELINE_REV" "$BEFORE_BIN" "$module" "$count" --history.limit 10000
    fi
    measure "this tree" "$OURS_BIN" "$module" "$REQUESTS" --history.limit 10000
    with_history=$GROWN
    measure "this tree, history 1" "$OURS_BIN" "$module" "$REQUESTS" --history.limit 1
    measure "this tree, history off" "$OURS_BIN" "$module" "$REQUESTS" --history.limit 0
    history=$((with_history - GROWN))
    awk -v m="$module" -v h="$history" 'BEGIN { printf "   %s: the history of this tree cost %.1f MiB (\"this tree\" less \"history off\")\n", m, h / 1024 }'
    ((history <= 16 * 1024)) || FAILED=1
done
if ((FAILED)); then
    echo "FAIL: a history cost more than 16 MiB"
    exit 1
fi
echo "PASS: every history cost at most 16 MiB"
