#!/usr/bin/env bash
# The whole test suite on real components: it installs what is missing, starts its own Docker
# engine (when none runs), Redis and MLflow (on ports apart from the demo stack's), runs pytest,
# and stops what it started.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

# Each run is its own stack (name, ports, containers, files), so runs side by side never meet.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export M2D_STACK="${M2D_TEST_STACK:-test$$}"
export M2D_REDIS_PORT="${M2D_TEST_REDIS_PORT:-$(free_port)}"
export M2D_MLFLOW_PORT="${M2D_TEST_MLFLOW_PORT:-$(free_port)}"
export M2D_INSTANCE="m2d$M2D_STACK"
export M2D_VAR_DIR_TEST="$VAR_DIR/$M2D_STACK"

engine=$("$REPO_ROOT/scripts/docker-engine.sh")
"$REPO_ROOT/scripts/stack.sh" setup
source "$VAR_DIR/images.env"
export M2D_BASE_IMAGE M2D_RUNTIME_IMAGE M2D_FORWARDER_IMAGE M2D_MLFLOW_IMAGE

cleanup() {
    "$REPO_ROOT/scripts/services.sh" wipe
    docker ps -aq --filter "label=org.m2d.instance=$M2D_INSTANCE" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker images -q --filter "label=org.m2d.instance=$M2D_INSTANCE" | xargs -r docker rmi -f >/dev/null 2>&1 || true
    [ "${status:-1}" = 0 ] && rm -rf "$M2D_VAR_DIR_TEST"
    if [ "$engine" = started ] && [ -f "$VAR_DIR/run/dockerd.pid" ]; then
        as_root kill "$(cat "$VAR_DIR/run/dockerd.pid")" 2>/dev/null || true
    fi
}
trap cleanup EXIT
"$REPO_ROOT/scripts/services.sh" wipe
"$REPO_ROOT/scripts/services.sh" start

export REDIS_URL="redis://127.0.0.1:$M2D_REDIS_PORT/0"
export MLFLOW_URL="http://127.0.0.1:$M2D_MLFLOW_PORT"
export M2D_VAR_DIR="$M2D_VAR_DIR_TEST"
rm -rf "$M2D_VAR_DIR" && mkdir -p "$M2D_VAR_DIR"
export M2D_TEST_DATABASE_NAME="$M2D_VAR_DIR/test.sqlite3"

set +e
"$REPO_ROOT/.venv/bin/python" -m pytest "$@"
status=$?
set -e
[ $status = 5 ] && { echo "no tests were collected: that is a failure" >&2; status=1; }
exit $status
