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
# With the raw engine (ENGINES=raw, issue 22) the targets are: CPU per probe
# <= 0.5x halfopen_ref.c's, RSS <= 150 MiB, a full scrape <= 2 s, and no
# connect() (the kernel's ActiveOpens); bench/raw_ref.c, the raw C loop, is
# run beside halfopen_ref.c and quoted.
#
# GOALS=one-core is the "largest schedule one core sustains" mode (see
# bench/schedule_one_core.sh: 1,000,000 targets every 60 s, engine raw): the
# goals are the full rate, p99 lag < 50 ms and the exporter under one core;
# RSS, scrape time and the CPU ratios are reported only.
#
# Phases: C reference runs; exporter start and warm-up (> 1 interval, every
# target probed); the steady window with no full scrape, where probes/s, lag
# and CPU per probe are taken (the exporter's own series are read from the
# head of /metrics at the window's ends and every 10 s, and the connection is
# closed after them, since each /metrics request costs the exporter work);
# then SCRAPES timed full scrapes per format back to back, with RSS sampled
# every 50 ms, and lag/probes over that phase reported for information; one
# untimed scrape checks that every target was probed; with several ENGINES,
# the next engine's exporter, the same way; C reference runs again.
#
# Usage: bash bench/scheduler_100k.sh
#   env TARGETS=100000     scheduled targets
#   env INTERVAL=10        probe interval, whole seconds
#   env WINDOW=30          steady window, seconds
#   env SCRAPES=3          timed full scrapes per format
#   env REF_PROBES=200000  probes of each C reference run (bounded to REF_MAX_SECONDS=60)
#   env ENGINES=socket     the probe engines to measure, one exporter after the other
#                          in the same run: "socket" (default), "raw" (the module gets
#                          `tcp: {engine: raw}`; root), or "socket raw"
#   env GOALS=100k         "100k": the goals above; "one-core": the one-core mode
#   env SCRAPE_MAX_TIME=s  curl --max-time of each full scrape (default 120 + TARGETS/2500)
#   env REF_RUNS=2         C reference runs per variant before and again after the
#                          exporter; the median of all is used
#   env TOKIO_WORKER_THREADS=N  is passed through to the exporter (tokio reads it)
#   env EXPORTER_ARGS=...  extra flags for synack_exporter, e.g. "--probe.max-in-flight 1024"
#   env PERF=1             after the measurement, 15 s of `perf record -g` on the
#                          exporter; the top of `perf report` lands in the work dir
#   env SYNACK_BIN=path    measure this synack_exporter binary instead of building
#                          this tree (e.g. an older revision's, to compare)
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
ENGINES=${ENGINES:-socket}
GOALS=${GOALS:-100k}
SCRAPE_MAX_TIME=${SCRAPE_MAX_TIME:-auto}
RAW_REF_BATCH=${RAW_REF_BATCH:-64}
for var in TARGETS INTERVAL WINDOW SCRAPES REF_PROBES REF_MAX_SECONDS REF_RUNS RAW_REF_BATCH SCRAPE_MAX_TIME; do
    [[ $var != SCRAPE_MAX_TIME || $SCRAPE_MAX_TIME != auto ]] || SCRAPE_MAX_TIME=$((120 + TARGETS / 2500))
    [[ ${!var} =~ ^[1-9][0-9]*$ ]] || { echo "$var must be a positive integer" >&2; exit 2; }
done
RAW=0
for engine in $ENGINES; do
    case $engine in
        socket) ;;
        raw) RAW=1 ;;
        *) echo "ENGINES: unknown engine '$engine' (socket, raw)" >&2; exit 2 ;;
    esac
