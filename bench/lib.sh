# Shared by the benchmark scripts: stop every background process they
# started (listed in PIDS) and remove their work directory (WORK) on exit,
# also on error or Ctrl-C; `die`; and the accept-counting target. Source it
# before setting PIDS or WORK.

# die MESSAGE: a setup or measurement error, exit status 2.
die() {
    echo >&2
    echo "ERROR: $*" >&2
    exit 2
}

# parse_load_flags HELP_LAST_LINE "$@": the flags of the scripts that load
# /probe with wrk for a while: -r ROUNDS (1..20), -d DURATION (whole
# seconds up to 600s), -c CONNECTIONS, -h (prints the script's header, lines
# 2..HELP_LAST_LINE). Sets ROUNDS, DURATION and CONNECTIONS, whose defaults
# the caller sets first.
parse_load_flags() {
    local help_last_line=$1 opt OPTIND=1
    shift
    while getopts "r:d:c:h" opt; do
        case $opt in
            r) ROUNDS=$OPTARG ;;
            d) DURATION=$OPTARG ;;
            c) CONNECTIONS=$OPTARG ;;
            h) sed -n "2,${help_last_line}p" "$0"; exit 0 ;;
            *) exit 2 ;;
        esac
    done
    [[ $ROUNDS =~ ^[1-9][0-9]*$ && $ROUNDS -le 20 ]] || die "ROUNDS must be 1..20"
    [[ $DURATION =~ ^[1-9][0-9]*s$ && ${DURATION%s} -le 600 ]] ||
        die "DURATION must be whole seconds up to 600s, such as 60s"
    [[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive integer"
}

# start_counting_target HELPER PORT [NETNS [HOST]]: bench_helper.py's
# accept-and-close listener on HOST:PORT (default 127.0.0.1), inside the
# network namespace NETNS if given, which reports its accept count on
# SIGUSR1; sets TARGET_PID and waits until it listens.
start_counting_target() {
    local helper=$1 port=$2 netns=${3:-} host=${4:-127.0.0.1}
    local prefix=()
    [[ -z $netns ]] || prefix=(ip netns exec "$netns")
    "${prefix[@]}" python3 "$helper" target --port "$port" --host "$host" --backlog 4096 \
        --count-file "$WORK/target.count" --ready-file "$WORK/target.ready" \
        >"$WORK/target.log" 2>&1 &
    TARGET_PID=$!
    PIDS+=("$TARGET_PID")
    for _ in $(seq 100); do
        [[ -f $WORK/target.ready ]] && return 0
        kill -0 "$TARGET_PID" 2>/dev/null || die "target exited: $(cat "$WORK/target.log")"
        sleep 0.1
    done
    die "target did not start within 10 s"
}
PIDS=()
WORK=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    # A script's own last step, such as deleting a network namespace it
    # made, after its processes are gone.
    if declare -F cleanup_more >/dev/null; then
        cleanup_more || true
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $status -ge 2 || ${KEEP_DIR:-0} == 1 ]]; then
            echo "work directory kept for inspection: $WORK" >&2
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'echo "ERROR: command failed (line $LINENO): $BASH_COMMAND" >&2' ERR
