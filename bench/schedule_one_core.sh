#!/usr/bin/env bash
# Benchmark: the largest schedule one core sustains with the raw-SYN engine
# (issue 22): by default 1,000,000 targets every 60 s on loopback (16,667
# probes/s), half on an open port, half on a closed one, with `tcp: {engine:
# raw}`. It is bench/scheduler_100k.sh in its one-core mode (GOALS=one-core):
# the goals are the full rate (>= 98%), p99 schedule lag < 50 ms and the
# exporter under one core over the steady window; resident memory, the full
# /metrics scrape time (one per format: ~3 GB each at 1,000,000 targets) and
# CPU per probe beside bench/halfopen_ref.c and bench/raw_ref.c are reported.
# To find the largest, raise TARGETS (or lower INTERVAL) until a goal fails.
#
# Usage: bash bench/schedule_one_core.sh
#   env TARGETS=1000000 INTERVAL=60 WINDOW=60 SCRAPES=1 ENGINES=raw, and every
#   other variable of bench/scheduler_100k.sh (REF_RUNS, EXPORTER_ARGS, PERF,
#   KEEP_DIR, ...). Needs root (raw sockets) and about 2 GiB of memory.
# Exit status: 0 every goal met, 1 a goal missed, 2 setup or measurement error.

set -Eeuo pipefail
export TARGETS=${TARGETS:-1000000} INTERVAL=${INTERVAL:-60} WINDOW=${WINDOW:-60}
export SCRAPES=${SCRAPES:-1} ENGINES=${ENGINES:-raw} GOALS=one-core
exec bash "$(dirname "${BASH_SOURCE[0]}")/scheduler_100k.sh"
