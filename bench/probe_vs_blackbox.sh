#!/usr/bin/env bash
# Benchmark: synack_exporter (tcp_halfopen) vs Debian's prometheus-blackbox-exporter
# (prober: tcp, full connect), both probing one open loopback port, loaded
# with wrk on /probe. Runs alternate (ours, blackbox, ours, ...) because the
# machine may be shared and noisy; the summary uses medians.
#
# Usage: bash bench/probe_vs_blackbox.sh [-r ROUNDS] [-c CONNECTIONS] [-t THREADS]
#                                        [-d DURATION] [-w WARMUP]
#   -r ROUNDS       rounds of (ours, blackbox)           default 3   (env ROUNDS)
#   -c CONNECTIONS  wrk -c                               default 32  (env CONNECTIONS)
#   -t THREADS      wrk -t                               default 2   (env THREADS)
#   -d DURATION     wrk -d of each measured run          default 10s (env DURATION)
#   -w WARMUP       wrk -d of the warm-up before each    default 2s  (env WARMUP)
#   env OURS_ARGS   extra flags for synack_exporter, e.g. "--probe.max-in-flight 64"
#   env ENGINES     the probe engines of this tree's build to run, side by side
#                   in every round: "socket" (default: the built-in
#                   tcp_halfopen module, as before issue 22), "raw" (a second
#                   exporter whose tcp_halfopen module has `tcp: {engine: raw}`;
#                   needs root), or "socket raw". With raw, every round also
#                   runs wrk on that exporter's /-/healthy (the HTTP cost alone,
#                   for the breakdown; HEALTHY=0 skips it, HEALTHY=1 adds it to
#                   a socket-only run) and bench/raw_ref.c, the raw C loop
#                   (RAW_REF_BATCH SYNs in flight, default 64), beside
#                   halfopen_ref.c
#   env BASELINE_REV  a git revision (such as main~3) to build and run as a third
#                   exporter, "before", alternated with the others in every round:
#                   shows whether a change made /probe slower (goal: ours CPU per
#                   probe <= 1.10x before's, medians of the same run)
#   env KEEP_DIR=1  keep the work directory (configs, logs, raw wrk output)
#
# Exit status: 0 PASS, 1 FAIL (target not met), 2 setup or measurement error.
# Each round also runs bench/halfopen_ref.c, a C loop making the same
# socket calls as one half-open probe on one thread, against the same
# listener (on 127.1.0.1, which the listener on 0.0.0.0 also serves).
# Targets (issue 9): ours >= 7x blackbox requests/s, blackbox's CPU per
# probe >= 12x ours, ours <= 1.5x the C loop's CPU per probe, and ours p99
# < blackbox p99. With the raw engine (issue 22): ours raw >= 7x blackbox
# requests/s, blackbox's CPU per probe >= 15x ours raw's, ours raw <= 1.0x
# the C loop's (halfopen_ref.c's) CPU per probe, no accept and no
# connect() per probe; the summary quotes each ratio's range over rounds.
# Only 127.0.0.0/8 is used. Every background process is stopped on exit.

set -Eeuo pipefail

ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
OURS_ARGS=${OURS_ARGS:-}
BLACKBOX=/usr/bin/prometheus-blackbox-exporter

while getopts "r:c:t:d:w:h" opt; do
    case $opt in
        r) ROUNDS=$OPTARG ;;
        c) CONNECTIONS=$OPTARG ;;
        t) THREADS=$OPTARG ;;
        d) DURATION=$OPTARG ;;
        w) WARMUP=$OPTARG ;;
        h) sed -n '2,41p' "$0"; exit 0 ;;
        *) exit 2 ;;
    esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer" >&2; exit 2; }
ENGINES=${ENGINES:-socket}
SOCKET=0 RAW=0
for engine in $ENGINES; do
    case $engine in
        socket) SOCKET=1 ;;
        raw) RAW=1 ;;
        *) echo "ENGINES: unknown engine '$engine' (socket, raw)" >&2; exit 2 ;;
    esac
done
((SOCKET + RAW)) || { echo "ENGINES names no engine" >&2; exit 2; }
HEALTHY=${HEALTHY:-$RAW}
RAW_REF_BATCH=${RAW_REF_BATCH:-64}
[[ $HEALTHY == [01] ]] || { echo "HEALTHY must be 0 or 1" >&2; exit 2; }
((RAW == 0 || $(id -u) == 0)) || { echo "the raw engine and bench/raw_ref.c need root (CAP_NET_RAW)" >&2; exit 2; }

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
HELPER="$BENCH_DIR/bench_helper.py"

