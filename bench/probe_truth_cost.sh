#!/usr/bin/env bash
# What issue 12's per-probe syscalls cost the kernel-side probe, measured
# with bench/halfopen_ref.c alone (no exporter, no HTTP): the minimal
# half-open loop against the same loop plus setsockopt(IP_RECVERR) and
# getsockopt(TCP_INFO) after each success, alternated ROUNDS times in one
# run on a loopback listener, medians and their ratio printed.
#
# Usage: bash bench/probe_truth_cost.sh [ROUNDS] [PROBES]   (defaults 5, 200000)
# Only 127.0.0.0/8 is used; the listener is stopped on exit.
set -Eeuo pipefail
ROUNDS=${1:-5}
PROBES=${2:-200000}
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $PROBES =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS and PROBES must be positive integers" >&2; exit 2; }
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
LISTENER_PID=
cleanup() { [ -n "$LISTENER_PID" ] && kill "$LISTENER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
gcc -O2 -Wall -o "$WORK/ref" "$BENCH_DIR/halfopen_ref.c"

# A listener that never accepts: half-open probes get SYN-ACK, then RST.
python3 - "$WORK/port" <<'PY' &
import socket, sys, time
s = socket.socket()
s.bind(("127.1.0.1", 0))
s.listen(4096)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
time.sleep(3600)
PY
LISTENER_PID=$!
for _ in $(seq 50); do [ -s "$WORK/port" ] && break; sleep 0.1; done
PORT=$(cat "$WORK/port")
# One target, 127.1.0.1 (target 0 of halfopen_ref's numbering), open port;
# the closed port is never used with one target.
run() { "$WORK/ref" "$PROBES" 1 "$PORT" 1 60 "$@" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["success"]==d["probes"], d; print(d["cpu_per_probe_us"])'; }
minimal=() truth=()
for round in $(seq "$ROUNDS"); do
    minimal+=("$(run)")
    truth+=("$(run --probe-truth)")
    echo "round $round: minimal ${minimal[-1]} us, +IP_RECVERR+TCP_INFO ${truth[-1]} us per probe"
done
python3 - "${minimal[*]}" "${truth[*]}" <<'PY'
import statistics, sys
minimal = [float(x) for x in sys.argv[1].split()]
truth = [float(x) for x in sys.argv[2].split()]
m, t = statistics.median(minimal), statistics.median(truth)
print(f"median CPU per probe: minimal {m:.2f} us, with issue 12's calls {t:.2f} us: +{t - m:.2f} us, {t / m:.3f}x")
PY
