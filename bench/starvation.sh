#!/usr/bin/env bash
# Benchmark: does the half-open promise hold beside a CPU hog of higher
# priority? A half-open probe must close its socket before the kernel's
# delayed ACK (~200 ms after the SYN-ACK); if the probe thread is starved
# of CPU past that, the handshake completes and the target accepts a
# connection. This counts those accepts, and the kernel's DelayedACKs,
# while wrk loads /probe and `nice -n -19 stress-ng --cpu 8` competes.
#
# Variants, run alternately (the machine is shared and noisy):
#   default   no flags: every thread at the process's priority
#   realtime  --probe.realtime-priority: the probe thread under SCHED_RR 1
#   raw       the raw-SYN engine (issue 22: `tcp: {engine: raw}` in the
#             tcp_halfopen module), no flags: the kernel RSTs the SYN-ACK
#             itself, whatever the exporter's threads are doing, so the
#             goal is 0 accepts without --probe.realtime-priority
#
# Usage: bash bench/starvation.sh [-r ROUNDS] [-d DURATION] [-c CONNECTIONS]
#   -r ROUNDS       rounds of every variant         default 1    (env ROUNDS)
#   -d DURATION     wrk -d and the hog's length     default 30s  (env DURATION)
#   -c CONNECTIONS  wrk -c                          default 2000 (env CONNECTIONS)
#   env ENGINES     "socket" (default: the variants default and realtime),
#                   "raw" (the variant raw) or "socket raw" (all three)
#   env VARIANTS    the variants by name (overrides ENGINES)
#   env KEEP_DIR=1  keep the work directory
#
# Needs root for the hog's negative nice value (and the raw engine's
# CAP_NET_RAW). Only 127.0.0.1 is used. Every background process is stopped
# on exit. Exit: 0 done, 1 the raw variant had an accept, 2 error.

set -Eeuo pipefail

ROUNDS=${ROUNDS:-1}
DURATION=${DURATION:-30s}
CONNECTIONS=${CONNECTIONS:-2000}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
HELPER="$BENCH_DIR/bench_helper.py"

source "$BENCH_DIR/lib.sh"
parse_load_flags 28 "$@"

[[ $(id -u) == 0 ]] || die "run as root: the CPU hog needs nice -19"
for tool in wrk stress-ng curl python3 cargo; do
    command -v "$tool" >/dev/null ||
        die "missing $tool; as root run: apt-get install -y wrk stress-ng curl python3"
done
ENGINES=${ENGINES:-socket}
default_variants=""
for engine in $ENGINES; do
    case $engine in
        socket) default_variants+=" default realtime" ;;
        raw) default_variants+=" raw" ;;
        *) die "ENGINES: unknown engine '$engine' (socket, raw)" ;;
    esac
done
VARIANTS=${VARIANTS:-$default_variants}
[[ -n ${VARIANTS// /} ]] || die "no variant to run"
# wrk and the exporter each hold a descriptor per connection.
ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > CONNECTIONS * 2 + 100 )) || die "open file limit $(ulimit -n) is too low for -c $CONNECTIONS"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/starvation.XXXXXX")
# build_ours (lib.sh) finds the binary where cargo put it (CARGO_TARGET_DIR too)
build_ours "$ROOT"
BIN=$OURS_BIN
cat >"$WORK/raw.yml" <<'EOF'
modules:
  tcp_halfopen:
    prober: tcp_halfopen
    tcp:
      engine: raw
EOF

freeport() { python3 "$HELPER" freeport; }
TARGET_PORT=$(freeport)
PORT=$(freeport)
while [[ $PORT == "$TARGET_PORT" ]]; do PORT=$(freeport); done

echo "== target: accept-and-close listener on 127.0.0.1:$TARGET_PORT"
start_counting_target "$HELPER" "$TARGET_PORT"

accepts() { python3 -c "import sys; sys.path.insert(0, '$BENCH_DIR'); import bench_helper as h; print(h.target_count($TARGET_PID, '$WORK/target.count'))"; }
delayed_acks() { awk '/^TcpExt:/ { if (!n) { for (i = 1; i <= NF; i++) col[$i] = i; n = 1 } else print $col["DelayedACKs"] }' /proc/net/netstat; }
# connect()s on the machine (Tcp ActiveOpens): the socket engine makes one per
# probe, the raw engine none (wrk's own connections count too).
active_opens() { awk '/^Tcp:/ { if (!n) { for (i = 1; i <= NF; i++) col[$i] = i; n = 1 } else print $col["ActiveOpens"] }' /proc/net/snmp; }
probes() { curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v r="$1" '$1 == "synack_exporter_probes_total{module=\"tcp_halfopen\",result=\"" r "\"}" { print $2 + 0 }'; }

flags_of() {
    case $1 in
        default) echo "" ;;
        realtime) echo "--probe.realtime-priority" ;;
        raw) echo "--config.file $WORK/raw.yml" ;;
        *) die "unknown variant $1" ;;
    esac
}

