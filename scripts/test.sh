#!/usr/bin/env bash
# The whole test suite on real components: it installs what is missing, starts its own Docker
# engine (when none runs), Redis and MLflow (on ports apart from the demo stack's), runs pytest,
# and stops what it started.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

# Which passes run: M2D_TEST_PASS=sqlite, pg or both. Without it: both for the whole suite; for
# the tests named, the SQLite pass (and the PostgreSQL one's own tests with M2D_TEST_POSTGRES=1),
# or the PostgreSQL pass alone where they name a two-host test file.
test_pass=${M2D_TEST_PASS:-}
if [ -z "$test_pass" ]; then
    if [ $# = 0 ] || [ "${M2D_TEST_POSTGRES:-0}" = 1 ]; then test_pass=both; else test_pass=sqlite; fi
    for arg in "$@"; do
        case "$arg" in *test_two_host*) test_pass=pg ;; esac
    done
fi
case "$test_pass" in sqlite | pg | both) ;; *) die "M2D_TEST_PASS is sqlite, pg or both, not '$test_pass'" ;; esac

# Each run is its own stack (name, ports, containers, files), so runs side by side never meet.
export M2D_STACK="${M2D_TEST_STACK:-test$$}"
export M2D_REDIS_PORT="${M2D_TEST_REDIS_PORT:-$(free_port)}"
export M2D_MLFLOW_PORT="${M2D_TEST_MLFLOW_PORT:-$(free_port)}"
export M2D_INDEX_PORT="${M2D_TEST_INDEX_PORT:-$(free_port)}"
# The suite knows its package index's root password: tests put packages of their own on it.
export M2D_INDEX_ROOT_PASSWORD="${M2D_INDEX_ROOT_PASSWORD:-m2d-test-index-root}"
export M2D_INSTANCE="m2d$M2D_STACK"
export M2D_VAR_DIR_TEST="$VAR_DIR/$M2D_STACK"

# What the suite drives besides the platform: Debian's chromium for the browser tests, PostgreSQL
# for the second pass, curl for the service checks.
apt_ensure chromium postgresql curl
engine=$("$REPO_ROOT/scripts/docker-engine.sh")
"$REPO_ROOT/scripts/stack.sh" setup
source "$VAR_DIR/images.env"
export M2D_BASE_IMAGE M2D_RUNTIME_IMAGE M2D_FORWARDER_IMAGE M2D_MLFLOW_IMAGE M2D_INDEX_IMAGE M2D_DISCLOSURE_IMAGE

cleanup() {
    M2D_VAR_DIR="$VAR_DIR" "$REPO_ROOT/scripts/services.sh" wipe
    # The second engine of the two-host tests, if one was left standing.
    "$REPO_ROOT/scripts/second-engine.sh" wipe "$M2D_STACK-b" >/dev/null 2>&1 || true
    docker ps -aq --filter "label=org.m2d.instance=$M2D_INSTANCE" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker images -q --filter "label=org.m2d.instance=$M2D_INSTANCE" | xargs -r docker rmi -f >/dev/null 2>&1 || true
    # Export volumes of runs cut short by the end of a test must not outlive the run.
    awk -v dir="$M2D_VAR_DIR_TEST/" 'index($2, dir) == 1 { print $2 }' /proc/mounts | xargs -r -n1 umount -l || true
    if [ "${status:-1}" = 0 ]; then rm -rf "$M2D_VAR_DIR_TEST" || true; fi
    if [ "$engine" = started ] && [ -f "$VAR_DIR/run/dockerd.pid" ]; then
        as_root kill "$(cat "$VAR_DIR/run/dockerd.pid")" 2>/dev/null || true
    fi
}
trap cleanup EXIT
"$REPO_ROOT/scripts/services.sh" wipe
"$REPO_ROOT/scripts/services.sh" start

export REDIS_URL="redis://127.0.0.1:$M2D_REDIS_PORT/0"
export MLFLOW_URL="http://127.0.0.1:$M2D_MLFLOW_PORT"
export M2D_PACKAGE_INDEX_URL="http://127.0.0.1:$M2D_INDEX_PORT/root/pypi/+simple/"
export M2D_VAR_DIR="$M2D_VAR_DIR_TEST"
rm -rf "$M2D_VAR_DIR" && mkdir -p "$M2D_VAR_DIR"
export M2D_TEST_DATABASE_NAME="$M2D_VAR_DIR/test.sqlite3"

run_pytest() {
    set +e
    "$REPO_ROOT/.venv/bin/python" -m pytest "$@"
    local code=$?
    set -e
    [ $code = 5 ] && { echo "no tests were collected: that is a failure" >&2; code=1; }
    return $code
}

# Hosts on separate machines share only a PostgreSQL database: the two-host tests run in the
# PostgreSQL pass alone (in a folder the SQLite pass takes, it leaves them out).
PG_ONLY=(--ignore-glob='tests/reliability/test_two_host*.py')
# The crash and restart tests kill and restart processes, the Docker engine and Redis; what they
# prove does not depend on the database, and production's is PostgreSQL: when both passes run the
# whole suite, they run in the PostgreSQL pass alone (named, they run where they are asked to).
# The scheduling tests, whose claims differ per database, run in both.
if [ "$test_pass" = both ] && [ $# = 0 ]; then
    PG_ONLY+=(--ignore=tests/reliability/test_crashes.py --ignore=tests/reliability/test_restarts.py
        --ignore=tests/reliability/test_serving_restarts.py)
fi

# The whole suite (or the tests named) on SQLite, the embedded default.
status=0
if [ "$test_pass" != pg ]; then
    log "SQLite pass: ${*:-the whole suite}"
    run_pytest "${PG_ONLY[@]}" "$@" || status=$?
fi

# Scheduling, reliability and the two-host tests on a real PostgreSQL (the production database);
# with M2D_TEST_PASS=pg, the tests named instead.
if [ "$test_pass" != sqlite ]; then
    pg_url=$("$REPO_ROOT/scripts/postgres.sh" start "$M2D_STACK")
    trap '"$REPO_ROOT/scripts/postgres.sh" stop "$M2D_STACK"; cleanup' EXIT
    if [ "$test_pass" = pg ] && [ $# != 0 ]; then
        pg_tests=("$@")
    else
        pg_tests=(-q tests/unit/test_transitions.py tests/unit/test_scheduling.py tests/reliability)
    fi
    # The SQLite pass's files (logs, exports, sockets) are named by submission ids the PostgreSQL
    # database gives out again: the second pass keeps its files apart.
    export M2D_VAR_DIR="$M2D_VAR_DIR_TEST/pg"
    mkdir -p "$M2D_VAR_DIR"
    log "PostgreSQL pass: ${pg_tests[*]}"
    DATABASE_URL="$pg_url" M2D_TEST_DATABASE_NAME=test_m2d run_pytest "${pg_tests[@]}" || status=$?
fi
log "$([ $status = 0 ] && echo passed || echo FAILED) in $((SECONDS / 60)) min $((SECONDS % 60)) s (the clean-up follows)"
exit $status