done
[[ -n ${ENGINES// /} ]] || { echo "ENGINES names no engine" >&2; exit 2; }
[[ $GOALS == 100k || $GOALS == one-core ]] || { echo "GOALS must be 100k or one-core" >&2; exit 2; }
((RAW == 0 || $(id -u) == 0)) || { echo "the raw engine and bench/raw_ref.c need root (CAP_NET_RAW)" >&2; exit 2; }
# Start-up, config check and warm-up grow with the target count.
SLOW=$((TARGETS / 5000))
((TARGETS <= 254 * 256 * 254)) || { echo "TARGETS too large for 127.0.0.0/8" >&2; exit 2; }

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
HELPER="$BENCH_DIR/scheduler_100k_helper.py"

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
if [[ -n ${SYNACK_BIN:-} ]]; then
    [[ -x $SYNACK_BIN ]] || die "SYNACK_BIN=$SYNACK_BIN is not an executable"
    BUILD_CMD="(none: SYNACK_BIN=$SYNACK_BIN, $("$SYNACK_BIN" --version 2>&1 | head -n1))"
    cp "$SYNACK_BIN" "$WORK/synack_exporter" || die "cannot copy $SYNACK_BIN"
    BIN="$WORK/synack_exporter"
else
    BUILD_CMD="cargo build --release"
    step "$BUILD_CMD"
    # build_ours (lib.sh) finds the binary where cargo put it (CARGO_TARGET_DIR too)
    build_ours "$ROOT" >&2
    BIN=$OURS_BIN
fi
REF="$WORK/halfopen_ref"
GCC_CMD="gcc -O2 -Wall -o $REF $BENCH_DIR/halfopen_ref.c"
step "$GCC_CMD"
$GCC_CMD || die "gcc failed"
RAW_REF="$WORK/raw_ref"
RAW_GCC_CMD="gcc -O2 -Wall -o $RAW_REF $BENCH_DIR/raw_ref.c"
if ((RAW)); then
    step "$RAW_GCC_CMD"
    $RAW_GCC_CMD || die "gcc failed"
fi

REVISION="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    REVISION="$REVISION + uncommitted changes in src/ or Cargo.*"
fi
[[ -z ${SYNACK_BIN:-} ]] || REVISION="the binary SYNACK_BIN=$SYNACK_BIN (the scripts from $REVISION)"
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

for engine in $ENGINES; do
    CONFIG="$WORK/config.$engine.yml"
    step "config ($engine engine): $(python3 "$HELPER" config --out "$CONFIG" --targets "$TARGETS" \
        --interval "${INTERVAL}s" --open-port "$OPEN_PORT" --closed-port "$CLOSED_PORT" --engine "$engine") \
        ($(du -h "$CONFIG" | cut -f1))"
    CHECK_CMD="$BIN --config.check --config.file $CONFIG"
    step "$CHECK_CMD"
    check=$(timeout $((120 + SLOW)) $CHECK_CMD 2>&1) || die "config check failed: $check"
    [[ $check == ok ]] || die "config check: $check"
done

# ---------------------------------------------------------------- C reference
# The machine may be shared and its speed drifts: REF_RUNS runs of each
# variant before the exporter and REF_RUNS after it, alternating; the median
# CPU per probe of all of them is used.
REF_CMD="$REF $REF_PROBES $TARGETS $OPEN_PORT $CLOSED_PORT $REF_MAX_SECONDS"
RAW_REF_CMD="$RAW_REF $REF_PROBES $TARGETS $OPEN_PORT $CLOSED_PORT $REF_MAX_SECONDS --batch $RAW_REF_BATCH"
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
        if ((RAW)); then
            step "raw C reference ($1) $run/$REF_RUNS: $RAW_REF_CMD"
            timeout $((REF_MAX_SECONDS + 30)) $RAW_REF_CMD >"$WORK/refraw_${1}$run.json" ||
                die "the raw C reference failed: $(cat "$WORK/refraw_${1}$run.json")"
            cat "$WORK/refraw_${1}$run.json" >&2
        fi
    done
}
run_reference before
sleep 1 # let the listener write its count
ACCEPTED_BY_REF=$(accepted)
step "connections accepted by the listener during the C reference: $ACCEPTED_BY_REF"

# ---------------------------------------------------------------- exporter
# measure_engine ENGINE: start the exporter on config.ENGINE.yml, measure it
# (into measure.ENGINE.json, netstat_delta.ENGINE.json), stop it; sets
# ACCEPTED_BY_EXPORTER_<ENGINE> and EXPORTER_CMD_<ENGINE>.
measure_engine() {
    local engine=$1
    local config="$WORK/config.$engine.yml"
    PORT=$(python3 "$HELPER" freeport)
    # shellcheck disable=SC2206
    local exporter=("$BIN" --config.file "$config" --web.listen-address "127.0.0.1:$PORT" --log.level warn $EXPORTER_ARGS)
    printf -v "EXPORTER_CMD_$engine" '%s' "${exporter[*]}"
    python3 "$HELPER" netstat >"$WORK/netstat_before.$engine.json"
    local accepted_before
    accepted_before=$(accepted)
    step "exporter ($engine engine): ${exporter[*]}"
    "${exporter[@]}" >"$WORK/exporter.$engine.out" 2>"$WORK/exporter.$engine.log" &
    EXPORTER_PID=$!
    PIDS+=("$EXPORTER_PID")
    # The 'listening' log line is info level and this runs at warn: ask HTTP.
    healthy() { curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$PORT/-/healthy"; }
    for _ in $(seq $((1200 + SLOW * 10))); do
        healthy && break
        kill -0 "$EXPORTER_PID" 2>/dev/null || die "the exporter exited: $(tail -5 "$WORK/exporter.$engine.log")"
        sleep 0.1
    done
    healthy || die "the exporter did not start listening within $((120 + SLOW)) s"
    step "exporter pid $EXPORTER_PID listening on 127.0.0.1:$PORT"

    MEASURE_CMD="python3 $HELPER measure --pid $EXPORTER_PID --port $PORT --count-file $COUNT_FILE --targets $TARGETS --interval $INTERVAL --window $WINDOW --scrapes $SCRAPES --open-port $OPEN_PORT --closed-port $CLOSED_PORT --scrape-max-time $SCRAPE_MAX_TIME --warmup-timeout $((180 + 2 * INTERVAL + SLOW)) --out $WORK/measure.$engine.json"
    step "measure: $MEASURE_CMD"
    timeout $((300 + 3 * INTERVAL + SLOW + WINDOW + (SCRAPES * 2 + 1) * (SCRAPE_MAX_TIME + 10))) $MEASURE_CMD ||
        die "measurement failed: $(cat "$WORK/measure.$engine.json" 2>/dev/null)"

    if [[ $PERF == 1 ]]; then
        if command -v perf >/dev/null; then
            step "perf record -g -p $EXPORTER_PID for 15 s"
            timeout 60 perf record -q -g -o "$WORK/perf.$engine.data" -p "$EXPORTER_PID" -- sleep 15 >&2 2>"$WORK/perf.$engine.log" || true
            timeout 300 perf report -i "$WORK/perf.$engine.data" --no-children --percent-limit 0.5 --stdio \
                >"$WORK/perf_report.$engine.txt" 2>/dev/null || true
            timeout 300 perf report -i "$WORK/perf.$engine.data" --no-children --sort dso,sym -g none --percent-limit 0.3 --stdio \
                >"$WORK/perf_flat.$engine.txt" 2>/dev/null || true
            step "perf flat profile, $engine engine (top 40; full reports in $WORK):"
            grep -v '^#' "$WORK/perf_flat.$engine.txt" | grep -v '^$' | head -40 >&2 || true
            KEEP_DIR=1
        else
            step "PERF=1 but perf is not installed; skipped"
        fi
    fi

    sleep 1 # let the listener write its count
    printf -v "ACCEPTED_BY_EXPORTER_$engine" '%s' "$(($(accepted) - accepted_before))"
    python3 "$HELPER" netstat >"$WORK/netstat_after.$engine.json"
    python3 "$HELPER" netstat-delta --before "$WORK/netstat_before.$engine.json" \
        --after "$WORK/netstat_after.$engine.json" >"$WORK/netstat_delta.$engine.json"
    grep -iE "warn|error" "$WORK/exporter.$engine.log" | head -5 >&2 || true
    stop_pid "$EXPORTER_PID"
}

for engine in $ENGINES; do
    measure_engine "$engine"
done

ACCEPTED_BEFORE_REF2=$(accepted)
run_reference after
python3 "$HELPER" ref-median "$WORK"/ref_*.json >"$WORK/ref.json"
python3 "$HELPER" ref-median "$WORK"/reftokio_*.json >"$WORK/ref_tokio.json"
RAW_REF_ARGS=()
if ((RAW)); then
    python3 "$HELPER" ref-median "$WORK"/refraw_*.json >"$WORK/ref_raw.json"
    RAW_REF_ARGS=(--ref-raw "$WORK/ref_raw.json")
fi
sleep 1 # let the listener write its count
ACCEPTED_BY_REF=$((ACCEPTED_BY_REF + $(accepted) - ACCEPTED_BEFORE_REF2))

# ---------------------------------------------------------------- report
# goals_of ENGINE: the report's limits for ENGINE under GOALS.
goals_of() {
    if [[ $GOALS == one-core ]]; then
        echo --rss-limit-mib 0 --scrape-limit 0 --ratio-limit 0 --sustain
    elif [[ $1 == raw ]]; then
        echo --rss-limit-mib 150 --scrape-limit 2 --ratio-limit 0.5 # issue 22
    else
        echo --rss-limit-mib 150 --scrape-limit 1 --ratio-limit 1.3 # issue 9
    fi
}
status=0
for engine in $ENGINES; do
    exporter_cmd_var="EXPORTER_CMD_$engine"
    accepted_var="ACCEPTED_BY_EXPORTER_$engine"
    commands=("bash bench/scheduler_100k.sh   (ENGINES='$ENGINES' GOALS=$GOALS TARGETS=$TARGETS INTERVAL=$INTERVAL WINDOW=$WINDOW SCRAPES=$SCRAPES REF_PROBES=$REF_PROBES REF_RUNS=$REF_RUNS${TOKIO_WORKER_THREADS:+ TOKIO_WORKER_THREADS=$TOKIO_WORKER_THREADS}${EXPORTER_ARGS:+ EXPORTER_ARGS='$EXPORTER_ARGS'})"
        "revision measured: $REVISION" "$BUILD_CMD" "$GCC_CMD")
    ((RAW == 0)) || commands+=("$RAW_GCC_CMD")
    commands+=("$LISTENER_CMD" "${!exporter_cmd_var}" "$REF_CMD" "$REF_CMD --like-tokio")
    ((RAW == 0)) || commands+=("$RAW_REF_CMD")
    commands+=("(accepted by the listener: $ACCEPTED_BY_REF during the C references, ${!accepted_var} during the $engine exporter run)")
    # A FAIL (1) is a result, not an error for the ERR trap to report.
    result=0
    # shellcheck disable=SC2046  # goals_of prints flags
    python3 "$HELPER" report --engine "$engine" $(goals_of "$engine") --measure "$WORK/measure.$engine.json" \
        --ref "$WORK/ref.json" --ref-tokio "$WORK/ref_tokio.json" "${RAW_REF_ARGS[@]}" \
        --netstat-delta "$WORK/netstat_delta.$engine.json" \
        --accepted $((${!accepted_var} + ACCEPTED_BY_REF)) \
        --expected-rate "$(python3 -c "print($TARGETS / $INTERVAL)")" --nproc "$NPROC" \
        --commands "${commands[@]}" || result=$?
    ((result <= status)) || status=$result
done
exit "$status"
