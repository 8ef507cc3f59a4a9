#!/usr/bin/env bash
# Check: does the half-open guard see the starvation that leaks
# connections? A half-open probe that closes later than the kernel's
# delayed ACK (~200 ms after the SYN-ACK) lets the target accept a
# connection; every such close is more than 50 ms late, so
# synack_exporter_halfopen_late_closes_total must grow by at least the
# number of connections the target accepted. Two phases, each with wrk
# loading /probe for DURATION:
#   calm     no hog, the exporter at normal priority: 0 accepts and 0
#            late closes wanted;
#   starved  the exporter reniced to 19 (all its threads) and `nice -n HOG_NICE stress-ng
#            --cpu 1`, both pinned to CPU 0 (wrk on the other CPUs):
#            accepts are expected, and late closes >= accepts wanted.
# The target accepts each connection and closes it at once, after a
# banner (TARGET_BANNER, default "220 hello", as SSH or SMTP servers
# greet; set it empty for a silent accept-and-close). Whatever the
# target sends after the delayed ACK must not hide the probe's lateness.
#
# The target and the probe sockets live in a network namespace this
# script creates (bench/halfopen_under_load.sh explains why); wrk and the
# exporter's HTTP side stay on the host's 127.0.0.1.
#
# Usage: bash bench/halfopen_guard.sh [-r ROUNDS] [-d DURATION] [-c CONNECTIONS]
#   -r ROUNDS       rounds of both phases                  default 1   (env ROUNDS)
#   -d DURATION     wrk -d of each phase                   default 15s (env DURATION)
#   -c CONNECTIONS  wrk -c                                 default 32  (env CONNECTIONS)
#   env HOG_NICE    the hog's nice value, -20..19          default -19
#                   (-19 starves the exporter for seconds; about -9 gives
#                   wake-ups a little after the delayed ACK, where a
#                   greeting target's segments are the freshest news)
#   env TARGET_BANNER  what the target sends before closing  default "220 hello"
#   env SYNACK_BIN  a binary built with --features bench to use instead of
#                   building one (to compare two builds)
#   env KEEP_DIR=1  keep the work directory (metrics.PHASE.ROUND: the
#                   close-delay histogram and probe counts after each phase)
#
# Needs root (ip netns, setns, nice -19) and 2 or more CPUs. Traffic:
# 127.0.0.1 on the host and inside the namespace it creates (deleted on
# exit). Every background process is stopped on exit. Bounded: each phase
# lasts DURATION plus a few seconds. Exit: 0 PASS, 1 FAIL, 2 error.

set -Eeuo pipefail

ROUNDS=${ROUNDS:-1}
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-32}
TARGET_BANNER=${TARGET_BANNER-220 hello}
HOG_NICE=${HOG_NICE:--19}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
HELPER="$BENCH_DIR/bench_helper.py"

source "$BENCH_DIR/lib.sh"
parse_load_flags 38 "$@"
check_netns_load_setup taskset
(($(nproc) >= 2)) || die "needs 2 or more CPUs: the exporter and the hog share CPU 0, wrk uses the others"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/halfopen_guard.XXXXXX")
make_netns "synack-guard-$$"

if [[ -n ${SYNACK_BIN:-} ]]; then
    BIN=$SYNACK_BIN
    [[ -x $BIN ]] || die "SYNACK_BIN=$BIN is not executable"
else
    echo "== building: cargo build --release --features bench (the probe-namespace hook)"
    (cd "$ROOT" && timeout 1800 cargo build --release --features bench --quiet) || die "cargo build --release --features bench failed"
    BIN="$ROOT/target/release/synack_exporter"
fi

TARGET_PORT=$(python3 "$HELPER" freeport)
PORT=$(python3 "$HELPER" freeport)
while [[ $PORT == "$TARGET_PORT" ]]; do PORT=$(python3 "$HELPER" freeport); done

echo "== target: accept, send '${TARGET_BANNER}', close; 127.0.0.1:$TARGET_PORT in namespace $NETNS"
start_counting_target "$HELPER" "$TARGET_PORT" "$NETNS"
late_close_control "$NETNS" "$TARGET_PORT"

