#!/usr/bin/env bash
# Gate: do half-open probes stay half-open under HTTP overload beside a
# CPU hog? A half-open probe must close its socket (RST) before the
# kernel's delayed ACK (~200 ms after the SYN-ACK); a later close lets the
# handshake complete and the target accept a connection. While
# `wrk -t2 -c2000 -d60s` loads /probe and `stress-ng --cpu 2` (normal
# priority) competes, this counts the target's accepts and the kernel's
# TcpExtDelayedACKs. PASS needs both to be 0 in every run.
#
# Isolation: plain HTTP load on loopback moves TcpExtDelayedACKs by itself
# (measured: ~280,000 in 15 s of wrk -c2000 on /-/healthy, from both wrk's
# and the exporter's sockets), so the counter is read in a network
# namespace this script creates, where only probe traffic lives: the
# target listens on that namespace's 127.0.0.1, and the exporter, started
# with SYNACK_BENCH_PROBE_NETNS, moves the threads that probe into it
# after binding its HTTP listener (setns), so its probe sockets are there
# and its HTTP sockets stay on the host's 127.0.0.1 with wrk.
#
# Usage: bash bench/halfopen_under_load.sh [-r ROUNDS] [-d DURATION] [-c CONNECTIONS]
#   -r ROUNDS       rounds of every variant          default 1    (env ROUNDS)
#   -d DURATION     wrk -d and the hog's length      default 60s  (env DURATION)
#   -c CONNECTIONS  wrk -c                           default 2000 (env CONNECTIONS)
#   env VARIANTS    run alternately, default "default":
#                   default  | realtime (--probe.realtime-priority)
#                   (the thread designs compared for issue 9 are on the
#                   branch `threads`, bench/thread_designs.sh; its results
#                   are in bench/results/thread_designs.txt)
#   env OURS_ARGS   extra synack_exporter flags for every run
#   env HOG_CPUS    stress-ng --cpu N                default 2
#   env KEEP_DIR=1  keep the work directory
#
# Needs root (ip netns, setns). Traffic: 127.0.0.1 on the host and inside
# the namespace it creates (deleted on exit). Every background process is
# stopped on exit. Exit: 0 PASS, 1 FAIL, 2 error.

set -Eeuo pipefail

ROUNDS=${ROUNDS:-1}
DURATION=${DURATION:-60s}
CONNECTIONS=${CONNECTIONS:-2000}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
HELPER="$BENCH_DIR/bench_helper.py"

source "$BENCH_DIR/lib.sh"
parse_load_flags 34 "$@"
DESIGNS=${VARIANTS:-default}
OURS_ARGS=${OURS_ARGS:-}
HOG_CPUS=${HOG_CPUS:-2}

check_netns_load_setup timeout

# design_flags VARIANT: the exporter flags of a variant.
design_flags() {
    case $1 in
        default) ;;
        realtime) echo "--probe.realtime-priority" ;;
        *) die "unknown variant $1 (default, realtime)" ;;
    esac
}
for design in $DESIGNS; do design_flags "$design" >/dev/null; done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/halfopen_under_load.XXXXXX")
make_netns "synack-gate-$$"

echo "== building: cargo build --release --features bench (the probe-namespace hook)"
(cd "$ROOT" && timeout 1800 cargo build --release --features bench --quiet) || die "cargo build --release --features bench failed"
BIN="$ROOT/target/release/synack_exporter"

freeport() { python3 "$HELPER" freeport; }
TARGET_PORT=$(freeport)
PORT=$(freeport)

echo "== target: accept-and-close listener on 127.0.0.1:$TARGET_PORT in namespace $NETNS"
start_counting_target "$HELPER" "$TARGET_PORT" "$NETNS"

# Counters of the namespace and of the exporter; lib.sh has them.
accepts() { target_accepts; }
probes() { probe_results "$PORT" "$1"; }

late_close_control "$NETNS" "$TARGET_PORT"

URL="http://127.0.0.1:$PORT/probe?target=127.0.0.1:$TARGET_PORT&module=tcp_halfopen"
SECONDS_LONG=${DURATION%s}
{
    echo "nproc $(nproc), kernel $(uname -r); designs: $DESIGNS; rounds: $ROUNDS; OURS_ARGS: ${OURS_ARGS:-none}"
    echo "load: wrk -t2 -c$CONNECTIONS -d$DURATION '$URL'"
    echo "hog:  stress-ng --cpu $HOG_CPUS --timeout $((SECONDS_LONG + 5))s (normal priority)"
    echo "probe sockets and target in network namespace $NETNS; HTTP on the host's 127.0.0.1"
    printf '%-8s %5s %9s %8s %8s %12s %9s %9s %8s %8s\n' design round requests 'req/s' accepts delayed_acks overflows success timeout local
} | tee "$WORK/summary"

fail=0
for round in $(seq "$ROUNDS"); do
    for design in $DESIGNS; do
        log="$WORK/exporter.$design.$round.log"
        # shellcheck disable=SC2046,SC2086  # the flags are words
        start_netns_exporter "$log" $(design_flags "$design") $OURS_ARGS
        pid=$EXPORTER
        a0=$(accepts); d0=$(tcpext "$NETNS" DelayedACKs); o0=$(tcpext "$NETNS" ListenOverflows)
        s0=$(probes success); t0=$(probes timeout); l0=$(probes local)
        stress-ng --cpu "$HOG_CPUS" --timeout "$((SECONDS_LONG + 5))s" --quiet &
        hog=$!
        PIDS+=("$hog")
        sleep 1
        timeout $((SECONDS_LONG + 60)) wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$URL" >"$WORK/wrk.$design.$round" 2>&1 ||
            die "$design: wrk failed: $(tail -3 "$WORK/wrk.$design.$round")"
        kill "$hog" 2>/dev/null || true
        wait "$hog" 2>/dev/null || true
        # Probes still in flight when wrk stopped finish within their timeout.
        sleep 1
        a1=$(accepts); d1=$(tcpext "$NETNS" DelayedACKs); o1=$(tcpext "$NETNS" ListenOverflows)
        s1=$(probes success); t1=$(probes timeout); l1=$(probes local)
        requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk.$design.$round")
        rps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$WORK/wrk.$design.$round")
        printf '%-8s %5s %9s %8s %8s %12s %9s %9s %8s %8s\n' "$design" "$round" "$requests" "$rps" \
            "$((a1 - a0))" "$((d1 - d0))" "$((o1 - o0))" "$((s1 - s0))" "$((t1 - t0))" "$((l1 - l0))" |
            tee -a "$WORK/summary"
        if ((a1 - a0 != 0 || d1 - d0 != 0)); then fail=1; echo "FAIL:$design" >>"$WORK/verdicts"; fi
        kill -TERM "$pid"
        wait "$pid" 2>/dev/null || true
        sleep 1
    done
done
echo "accepts: connections the target accept()ed (0 = every probe stayed half-open)"
echo "delayed_acks: TcpExtDelayedACKs in the probe namespace (a delayed ACK completes a handshake)"
echo "overflows: TcpExtListenOverflows there (an ACK the full accept queue dropped)"
echo "success/timeout/local: the exporter's probe results during the run"
for design in $DESIGNS; do
    if grep -qx "FAIL:$design" "$WORK/verdicts" 2>/dev/null; then
        echo "FAIL $design: accepts or delayed ACKs"
    else
        echo "PASS $design: 0 accepts and 0 delayed ACKs in every round"
    fi
done
exit "$fail"