source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------- prerequisites
need_install=()
[[ -x $BLACKBOX ]] || need_install+=(prometheus-blackbox-exporter)
command -v wrk >/dev/null || need_install+=(wrk)
if ((${#need_install[@]})); then
    if [[ $(id -u) == 0 ]]; then
        echo "installing: prometheus-blackbox-exporter wrk"
        export DEBIAN_FRONTEND=noninteractive
        timeout 600 apt-get install -y prometheus-blackbox-exporter wrk ||
            { timeout 600 apt-get update && timeout 600 apt-get install -y prometheus-blackbox-exporter wrk; } ||
            die "apt-get install -y prometheus-blackbox-exporter wrk failed"
    else
        die "missing ${need_install[*]}; as root run: apt-get install -y prometheus-blackbox-exporter wrk"
    fi
fi
for tool in curl python3 cargo timeout gcc; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/probe_vs_blackbox.XXXXXX")

# ---------------------------------------------------------------- build
build_ours "$ROOT"

BASELINE_REV=${BASELINE_REV:-}
BEFORE_BIN=""
if [[ -n $BASELINE_REV ]]; then
    echo "== cargo build --release of $BASELINE_REV (the baseline, in $WORK/baseline)"
    git -C "$ROOT" rev-parse --verify --quiet "$BASELINE_REV^{commit}" >/dev/null ||
        die "BASELINE_REV=$BASELINE_REV is not a commit of $ROOT"
    git -C "$ROOT" archive --format=tar --prefix=baseline/ "$BASELINE_REV" | tar -x -C "$WORK" ||
        die "cannot export $BASELINE_REV"
    # Its own target directory under WORK (removed on exit), even when
    # CARGO_TARGET_DIR points at this tree's: the two builds must not overwrite each other.
    (cd "$WORK/baseline" && timeout 1800 env -u CARGO_TARGET_DIR cargo build --release --quiet) ||
        die "cargo build --release of $BASELINE_REV failed"
    BEFORE_BIN="$WORK/baseline/target/release/synack_exporter"
    [[ -x $BEFORE_BIN ]] || die "no binary at $BEFORE_BIN"
fi

REF="$WORK/halfopen_ref"
gcc -O2 -Wall -o "$REF" "$BENCH_DIR/halfopen_ref.c" || die "gcc -O2 bench/halfopen_ref.c failed"
REF_PROBES=${REF_PROBES:-200000}
RAW_REF="$WORK/raw_ref"
if ((RAW)); then
    gcc -O2 -Wall -o "$RAW_REF" "$BENCH_DIR/raw_ref.c" || die "gcc -O2 bench/raw_ref.c failed"
fi

# ---------------------------------------------------------------- ports
freeport() { python3 "$HELPER" freeport; }
TARGET_PORT=$(freeport)
OURS_PORT=$(freeport)
BB_PORT=$(freeport)
BEFORE_PORT=$(freeport)
while [[ $BEFORE_PORT == "$TARGET_PORT" || $BEFORE_PORT == "$OURS_PORT" ]]; do BEFORE_PORT=$(freeport); done
while [[ $OURS_PORT == "$TARGET_PORT" ]]; do OURS_PORT=$(freeport); done
while [[ $BB_PORT == "$TARGET_PORT" || $BB_PORT == "$OURS_PORT" || $BB_PORT == "$BEFORE_PORT" ]]; do
    BB_PORT=$(freeport)
done
RAW_PORT=$(freeport)
while [[ " $TARGET_PORT $OURS_PORT $BEFORE_PORT $BB_PORT " == *" $RAW_PORT "* ]]; do RAW_PORT=$(freeport); done

# ---------------------------------------------------------------- target
echo "== target: accept-and-close listener on 0.0.0.0:$TARGET_PORT (backlog 4096)"
start_counting_target "$HELPER" "$TARGET_PORT" "" 0.0.0.0

# ---------------------------------------------------------------- ours
if ((SOCKET)); then
    echo "== ours: $OURS_BIN --web.listen-address 127.0.0.1:$OURS_PORT ${OURS_ARGS}"
    # shellcheck disable=SC2086  # OURS_ARGS is a list of flags
    "$OURS_BIN" --web.listen-address "127.0.0.1:$OURS_PORT" $OURS_ARGS >"$WORK/ours.log" 2>&1 &
    OURS_PID=$!
    PIDS+=("$OURS_PID")
    wait_http ours "$OURS_PID" "http://127.0.0.1:$OURS_PORT/-/healthy"
fi
if ((RAW)); then
    cat >"$WORK/raw.yml" <<'EOF'
modules:
  tcp_halfopen:
    prober: tcp_halfopen
    tcp:
      engine: raw
EOF
    echo "== ours raw: $OURS_BIN --config.file $WORK/raw.yml --web.listen-address 127.0.0.1:$RAW_PORT ${OURS_ARGS}"
    echo "   (raw.yml: modules: {tcp_halfopen: {prober: tcp_halfopen, tcp: {engine: raw}}})"
    # shellcheck disable=SC2086  # OURS_ARGS is a list of flags
    "$OURS_BIN" --config.file "$WORK/raw.yml" --web.listen-address "127.0.0.1:$RAW_PORT" $OURS_ARGS \
        >"$WORK/raw.log" 2>&1 &
    RAW_PID=$!
    PIDS+=("$RAW_PID")
    wait_http raw "$RAW_PID" "http://127.0.0.1:$RAW_PORT/-/healthy"
fi
# /-/healthy: the raw exporter's, or the socket one's in a socket-only run.
if ((RAW)); then HEALTHY_PORT=$RAW_PORT HEALTHY_PID=${RAW_PID:-}; else HEALTHY_PORT=$OURS_PORT HEALTHY_PID=${OURS_PID:-}; fi
if [[ -n $BEFORE_BIN ]]; then
    echo "== before ($BASELINE_REV): $BEFORE_BIN --web.listen-address 127.0.0.1:$BEFORE_PORT ${OURS_ARGS}"
    # shellcheck disable=SC2086  # OURS_ARGS is a list of flags
    "$BEFORE_BIN" --web.listen-address "127.0.0.1:$BEFORE_PORT" $OURS_ARGS >"$WORK/before.log" 2>&1 &
    BEFORE_PID=$!
    PIDS+=("$BEFORE_PID")
    wait_http before "$BEFORE_PID" "http://127.0.0.1:$BEFORE_PORT/-/healthy"
fi

# ---------------------------------------------------------------- blackbox
cat >"$WORK/blackbox.yml" <<'EOF'
modules:
  tcp_connect:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
EOF
echo "== blackbox: $BLACKBOX --config.file=$WORK/blackbox.yml --web.listen-address=127.0.0.1:$BB_PORT"
"$BLACKBOX" --config.file="$WORK/blackbox.yml" --web.listen-address="127.0.0.1:$BB_PORT" \
    >"$WORK/blackbox.log" 2>&1 &
BB_PID=$!
PIDS+=("$BB_PID")
wait_http blackbox "$BB_PID" "http://127.0.0.1:$BB_PORT/-/healthy"

OURS_URL="http://127.0.0.1:$OURS_PORT/probe?target=127.0.0.1:$TARGET_PORT&module=tcp_halfopen"
BB_URL="http://127.0.0.1:$BB_PORT/probe?target=127.0.0.1:$TARGET_PORT&module=tcp_connect"
BEFORE_URL="http://127.0.0.1:$BEFORE_PORT/probe?target=127.0.0.1:$TARGET_PORT&module=tcp_halfopen"
RAW_URL="http://127.0.0.1:$RAW_PORT/probe?target=127.0.0.1:$TARGET_PORT&module=tcp_halfopen"
HEALTHY_URL="http://127.0.0.1:$HEALTHY_PORT/-/healthy"
WRK_OURS="wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency '$OURS_URL'"
WRK_RAW="wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency '$RAW_URL'"
WRK_HEALTHY="wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency '$HEALTHY_URL'"
WRK_BB="wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency '$BB_URL'"
# print_wrk_commands: the wrk command of every exporter measured.
print_wrk_commands() {
    echo "wrk commands:"
    ((SOCKET == 0)) || echo "  ours:       $WRK_OURS"
    ((RAW == 0)) || echo "  ours raw:   $WRK_RAW"
    ((HEALTHY == 0)) || echo "  /-/healthy: $WRK_HEALTHY"
    echo "  blackbox:   $WRK_BB"
}

echo
echo "nproc: $(nproc)   kernel: $(uname -r)   cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "blackbox: $("$BLACKBOX" --version 2>&1 | head -n1)"
echo "engines: $ENGINES; revision $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
print_wrk_commands
echo "warm-up before each run: same command with -d$WARMUP; rounds: $ROUNDS"
echo

# c_loop LABEL OUT COMMAND...: one run of a C loop (bounded to 120 s) into
# OUT, with the accepts the target counted during it added as "accepts".
c_loop() {
    local label=$1 out=$2 a0 a1
    shift 2
    a0=$(target_accepts)
    timeout 120 "$@" >"$out.tmp" || die "the $label failed: $(cat "$out.tmp")"
    a1=$(target_accepts)
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); r["accepts"] = int(sys.argv[2]); print(json.dumps(r))' \
        "$out.tmp" "$((a1 - a0))" >"$out" || die "cannot read the $label's output: $(cat "$out.tmp")"
    echo "-- round $round $label: $(cat "$out")"
}

for round in $(seq "$ROUNDS"); do
    echo "=== round $round of $ROUNDS"
    round_records=()
    if ((SOCKET)); then
        run_measured ours "$round" "$OURS_URL" "$OURS_PID"
        round_records+=("$WORK/r$round-ours.json")
        sleep 1
    fi
    if ((RAW)); then
        run_measured raw "$round" "$RAW_URL" "$RAW_PID" "$RAW_PORT"
        round_records+=("$WORK/r$round-raw.json")
        sleep 1
    fi
    if ((HEALTHY)); then
        run_measured healthy "$round" "$HEALTHY_URL" "$HEALTHY_PID" "$HEALTHY_PORT"
        round_records+=("$WORK/r$round-healthy.json")
        sleep 1
    fi
    run_measured blackbox "$round" "$BB_URL" "$BB_PID"
    sleep 1
    if [[ -n $BEFORE_BIN ]]; then
        run_measured before "$round" "$BEFORE_URL" "$BEFORE_PID" "$BEFORE_PORT"
        sleep 1
    fi
    # One target, 127.1.0.1 on the open port; bounded to 60 s.
    c_loop "C loop" "$WORK/r$round-c.json" "$REF" "$REF_PROBES" 1 "$TARGET_PORT" "$TARGET_PORT" 60
    sleep 1
    if ((RAW)); then
        c_loop "raw C loop" "$WORK/r$round-rawc.json" "$RAW_REF" "$REF_PROBES" 1 "$TARGET_PORT" "$TARGET_PORT" 60 \
            --batch "$RAW_REF_BATCH"
        sleep 1
    fi
    round_records+=("$WORK/r$round-blackbox.json")
    [[ -z $BEFORE_BIN ]] || round_records+=("$WORK/r$round-before.json")
    python3 "$HELPER" report --round-only "${round_records[@]}"
    echo
done

echo "=== summary"
echo "nproc: $(nproc)"
print_wrk_commands
echo "C loops: $REF $REF_PROBES 1 $TARGET_PORT $TARGET_PORT 60"
((RAW == 0)) || echo "         $RAW_REF $REF_PROBES 1 $TARGET_PORT $TARGET_PORT 60 --batch $RAW_REF_BATCH"
echo "columns: expCPU/tgtCPU/wrkCPU = CPU of exporter/target/wrk in % of one core during the run;"
echo "         CPUus/rq = exporter CPU microseconds per request; mach% = whole machine busy"
echo "         (max $(nproc)00%); steal% = CPU stolen by the hypervisor; accepts = connections"
echo "         the target accept()ed during the run (half-open probes should cause none)"
records=()
references=()
for round in $(seq "$ROUNDS"); do
    for kind in ours raw healthy blackbox before; do
        [[ ! -f $WORK/r$round-$kind.json ]] || records+=("$WORK/r$round-$kind.json")
    done
    references+=(--reference "$WORK/r$round-c.json")
    ((RAW == 0)) || references+=(--raw-reference "$WORK/r$round-rawc.json")
done
# A FAIL verdict (1) is a result, not an error for the ERR trap to report.
verdict=0
python3 "$HELPER" report "${references[@]}" "${records[@]}" || verdict=$?
[[ $verdict -le 1 ]] || die "report failed"
exit "$verdict"
