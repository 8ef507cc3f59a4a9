#!/usr/bin/env bash
# Benchmark: a TLS probe, synack_exporter vs Debian's prometheus-blackbox-exporter,
# both reading the SAME blackbox.yml (one `prober: tcp` module with `tls: true`
# that verifies the target's certificate against a ca_file), both probing one
# loopback TLS server, loaded with wrk on /probe. Runs alternate (ours,
# blackbox, ours, ...) because the machine may be shared and noisy; the
# summary uses medians. A TLS probe costs what the handshake costs, so this
# quotes figures (CPU per probe, requests/s, latency) and sets no goals.
#
# Usage: bash bench/tls_vs_blackbox.sh [-r ROUNDS] [-c CONNECTIONS] [-t THREADS]
#                                      [-d DURATION] [-w WARMUP]
#   -r ROUNDS       rounds of (ours, blackbox)           default 3   (env ROUNDS)
#   -c CONNECTIONS  wrk -c                               default 32  (env CONNECTIONS)
#   -t THREADS      wrk -t                               default 2   (env THREADS)
#   -d DURATION     wrk -d of each measured run          default 10s (env DURATION)
#   -w WARMUP       wrk -d of the warm-up before each    default 2s  (env WARMUP)
#   env KEY_TYPE    the server's key: ec (P-256, default) or rsa (2048 bits)
#   env KEEP_DIR=1  keep the work directory (configs, logs, raw wrk output)
#
# The target is bench_helper.py's TLS server on 127.0.0.1 (Python's ssl,
# handshakes on 8 threads), which counts completed handshakes: every
# successful probe of either exporter is one, which the script checks. The
# "accepts" column counts those handshakes. Exit status: 0 when every run
# was measured, 2 on a setup or measurement error. Only 127.0.0.1 is used;
# every background process is stopped on exit.

set -Eeuo pipefail

ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
KEY_TYPE=${KEY_TYPE:-ec}
BLACKBOX=/usr/bin/prometheus-blackbox-exporter

while getopts "r:c:t:d:w:h" opt; do
    case $opt in
        r) ROUNDS=$OPTARG ;;
        c) CONNECTIONS=$OPTARG ;;
        t) THREADS=$OPTARG ;;
        d) DURATION=$OPTARG ;;
        w) WARMUP=$OPTARG ;;
        h) sed -n '2,25p' "$0"; exit 0 ;;
        *) exit 2 ;;
    esac
done

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
HELPER="$BENCH_DIR/bench_helper.py"

source "$BENCH_DIR/lib.sh"

[[ $ROUNDS =~ ^[1-9][0-9]*$ && $ROUNDS -le 20 ]] || die "ROUNDS must be 1..20"
case $KEY_TYPE in
    ec) KEY_ARGS=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
    rsa) KEY_ARGS=(-newkey rsa:2048) ;;
    *) die "KEY_TYPE must be ec or rsa, not $KEY_TYPE" ;;
esac
for tool in curl python3 cargo timeout wrk openssl; do
    command -v "$tool" >/dev/null ||
        die "$tool is required; as root run: apt-get install -y wrk openssl curl python3"
done
[[ -x $BLACKBOX ]] ||
    die "missing $BLACKBOX; as root run: apt-get install -y prometheus-blackbox-exporter"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tls_vs_blackbox.XXXXXX")

build_ours "$ROOT"

# ---------------------------------------------------------------- certificate
# Self-signed for the name "localhost", given to both exporters as their CA:
# each verifies the chain and the name, as a real tls_connect module does.
openssl req -x509 "${KEY_ARGS[@]}" -nodes -days 2 -subj "/O=Bench/CN=localhost" \
    -addext "subjectAltName=DNS:localhost" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>"$WORK/openssl.log" ||
    die "openssl req failed: $(cat "$WORK/openssl.log")"

