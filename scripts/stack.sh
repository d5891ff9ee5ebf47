#!/usr/bin/env bash
# The whole platform on one machine.
#   scripts/stack.sh demo   set up, start, submit the toy sample, stay in the foreground (Ctrl-C stops)
#   scripts/stack.sh up     set up and start in the background
#   scripts/stack.sh down   stop what up/demo started
#   scripts/stack.sh setup  only install and build what is missing
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

export M2D_STACK="${M2D_STACK:-demo}"
PY="$REPO_ROOT/.venv/bin/python"
WEB_ADDR="${M2D_WEB_ADDR:-127.0.0.1:8000}"
export M2D_PORTAL_URL="${M2D_PORTAL_URL:-http://$WEB_ADDR}"
export MLFLOW_URL="${MLFLOW_URL:-http://127.0.0.1:${M2D_MLFLOW_PORT:-3001}}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:${M2D_REDIS_PORT:-6379}/0}"
# Several web processes: allauth's rate limits and the metric charts are kept in one shared cache.
export CACHE_URL="${CACHE_URL:-rediscache://127.0.0.1:${M2D_REDIS_PORT:-6379}/1}"
PIDS="$VAR_DIR/run/$M2D_STACK.pids"

setup() {
    "$REPO_ROOT/scripts/setup-venv.sh"
    "$REPO_ROOT/scripts/docker-engine.sh" >/dev/null
    [ -f "$REPO_ROOT/dataset/clam-details-image.csv" ] \
        || { log "generating the synthetic CLaM sample"; "$PY" dataset/generate.py >/dev/null; }
    export M2D_WHEELHOUSE="${M2D_WHEELHOUSE:-$(pip_find_links)}"
    "$REPO_ROOT/scripts/images.sh" > "$VAR_DIR/images.env"
    # shellcheck disable=SC1091
    source "$VAR_DIR/images.env"
}

# The folder of wheels this machine's pip is configured with, if any (read, never assumed).
pip_find_links() {
    local links
    links=$(python3 -m pip config get global.find-links 2>/dev/null || true)
    [ -d "$links" ] && echo "$links" || true
}

start_bg() {  # start_bg NAME COMMAND...
    local name=$1; shift
    setsid "$@" >"$VAR_DIR/log/$M2D_STACK-$name.log" 2>&1 < /dev/null &
    echo "$! $name" >> "$PIDS"
}

up() {
    setup
    "$REPO_ROOT/scripts/services.sh" start
    "$PY" manage.py migrate --noinput >/dev/null
    "$PY" manage.py collectstatic --noinput >/dev/null
    down_processes
    : > "$PIDS"
    # The portal as production serves it: gunicorn with platform/app/gunicorn.conf.py, static files
    # by whitenoise from what collectstatic gathered above. Pages cost CPU, not waiting, so one
    # single-threaded worker per core, and one more to serve while another waits on MLflow or an
    # upload. Single-threaded (gunicorn's sync worker) because a threaded worker takes in
    # connections faster than it serves them while the others idle: with 20 clients on two cores
    # its p95 latency was about twice that of sync workers (bench P4: 90-120 ms against 52-56).
    start_bg web env M2D_WEB_BIND="$WEB_ADDR" WEB_CONCURRENCY="${WEB_CONCURRENCY:-$(( $(nproc) + 1 ))}" \
        M2D_WEB_THREADS="${M2D_WEB_THREADS:-1}" "$REPO_ROOT/.venv/bin/gunicorn" \
        --config platform/app/gunicorn.conf.py m2d.wsgi
    start_bg build-worker "$PY" -m celery -A m2d worker -Q build -c 1 -n "build-$M2D_STACK@%h" \
        --without-gossip --without-mingle -l INFO
    # One run-worker process per slot: per GPU of M2D_GPU_IDS, else M2D_CPU_SLOTS.
    slots=$("$PY" -c 'import os; g=[x for x in os.environ.get("M2D_GPU_IDS","").split(",") if x.strip()]; print(len(g) or int(os.environ.get("M2D_CPU_SLOTS","1")))')
    start_bg run-worker "$PY" -m celery -A m2d worker -Q run -c "$slots" -n "run-$M2D_STACK@%h" \
        --without-gossip --without-mingle -l INFO
    start_bg ops-worker "$PY" -m celery -A m2d worker -Q default -c 1 -n "ops-$M2D_STACK@%h" \
        --without-gossip --without-mingle -l INFO
    start_bg beat "$PY" -m celery -A m2d beat -l INFO -s "$VAR_DIR/run/$M2D_STACK-beat-schedule"
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$M2D_PORTAL_URL/accounts/login/" 2>/dev/null && break
        sleep 0.2
    done
    curl -fsS -o /dev/null "$M2D_PORTAL_URL/accounts/login/" || die "the portal did not start; see $VAR_DIR/log/$M2D_STACK-web.log"
}

down_processes() {
    [ -f "$PIDS" ] || return 0
    while read -r pid name; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done < "$PIDS"
    for _ in $(seq 1 50); do
        alive=0
        while read -r pid name; do kill -0 "$pid" 2>/dev/null && alive=1; done < "$PIDS"
        [ $alive = 0 ] && break
        sleep 0.2
    done
    while read -r pid name; do kill -KILL -- "-$pid" 2>/dev/null || true; done < "$PIDS"
    rm -f "$PIDS"
}

down() {
    down_processes
    "$REPO_ROOT/scripts/services.sh" stop
    # Runs of this stack that outlived their worker.
    docker ps -aq --filter "label=org.m2d.instance=${M2D_INSTANCE:-m2d}" | xargs -r docker rm -f >/dev/null
}

demo_users_and_sample() {
    local zip="$VAR_DIR/toy-dataset.zip"
    (cd sample_code/toy-dataset && rm -f "$zip" && "$PY" -m zipfile -c "$zip" main.py requirements.txt)
    "$PY" manage.py demo_setup --sample "$zip"
}

case "${1:-}" in
    setup) setup ;;
    up) up; log "stack '$M2D_STACK' is up: portal $M2D_PORTAL_URL, MLflow $MLFLOW_URL" ;;
    down) down; log "stack '$M2D_STACK' stopped" ;;
    demo)
        started=$(date +%s)
        # Stop everything even when the terminal or the pipe we print to is already gone.
        trap 'trap "" PIPE; { echo; log "stopping"; } 2>/dev/null || true; down; exit 0' INT TERM HUP
        up
        demo_users_and_sample
        log "ready in $(( $(date +%s) - started )) s. Logs: $VAR_DIR/log/. Ctrl-C stops everything."
        while true; do sleep 3600 & wait $!; done
        ;;
    *) die "usage: $0 demo|up|down|setup" ;;
esac