# metric NAME: a sample of the exporter's /metrics (0 when absent).
metric() {
    curl -sf --max-time 30 "http://127.0.0.1:$PORT/metrics" |
        awk -v n="$1" '$1 == n { print $2 + 0; f = 1 } END { if (!f) print 0 }'
}
late() { metric synack_exporter_halfopen_late_closes_total; }
# over_200ms: closes above the histogram's le="0.2" bucket.
over_200ms() {
    curl -sf --max-time 30 "http://127.0.0.1:$PORT/metrics" | awk '
        $1 == "synack_exporter_halfopen_close_delay_seconds_count" { c = $2 }
        $1 == "synack_exporter_halfopen_close_delay_seconds_bucket{le=\"0.2\"}" { b = $2 }
        END { print c - b }'
}

EXPORTER_CPUS=0 start_netns_exporter "$WORK/exporter.log"
URL="http://127.0.0.1:$PORT/probe?target=127.0.0.1:$TARGET_PORT&module=tcp_halfopen"

# renice_exporter NICE: every thread of the exporter (renice -p moves one).
renice_exporter() {
    local task
    for task in /proc/"$EXPORTER"/task/*; do
        renice "$1" -p "${task##*/}" >/dev/null
    done
}

SECONDS_LONG=${DURATION%s}
ALL_BUT_0=1-$(($(nproc) - 1))
{
    echo "nproc $(nproc), kernel $(uname -r); HZ-rounded TCP_INFO ages"
    echo "exporter: taskset -c 0 (starved phase: reniced to 19); load: taskset -c $ALL_BUT_0 wrk -t1 -c$CONNECTIONS -d$DURATION '$URL'"
    echo "starved phase hog: nice -n $HOG_NICE stress-ng --cpu 1 --taskset 0"
    printf '%-8s %5s %8s %8s %8s %12s %10s %10s %8s\n' phase round probes success accepts delayed_acks late_closes over_200ms verdict
} | tee "$WORK/summary"

fail=0
for round in $(seq "$ROUNDS"); do
    for phase in calm starved; do
        a0=$(target_accepts); d0=$(tcpext "$NETNS" DelayedACKs); l0=$(late); o0=$(over_200ms)
        s0=$(probe_results "$PORT" success)
        hog=""
        if [[ $phase == starved ]]; then
            renice_exporter 19
            nice -n "$HOG_NICE" stress-ng --cpu 1 --taskset 0 --timeout "$((SECONDS_LONG + 5))s" --quiet &
            hog=$!
            PIDS+=("$hog")
            sleep 1
        fi
        timeout $((SECONDS_LONG + 30)) taskset -c "$ALL_BUT_0" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --timeout 30s "$URL" \
            >"$WORK/wrk.$phase.$round" 2>&1 || die "$phase: wrk failed: $(tail -3 "$WORK/wrk.$phase.$round")"
        if [[ -n $hog ]]; then
            kill "$hog" 2>/dev/null || true
            wait "$hog" 2>/dev/null || true
            renice_exporter 0
        fi
        # Probes still in flight when wrk stopped end within their 5 s timeout.
        sleep 6
        a1=$(target_accepts); d1=$(tcpext "$NETNS" DelayedACKs); l1=$(late); o1=$(over_200ms)
        s1=$(probe_results "$PORT" success)
        curl -sf --max-time 30 "http://127.0.0.1:$PORT/metrics" | grep -E '^synack_exporter_(halfopen|probes_total)' \
            >"$WORK/metrics.$phase.$round" || true
        requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk.$phase.$round")
        accepts=$((a1 - a0)) lates=$((l1 - l0))
        verdict=PASS
        if [[ $phase == calm ]]; then
            ((accepts == 0 && lates == 0)) || verdict=FAIL
        else
            ((lates >= accepts)) || verdict=FAIL
        fi
        [[ $verdict == PASS ]] || fail=1
        printf '%-8s %5s %8s %8s %8s %12s %10s %10s %8s\n' "$phase" "$round" "$requests" "$((s1 - s0))" \
            "$accepts" "$((d1 - d0))" "$lates" "$((o1 - o0))" "$verdict" | tee -a "$WORK/summary"
    done
done
echo "probes: wrk's /probe requests; success: the exporter's successful tcp_halfopen probes"
echo "accepts: connections the target accept()ed; delayed_acks: TcpExtDelayedACKs in the probe namespace"
echo "late_closes: synack_exporter_halfopen_late_closes_total; over_200ms: closes above le=\"0.2\""
echo "PASS: calm has 0 accepts and 0 late closes; starved has late closes >= accepts"
if ((fail)); then echo "FAIL"; else echo "PASS"; fi
exit "$fail"
