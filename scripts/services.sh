#!/usr/bin/env bash
# Start or stop the backing services of one stack: Redis, the MLflow server container and the
# package index container (the builds' one way out).
#   scripts/services.sh start|stop
# Settings (environment): M2D_STACK (a name; separates the test stack from the demo one),
# M2D_REDIS_PORT, M2D_MLFLOW_PORT, M2D_INDEX_PORT, MLFLOW_ADMIN_USERNAME, MLFLOW_ADMIN_PASSWORD,
# M2D_MLFLOW_IMAGE, M2D_INDEX_IMAGE, M2D_INDEX_ROOT_PASSWORD, M2D_INDEX_UPSTREAM_URL (default: the
# index this machine's pip is configured with, if any).
source "$(dirname "$0")/lib.sh"

STACK="${M2D_STACK:-demo}"
REDIS_PORT="${M2D_REDIS_PORT:-6379}"
MLFLOW_PORT="${M2D_MLFLOW_PORT:-3001}"
MLFLOW_IMAGE="${M2D_MLFLOW_IMAGE:-m2d-mlflow:latest}"
MLFLOW_CONTAINER="m2d-$STACK-mlflow"
INDEX_PORT="${M2D_INDEX_PORT:-3141}"
INDEX_IMAGE="${M2D_INDEX_IMAGE:-m2d-index:latest}"
INDEX_CONTAINER="m2d-$STACK-index"
RUN_DIR="$VAR_DIR/run"

start_redis() {
    command -v redis-server >/dev/null || apt_ensure redis-server
    if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then return 0; fi
    mkdir -p "$VAR_DIR/redis-$STACK"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save "" --appendonly yes \
        --dir "$VAR_DIR/redis-$STACK" --pidfile "$RUN_DIR/redis-$STACK.pid" \
        --logfile "$VAR_DIR/log/redis-$STACK.log" >/dev/null
    for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "Redis did not start on port $REDIS_PORT"
}

start_mlflow() {
    if ! docker container inspect "$MLFLOW_CONTAINER" >/dev/null 2>&1; then
        docker run -d --name "$MLFLOW_CONTAINER" --label org.m2d.role=platform --restart unless-stopped \
            -p "127.0.0.1:$MLFLOW_PORT:3001" \
            -v "m2d-$STACK-mlflow-data:/data" \
            -e MLFLOW_AUTH_ADMIN_USERNAME="${MLFLOW_ADMIN_USERNAME:-m2d-admin}" \
            -e MLFLOW_AUTH_ADMIN_PASSWORD="${MLFLOW_ADMIN_PASSWORD:-m2d-local-mlflow-admin-pw}" \
            -e MLFLOW_FLASK_SERVER_SECRET_KEY="${MLFLOW_FLASK_SERVER_SECRET_KEY:-m2d-$STACK-mlflow-secret}" \
            "$MLFLOW_IMAGE" >/dev/null
    else
        docker start "$MLFLOW_CONTAINER" >/dev/null
    fi
    # Its first start makes its database and admin user: over a minute on two busy cores.
    for _ in $(seq 1 360); do
        curl -fsS "http://127.0.0.1:$MLFLOW_PORT/health" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    docker logs --tail 30 "$MLFLOW_CONTAINER" >&2 || true
    die "MLflow did not answer on 127.0.0.1:$MLFLOW_PORT within 180 s"
}

# The upstream the index mirrors: what this machine's pip is configured with (read, never assumed);
# none configured leaves the index's own default.
pip_index_url() {
    local url
    url=${PIP_INDEX_URL:-$(python3 -m pip config get global.index-url 2>/dev/null || true)}
    case "$url" in http://*|https://*) echo "$url" ;; esac
}

start_index() {
    if ! docker container inspect "$INDEX_CONTAINER" >/dev/null 2>&1; then
        docker run -d --name "$INDEX_CONTAINER" --label org.m2d.role=platform --restart unless-stopped \
            -p "127.0.0.1:$INDEX_PORT:3141" \
            -v "m2d-$STACK-index-data:/data" \
            -e M2D_INDEX_ROOT_PASSWORD="${M2D_INDEX_ROOT_PASSWORD:-}" \
            -e M2D_INDEX_UPSTREAM_URL="${M2D_INDEX_UPSTREAM_URL:-$(pip_index_url)}" \
            "$INDEX_IMAGE" >/dev/null
    else
        docker start "$INDEX_CONTAINER" >/dev/null
    fi
}

wait_index() {  # answering, and its mirror's project list loaded (see its warm-up)
    for _ in $(seq 1 240); do
        docker logs "$INDEX_CONTAINER" 2>&1 | grep -q "index: \(setuptools\|could not load\)" && return 0
        sleep 0.5
    done
    docker logs --tail 30 "$INDEX_CONTAINER" >&2 || true
    die "the package index did not start on 127.0.0.1:$INDEX_PORT within 120 s"
}

case "${1:-}" in
    start)
        start_redis
        start_index  # it starts while MLflow does
        start_mlflow
        wait_index
        ;;
    stop)
        redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        docker rm -f "$MLFLOW_CONTAINER" "$INDEX_CONTAINER" >/dev/null 2>&1 || true
        ;;
    wipe)  # stop and forget the stack's data: MLflow's and the package index's cache
        "$0" stop
        docker volume rm -f "m2d-$STACK-mlflow-data" "m2d-$STACK-index-data" >/dev/null 2>&1 || true
        rm -rf "$VAR_DIR/redis-$STACK"
        ;;
    *) die "usage: $0 start|stop|wipe" ;;
esac