# ---------------------------------------------------------------- ports
freeport() { python3 "$HELPER" freeport; }
TARGET_PORT=$(freeport)
OURS_PORT=$(freeport)
BB_PORT=$(freeport)
while [[ $OURS_PORT == "$TARGET_PORT" ]]; do OURS_PORT=$(freeport); done
while [[ $BB_PORT == "$TARGET_PORT" || $BB_PORT == "$OURS_PORT" ]]; do BB_PORT=$(freeport); done

echo "== target: TLS server ($KEY_TYPE key) on 127.0.0.1:$TARGET_PORT"
TARGET_TLS_CERT="$WORK/cert.pem" TARGET_TLS_KEY="$WORK/key.pem" \
    start_counting_target "$HELPER" "$TARGET_PORT"

# ---------------------------------------------------------------- exporters
cat >"$WORK/blackbox.yml" <<YAML
modules:
  tls_connect:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      tls: true
      tls_config:
        ca_file: $WORK/cert.pem
        server_name: localhost
YAML

echo "== ours: $OURS_BIN --config.file=$WORK/blackbox.yml --web.listen-address=127.0.0.1:$OURS_PORT"
"$OURS_BIN" --config.file="$WORK/blackbox.yml" --web.listen-address="127.0.0.1:$OURS_PORT" \
    --log.level=warn >"$WORK/ours.log" 2>&1 &
OURS_PID=$!
PIDS+=("$OURS_PID")
wait_http ours "$OURS_PID" "http://127.0.0.1:$OURS_PORT/-/healthy"

echo "== blackbox: $BLACKBOX --config.file=$WORK/blackbox.yml --web.listen-address=127.0.0.1:$BB_PORT"
"$BLACKBOX" --config.file="$WORK/blackbox.yml" --web.listen-address="127.0.0.1:$BB_PORT" \
    >"$WORK/blackbox.log" 2>&1 &
BB_PID=$!
PIDS+=("$BB_PID")
wait_http blackbox "$BB_PID" "http://127.0.0.1:$BB_PORT/-/healthy"

OURS_URL="http://127.0.0.1:$OURS_PORT/probe?target=127.0.0.1:$TARGET_PORT&module=tls_connect"
BB_URL="http://127.0.0.1:$BB_PORT/probe?target=127.0.0.1:$TARGET_PORT&module=tls_connect"

echo
echo "nproc: $(nproc)   kernel: $(uname -r)   cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "blackbox: $("$BLACKBOX" --version 2>&1 | head -n1)"
echo "openssl: $(openssl version)   key: $KEY_TYPE"
echo "the module (one file, read by both):"
sed 's/^/  | /' "$WORK/blackbox.yml"
echo "wrk commands:"
echo "  ours:     wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency '$OURS_URL'"
echo "  blackbox: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency '$BB_URL'"
echo "warm-up before each run: same command with -d$WARMUP; rounds: $ROUNDS"
echo

for round in $(seq "$ROUNDS"); do
    echo "=== round $round of $ROUNDS"
    run_measured ours "$round" "$OURS_URL" "$OURS_PID"
    sleep 1
    run_measured blackbox "$round" "$BB_URL" "$BB_PID"
    sleep 1
    python3 "$HELPER" report --round-only "$WORK/r$round-ours.json" "$WORK/r$round-blackbox.json"
    echo
done

echo "=== summary"
echo "columns: expCPU/tgtCPU/wrkCPU = CPU of exporter/target/wrk in % of one core during the run;"
echo "         CPUus/rq = exporter CPU microseconds per request; mach% = whole machine busy"
echo "         (max $(nproc)00%); steal% = CPU stolen by the hypervisor; accepts = TLS handshakes"
echo "         the target completed during the run (one per successful probe)"
records=()
for round in $(seq "$ROUNDS"); do
    records+=("$WORK/r$round-ours.json" "$WORK/r$round-blackbox.json")
done
python3 "$HELPER" report --no-goals "${records[@]}" || die "report failed"
