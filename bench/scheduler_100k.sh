#!/usr/bin/env bash
# Benchmark: the background scheduler with 100,000 targets every 10 s on
# loopback, half on an open port (a listener with backlog 4096 on 0.0.0.0),
# half on a port nothing listens on. Targets are 127.A.B.C from 127.1.0.1
# upward, never ending in .0 or .255; every target is a distinct address.
#
# Measured, after every target had more than one interval to be probed:
#   - sustained probes/s over a steady window (synack_exporter_probes_total)  target 10,000/s
#   - p50/p99 schedule lag from synack_exporter_schedule_lag_seconds buckets  target p99 < 50 ms
#   - resident memory (VmRSS and process_resident_memory_bytes), sampled in
#     the window and while full /metrics scrapes run                         target <= 150 MiB
#   - full /metrics scrape time with curl, text and OpenMetrics, 3x each     target < 1 s
#   - exporter CPU per probe vs a one-thread C loop doing the same syscalls
#     (bench/halfopen_ref.c)                                                  target <= 1.3x
# and that the open-port listener accepted no connection (half-open).
#
# Phases: C reference runs; exporter start and warm-up (> 1 interval, every
# target probed); the steady window with no full scrape, where probes/s, lag
# and CPU per probe are taken (the exporter's own series are read from the
# head of /metrics at the window's ends and every 10 s, and the connection is
# closed after them, since each /metrics request costs the exporter work);
# then SCRAPES timed full scrapes per format back to back, with RSS sampled
# every 50 ms, and lag/probes over that phase reported for information; one
# untimed scrape checks that every target was probed; C reference runs again.
#
# Usage: bash bench/scheduler_100k.sh
#   env TARGETS=100000     scheduled targets
#   env INTERVAL=10        probe interval, whole seconds
#   env WINDOW=30          steady window, seconds
#   env SCRAPES=3          timed full scrapes per format
#   env REF_PROBES=200000  probes of each C reference run (bounded to REF_MAX_SECONDS=60)
#   env REF_RUNS=2         C reference runs per variant before and again after the
#                          exporter; the median of all is used
#   env TOKIO_WORKER_THREADS=N  is passed through to the exporter (tokio reads it)
#   env EXPORTER_ARGS=...  extra flags for synack_exporter, e.g. "--probe.max-in-flight 1024"
#   env PERF=1             after the measurement, 15 s of `perf record -g` on the
#                          exporter; the top of `perf report` lands in the work dir
#   env KEEP_DIR=1         keep the work directory (config, logs, JSON)
#
# Exit status: 0 every target met, 1 a target missed, 2 setup or measurement error.
# Only loopback addresses are used. Every process started here is stopped on exit.

set -Eeuo pipefail

TARGETS=${TARGETS:-100000}
INTERVAL=${INTERVAL:-10}
WINDOW=${WINDOW:-30}
SCRAPES=${SCRAPES:-3}
REF_PROBES=${REF_PROBES:-200000}
REF_MAX_SECONDS=${REF_MAX_SECONDS:-60}
REF_RUNS=${REF_RUNS:-2}
EXPORTER_ARGS=${EXPORTER_ARGS:-}
PERF=${PERF:-0}
for var in TARGETS INTERVAL WINDOW SCRAPES REF_PROBES REF_MAX_SECONDS REF_RUNS; do
    [[ ${!var} =~ ^[1-9][0-9]*$ ]] || { echo "$var must be a positive integer" >&2; exit 2; }
done
((TARGETS <= 254 * 256 * 254)) || { echo "TARGETS too large for 127.0.0.0/8" >&2; exit 2; }

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
HELPER="$BENCH_DIR/scheduler_100k_helper.py"
BIN="$ROOT/target/release/synack_exporter"

step() { echo "==> $*" >&2; }

source "$BENCH_DIR/lib.sh"

