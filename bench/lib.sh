# Shared by the benchmark scripts: stop every background process they
# started (listed in PIDS) and remove their work directory (WORK) on exit,
# also on error or Ctrl-C. Source it after setting nothing else.
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
