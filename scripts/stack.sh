#!/usr/bin/env bash
# The whole platform on one machine.
#   scripts/stack.sh demo   set up, start, submit the toy sample, register and deploy the CLaM
#                           sample's model, stay in the foreground (Ctrl-C stops)
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
export M2D_PACKAGE_INDEX_URL="${M2D_PACKAGE_INDEX_URL:-http://127.0.0.1:${M2D_INDEX_PORT:-3141}/root/pypi/+simple/}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:${M2D_REDIS_PORT:-6379}/0}"
# Several web processes: allauth's rate limits count in one shared cache.
export CACHE_URL="${CACHE_URL:-rediscache://127.0.0.1:${M2D_REDIS_PORT:-6379}/1}"
# The portal is behind a local nginx (see up): sign-in limits count the address nginx was called from.
export M2D_TRUSTED_PROXIES="${M2D_TRUSTED_PROXIES:-1}"
PIDS="$VAR_DIR/run/$M2D_STACK.pids"

setup() {
    command -v nginx >/dev/null || apt_ensure nginx  # the portal's front (see up)
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
    # The portal as production serves it: nginx in front (it holds slow and idle connections and
    # buffers uploads), gunicorn behind it with platform/app/gunicorn.conf.py, static files from
    # what collectstatic gathered above. Pages cost CPU, not waiting: one single-threaded worker
    # per core and one more to serve while another waits on MLflow. Single-threaded, because a
    # threaded worker takes in connections faster than it serves them while the others idle: with
    # 20 clients on two cores its p95 latency was half as much again as sync workers' (bench P4).
    local app_port
    app_port=$(free_port)
    start_bg web env M2D_WEB_BIND="127.0.0.1:$app_port" WEB_CONCURRENCY="${WEB_CONCURRENCY:-$(( $(nproc) + 1 ))}" \
        M2D_WEB_THREADS="${M2D_WEB_THREADS:-1}" "$REPO_ROOT/.venv/bin/gunicorn" \
        --config platform/app/gunicorn.conf.py m2d.wsgi
    # The inference gateway (/predictions, /v2) in processes of its own, with many threads: a
    # prediction mostly waits on its model (up to M2D_SERVE_RESPONSE_TIMEOUT), and a slow model
    # must never hold the portal's few workers: with 6 predictions of an 8 s model in flight, the
    # sign-in page took 14.4 s when the portal's 3 workers served them too, 0.6 s at most with the
    # gateway apart (tests/integration/serving/test_gateway_process.py).
    local gateway_port
    gateway_port=$(free_port)
    start_bg gateway env M2D_WEB_BIND="127.0.0.1:$gateway_port" WEB_CONCURRENCY="${M2D_GATEWAY_WORKERS:-2}" \
        M2D_WEB_THREADS="${M2D_GATEWAY_THREADS:-16}" "$REPO_ROOT/.venv/bin/gunicorn" \
        --config platform/app/gunicorn.conf.py m2d.wsgi
    proxy_config "$app_port" "$gateway_port" > "$VAR_DIR/run/$M2D_STACK-nginx.conf"
    start_bg proxy nginx -c "$VAR_DIR/run/$M2D_STACK-nginx.conf" -e "$VAR_DIR/log/$M2D_STACK-nginx-error.log"
    start_bg build-worker "$PY" -m celery -A m2d worker -Q build -c 1 -n "build-$M2D_STACK@%h" \
        --without-gossip --without-mingle -l INFO
    # One run-worker process per slot: per GPU of M2D_GPU_IDS, else M2D_CPU_SLOTS.
    slots=$("$PY" -c 'import os; g=[x for x in os.environ.get("M2D_GPU_IDS","").split(",") if x.strip()]; print(len(g) or int(os.environ.get("M2D_CPU_SLOTS","1")))')
    start_bg run-worker "$PY" -m celery -A m2d worker -Q run -c "$slots" -n "run-$M2D_STACK@%h" \
        --without-gossip --without-mingle -l INFO
    start_bg ops-worker "$PY" -m celery -A m2d worker -Q default -c 1 -n "ops-$M2D_STACK@%h" \
        --without-gossip --without-mingle -l INFO
    # Batch jobs: one case at a time, so a batch never takes every serving worker from /predictions.
    start_bg serve-batch-worker "$PY" -m celery -A m2d worker -Q "${M2D_QUEUE_SERVE_BATCH:-serve-batch}" -c 1 \
        -n "serve-batch-$M2D_STACK@%h" --without-gossip --without-mingle -l INFO
    start_bg beat "$PY" -m celery -A m2d beat -l INFO -s "$VAR_DIR/run/$M2D_STACK-beat-schedule"
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$M2D_PORTAL_URL/accounts/login/" 2>/dev/null && break
        sleep 0.2
    done
    curl -fsS -o /dev/null "$M2D_PORTAL_URL/accounts/login/" || die "the portal did not start; see $VAR_DIR/log/$M2D_STACK-web.log"
    for _ in $(seq 1 100); do  # 401 without a token: the gateway answers
        [ "$(curl -sS -o /dev/null -w '%{http_code}' "$M2D_PORTAL_URL/v2" 2>/dev/null)" = 401 ] && return 0
        sleep 0.2
    done
    die "the inference gateway did not start; see $VAR_DIR/log/$M2D_STACK-gateway.log"
}