stop_pid() { # stop one process started here, and forget it
    local pid=$1 keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

for tool in cargo gcc curl python3 timeout; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
WORK=$(mktemp -d /tmp/scheduler_100k.XXXXXX)
NPROC=$(nproc)
step "nproc=$NPROC, load average $(cut -d' ' -f1-3 /proc/loadavg), work directory $WORK"

LOAD_BEFORE=$(python3 "$HELPER" machine-load --seconds 3)
step "machine load before the run: $LOAD_BEFORE"
if python3 -c "import sys; sys.exit(0 if float('${LOAD_BEFORE%% *}') > 0.3 else 1)"; then
    step "WARNING: the machine is busy with other work; figures will be noisy"
fi

# ---------------------------------------------------------------- build
BUILD_CMD="cargo build --release"
step "$BUILD_CMD"
(cd "$ROOT" && timeout 1800 cargo build --release) >&2 || die "cargo build failed"
[[ -x $BIN ]] || die "$BIN missing after the build"
REF="$WORK/halfopen_ref"
GCC_CMD="gcc -O2 -Wall -o $REF $BENCH_DIR/halfopen_ref.c"
step "$GCC_CMD"
$GCC_CMD || die "gcc failed"

REVISION="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    REVISION="$REVISION + uncommitted changes in src/ or Cargo.*"
fi
step "measuring revision $REVISION"

# ---------------------------------------------------------------- targets
OPEN_PORT=$(python3 "$HELPER" freeport)
CLOSED_PORT=$(python3 "$HELPER" closedport)
for _ in 1 2 3; do
    [[ $CLOSED_PORT != "$OPEN_PORT" ]] && break
    CLOSED_PORT=$(python3 "$HELPER" closedport)
done
[[ $CLOSED_PORT != "$OPEN_PORT" ]] || die "could not pick two different ports"
COUNT_FILE="$WORK/accepted"
LISTENER_CMD="python3 $HELPER listener --port $OPEN_PORT --backlog 4096 --count-file $COUNT_FILE"
step "open port: $LISTENER_CMD"
$LISTENER_CMD >"$WORK/listener.log" 2>&1 &
PIDS+=($!)
LISTENER_PID=$!
for _ in $(seq 100); do
    [[ -s $COUNT_FILE ]] && break
    kill -0 "$LISTENER_PID" 2>/dev/null || die "the listener exited: $(cat "$WORK/listener.log")"
    sleep 0.1
done
[[ -s $COUNT_FILE ]] || die "the listener did not start"
accepted() { cat "$COUNT_FILE"; }
# Nothing may listen on the closed port, on any address.
if python3 - "$CLOSED_PORT" <<'EOF'; then die "something listens on the closed port"; fi
import sys
port = int(sys.argv[1])
for path in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in list(open(path))[1:]:
        f = line.split()
        if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
            sys.exit(0)
sys.exit(1)
EOF

CONFIG="$WORK/config.yml"
step "config: $(python3 "$HELPER" config --out "$CONFIG" --targets "$TARGETS" --interval "${INTERVAL}s" \
    --open-port "$OPEN_PORT" --closed-port "$CLOSED_PORT") ($(du -h "$CONFIG" | cut -f1))"
CHECK_CMD="$BIN --config.check --config.file $CONFIG"
step "$CHECK_CMD"
check=$(timeout 120 $CHECK_CMD) || die "config check failed: $check"
[[ $check == ok ]] || die "config check: $check"

# ---------------------------------------------------------------- C reference
# The machine may be shared and its speed drifts: REF_RUNS runs of each
# variant before the exporter and REF_RUNS after it, alternating; the median
# CPU per probe of all of them is used.
REF_CMD="$REF $REF_PROBES $TARGETS $OPEN_PORT $CLOSED_PORT $REF_MAX_SECONDS"
run_reference() { # $1: label of the runs (before, after)
    local run
    for run in $(seq "$REF_RUNS"); do
        step "C reference ($1) $run/$REF_RUNS: $REF_CMD"
        timeout $((REF_MAX_SECONDS + 30)) $REF_CMD >"$WORK/ref_${1}$run.json" || die "the C reference failed"
        cat "$WORK/ref_${1}$run.json" >&2
        step "C reference like tokio ($1) $run/$REF_RUNS: $REF_CMD --like-tokio"
        timeout $((REF_MAX_SECONDS + 30)) $REF_CMD --like-tokio >"$WORK/reftokio_${1}$run.json" ||
            die "the C reference failed"
        cat "$WORK/reftokio_${1}$run.json" >&2
    done
}
run_reference before
sleep 1 # let the listener write its count
ACCEPTED_BY_REF=$(accepted)
step "connections accepted by the listener during the C reference: $ACCEPTED_BY_REF"

# ---------------------------------------------------------------- exporter
PORT=$(python3 "$HELPER" freeport)
# shellcheck disable=SC2206
EXPORTER=("$BIN" --config.file "$CONFIG" --web.listen-address "127.0.0.1:$PORT" --log.level warn $EXPORTER_ARGS)
EXPORTER_CMD="${EXPORTER[*]}"
python3 "$HELPER" netstat >"$WORK/netstat_before.json"
ACCEPTED_BEFORE=$(accepted)
step "exporter: $EXPORTER_CMD"
"${EXPORTER[@]}" >"$WORK/exporter.out" 2>"$WORK/exporter.log" &
EXPORTER_PID=$!
PIDS+=("$EXPORTER_PID")
# The 'listening' log line is info level and this runs at warn: ask HTTP.
healthy() { curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$PORT/-/healthy"; }
for _ in $(seq 1200); do
    healthy && break
    kill -0 "$EXPORTER_PID" 2>/dev/null || die "the exporter exited: $(tail -5 "$WORK/exporter.log")"
    sleep 0.1
done
healthy || die "the exporter did not start listening within 120 s"
step "exporter pid $EXPORTER_PID listening on 127.0.0.1:$PORT"

MEASURE_CMD="python3 $HELPER measure --pid $EXPORTER_PID --port $PORT --targets $TARGETS --interval $INTERVAL --window $WINDOW --scrapes $SCRAPES --open-port $OPEN_PORT --closed-port $CLOSED_PORT --out $WORK/measure.json"
step "measure: $MEASURE_CMD"
timeout $((300 + INTERVAL + WINDOW + SCRAPES * 2 * 130 + 130)) $MEASURE_CMD ||
    die "measurement failed: $(cat "$WORK/measure.json" 2>/dev/null)"

if [[ $PERF == 1 ]]; then
    if command -v perf >/dev/null; then
        step "perf record -g -p $EXPORTER_PID for 15 s"
        timeout 60 perf record -q -g -o "$WORK/perf.data" -p "$EXPORTER_PID" -- sleep 15 >&2 2>"$WORK/perf.log" || true
        timeout 300 perf report -i "$WORK/perf.data" --no-children --percent-limit 0.5 --stdio \
            >"$WORK/perf_report.txt" 2>/dev/null || true
        timeout 300 perf report -i "$WORK/perf.data" --no-children --sort dso,sym -g none --percent-limit 0.3 --stdio \
            >"$WORK/perf_flat.txt" 2>/dev/null || true
        step "perf flat profile (top 40; full reports in $WORK):"
        grep -v '^#' "$WORK/perf_flat.txt" | grep -v '^$' | head -40 >&2 || true
        KEEP_DIR=1
    else
        step "PERF=1 but perf is not installed; skipped"
    fi
fi

sleep 1 # let the listener write its count
ACCEPTED_BY_EXPORTER=$(($(accepted) - ACCEPTED_BEFORE))
python3 "$HELPER" netstat >"$WORK/netstat_after.json"
python3 "$HELPER" netstat-delta --before "$WORK/netstat_before.json" --after "$WORK/netstat_after.json" \
    >"$WORK/netstat_delta.json"
grep -iE "warn|error" "$WORK/exporter.log" | head -5 >&2 || true
stop_pid "$EXPORTER_PID"

ACCEPTED_BEFORE_REF2=$(accepted)
run_reference after
python3 "$HELPER" ref-median "$WORK"/ref_*.json >"$WORK/ref.json"
python3 "$HELPER" ref-median "$WORK"/reftokio_*.json >"$WORK/ref_tokio.json"
sleep 1 # let the listener write its count
ACCEPTED_BY_REF=$((ACCEPTED_BY_REF + $(accepted) - ACCEPTED_BEFORE_REF2))

# ---------------------------------------------------------------- report
set +e
python3 "$HELPER" report --measure "$WORK/measure.json" --ref "$WORK/ref.json" \
    --ref-tokio "$WORK/ref_tokio.json" --netstat-delta "$WORK/netstat_delta.json" \
    --accepted $((ACCEPTED_BY_EXPORTER + ACCEPTED_BY_REF)) \
    --expected-rate "$(python3 -c "print($TARGETS / $INTERVAL)")" --nproc "$NPROC" \
    --commands "bash bench/scheduler_100k.sh   (TARGETS=$TARGETS INTERVAL=$INTERVAL WINDOW=$WINDOW SCRAPES=$SCRAPES REF_PROBES=$REF_PROBES REF_RUNS=$REF_RUNS${TOKIO_WORKER_THREADS:+ TOKIO_WORKER_THREADS=$TOKIO_WORKER_THREADS}${EXPORTER_ARGS:+ EXPORTER_ARGS='$EXPORTER_ARGS'})" \
    "revision measured: $REVISION" "$BUILD_CMD" "$GCC_CMD" "$LISTENER_CMD" "$EXPORTER_CMD" "$REF_CMD" "$REF_CMD --like-tokio" \
    "(accepted by the listener: $ACCEPTED_BY_REF during the C reference, $ACCEPTED_BY_EXPORTER during the exporter run)"
status=$?
set -e
exit "$status"
