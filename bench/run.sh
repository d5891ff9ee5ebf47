#!/usr/bin/env bash
# `make bench`: bring up a stack of its own (M2D_STACK=bench, free ports, its own var/ folder),
# run the figures P1-P8 and P1b against it, print one table, and stop the stack again.
#   BENCH_QUICK=1            fewer repeats, 10 instead of 100 submissions, a 100 MB upload
#   BENCH_P6_N, BENCH_P4_SECONDS, BENCH_P4_ROUNDS, BENCH_P5_MB, BENCH_REPEATS, BENCH_SEED_REPEATS   sizes
#   BENCH_STACK=bench2       another stack name, folder and ports, beside a bench already running
#   BENCH_SKIP_SEED=1        leave out the seed-recipe builds (they download from the package index)
#   BENCH_ONLY=P4,P5         only these steps (P1/P2, P1b, P3/P6, P4, P5, P7, P8, costs)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$REPO_ROOT"
command -v wrk >/dev/null || apt_ensure wrk  # P4's load generator

# BENCH_STACK names the stack (default bench): two benches side by side need two names.
export M2D_STACK="${BENCH_STACK:-bench}"
export M2D_VAR_DIR="$VAR_DIR/$M2D_STACK"
export M2D_INSTANCE="m2d$M2D_STACK"
export M2D_REDIS_PORT="${M2D_REDIS_PORT:-$(free_port)}"
export M2D_MLFLOW_PORT="${M2D_MLFLOW_PORT:-$(free_port)}"
export M2D_WEB_ADDR="127.0.0.1:$(free_port)"
export M2D_PORTAL_URL="http://$M2D_WEB_ADDR"
export REDIS_URL="redis://127.0.0.1:$M2D_REDIS_PORT/0"
export MLFLOW_URL="http://127.0.0.1:$M2D_MLFLOW_PORT"
export M2D_INDEX_PORT="${M2D_INDEX_PORT:-$(free_port)}"
export M2D_PACKAGE_INDEX_URL="http://127.0.0.1:$M2D_INDEX_PORT/root/pypi/+simple/"
# P5 sends a 500 MB zip: the bench stack accepts it (the default limit is 100 MB).
export M2D_MAX_UPLOAD_BYTES=$((600 * 1024 * 1024))
# P6 queues 100 submissions of one researcher at once.
export M2D_MAX_QUEUED_PER_RESEARCHER=0
export M2D_CPU_SLOTS=1
# P8 measures the serving path, not the per-user quota of predictions.
export M2D_PREDICT_RATE=1000000/min

stop_stack() {
    scripts/stack.sh down >/dev/null 2>&1 || true
    scripts/services.sh wipe >/dev/null 2>&1 || true
    docker images -q --filter "label=org.m2d.instance=$M2D_INSTANCE" | xargs -r docker rmi -f >/dev/null 2>&1 || true
    rm -rf "$M2D_VAR_DIR/bench-work"  # the zips, the 500 MB one among them
}
trap stop_stack EXIT
rm -rf "$M2D_VAR_DIR" && mkdir -p "$M2D_VAR_DIR"
scripts/services.sh wipe >/dev/null 2>&1 || true
log "starting the bench stack (portal $M2D_PORTAL_URL)"
scripts/stack.sh up
# shellcheck disable=SC1091
source "$M2D_VAR_DIR/images.env"
export M2D_BASE_IMAGE M2D_RUNTIME_IMAGE M2D_FORWARDER_IMAGE M2D_MLFLOW_IMAGE M2D_INDEX_IMAGE
export M2D_STACK_PIDS="$M2D_VAR_DIR/run/$M2D_STACK.pids"
.venv/bin/python bench/bench.py "$@"