# The local twin of platform/proxy/nginx.conf.template: plain HTTP on the portal's address.
proxy_config() {  # proxy_config PORTAL_PORT GATEWAY_PORT
    local app_port=$1 gateway_port=$2 max_body=$(( ${M2D_MAX_UPLOAD_BYTES:-104857600} / 1048576 + 10 ))
    mkdir -p "$VAR_DIR/nginx"
    cat <<CONF
daemon off;
worker_processes 1;
pid $VAR_DIR/run/$M2D_STACK-nginx.pid;
error_log $VAR_DIR/log/$M2D_STACK-nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;  # gunicorn logs every request
    server_tokens off;
    client_body_temp_path $VAR_DIR/nginx/body;
    proxy_temp_path $VAR_DIR/nginx/proxy;
    fastcgi_temp_path $VAR_DIR/nginx/fastcgi;
    uwsgi_temp_path $VAR_DIR/nginx/uwsgi;
    scgi_temp_path $VAR_DIR/nginx/scgi;
    server {
        listen $WEB_ADDR;
        client_max_body_size ${max_body}m;
        location / {
            proxy_pass http://127.0.0.1:$app_port;
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_read_timeout 180s;
            proxy_request_buffering on;
        }
        # predictions go to the gateway's own processes
        location ~ ^/(predictions|v2)(/|\$) {
            proxy_pass http://127.0.0.1:$gateway_port;
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_read_timeout 180s;
            proxy_request_buffering on;
        }
    }
}
CONF
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
    # Runs and serving workers of this stack that outlived their worker.
    docker ps -aq --filter "label=org.m2d.instance=${M2D_INSTANCE:-m2d}" | xargs -r docker rm -f >/dev/null
    # The serving workers' socket folders are small tmpfs mounts of their own.
    local serve_dir="${M2D_SERVE_DIR:-$VAR_DIR/serve}"
    awk -v dir="${serve_dir%/}/" 'index($2, dir) == 1 { print $2 }' /proc/mounts | while read -r mount; do
        as_root umount -l "$mount" 2>/dev/null || true
    done
}

demo_users_and_sample() {
    local zip="$VAR_DIR/toy-dataset.zip"
    (cd sample_code/toy-dataset && rm -f "$zip" && "$PY" -m zipfile -c "$zip" main.py requirements.txt)
    "$PY" manage.py demo_setup --sample "$zip"
}

# The CLaM sample trained, released by the demo admin, registered by the demo researcher and given
# a worker, so that the model store has a model that answers on the demo's first start; prints how
# to ask it (m2d predict, curl) with a case of the synthetic data set.
demo_model() {
    local zip="$VAR_DIR/clam-dataset.zip"
    (cd sample_code/clam-dataset && rm -f "$zip" && "$PY" -m zipfile -c "$zip" main.py predict.py requirements.txt)
    log "training the CLaM sample for the model store and deploying it (a minute or two)"
    "$PY" manage.py demo_model --sample "$zip" \
        || log "the demo model is not registered or not deployed; see the CLaM submission's page, then: $PY manage.py demo_model --sample $zip"
}

case "${1:-}" in
    setup) setup ;;
    up) up; log "stack '$M2D_STACK' is up: portal $M2D_PORTAL_URL, MLflow $MLFLOW_URL" ;;
    down) down; log "stack '$M2D_STACK' stopped" ;;
    proxy-config) proxy_config "$2" "$3" ;;  # what up gives nginx, for tests
    demo)
        started=$(date +%s)
        # Stop everything even when the terminal or the pipe we print to is already gone.
        trap 'trap "" PIPE; { echo; log "stopping"; } 2>/dev/null || true; down; exit 0' INT TERM HUP
        up
        demo_users_and_sample
        demo_model
        log "ready in $(( $(date +%s) - started )) s. Logs: $VAR_DIR/log/. Ctrl-C stops everything."
        while true; do sleep 3600 & wait $!; done
        ;;
    *) die "usage: $0 demo|up|down|setup|proxy-config PORTAL_PORT GATEWAY_PORT" ;;
esac