URL="http://127.0.0.1:$PORT/probe?target=127.0.0.1:$TARGET_PORT&module=tcp_halfopen"
SECONDS_LONG=${DURATION%s}
printf '%s\n' "nproc $(nproc), kernel $(uname -r); wrk -t2 -c$CONNECTIONS -d$DURATION '$URL'" \
    "hog: nice -n -19 stress-ng --cpu 8 --timeout $((SECONDS_LONG + 5))s" | tee "$WORK/summary"
echo "raw: $BIN --config.file $WORK/raw.yml (modules: {tcp_halfopen: {prober: tcp_halfopen, tcp: {engine: raw}}})" |
    tee -a "$WORK/summary"
printf '%-9s %5s %10s %9s %12s %10s %10s %10s\n' variant round requests accepts delayed_acks success timeout connects |
    tee -a "$WORK/summary"
raw_accepts=0

for round in $(seq "$ROUNDS"); do
    for variant in $VARIANTS; do
        # shellcheck disable=SC2046  # the flags are words
        "$BIN" --web.listen-address "127.0.0.1:$PORT" --log.level warn $(flags_of "$variant") \
            --web.max-connections "$((CONNECTIONS + 64))" \
            >"$WORK/exporter.$variant.$round.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        for _ in $(seq 100); do
            curl -sf -o /dev/null "http://127.0.0.1:$PORT/-/healthy" && break
            kill -0 "$pid" 2>/dev/null || die "$variant: exporter exited: $(tail -3 "$WORK/exporter.$variant.$round.log")"
            sleep 0.1
        done
        a0=$(accepts); d0=$(delayed_acks); o0=$(active_opens)
        nice -n -19 stress-ng --cpu 8 --timeout "$((SECONDS_LONG + 5))s" --quiet &
        hog=$!
        PIDS+=("$hog")
        sleep 1
        timeout $((SECONDS_LONG + 60)) wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$URL" >"$WORK/wrk.$variant.$round" 2>&1 ||
            die "$variant: wrk failed: $(tail -3 "$WORK/wrk.$variant.$round")"
        kill "$hog" 2>/dev/null || true
        wait "$hog" 2>/dev/null || true
        a1=$(accepts); d1=$(delayed_acks); o1=$(active_opens)
        requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk.$variant.$round")
        printf '%-9s %5s %10s %9s %12s %10s %10s %10s\n' "$variant" "$round" "$requests" \
            "$((a1 - a0))" "$((d1 - d0))" "$(probes success)" "$(probes timeout)" "$((o1 - o0))" |
            tee -a "$WORK/summary"
        [[ $variant != raw ]] || raw_accepts=$((raw_accepts + a1 - a0))
        kill -TERM "$pid"
        wait "$pid" 2>/dev/null || true
        sleep 1
    done
done
echo "accepts: connections the target's accept() returned (0 = every probe stayed half-open)"
echo "delayed_acks: kernel TcpExt DelayedACKs sent during the run (any is a completed handshake)"
echo "connects: kernel Tcp ActiveOpens during the run, machine-wide (socket engine: one per probe;"
echo "          raw engine: wrk's $CONNECTIONS connections only)"
if [[ " $VARIANTS " == *" raw "* ]]; then
    if ((raw_accepts == 0)); then
        echo "ok      raw engine without --probe.realtime-priority: 0 accepts"
    else
        echo "NOT MET raw engine without --probe.realtime-priority: $raw_accepts accepts (goal 0)"
        exit 1
    fi
fi
