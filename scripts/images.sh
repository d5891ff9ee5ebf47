#!/usr/bin/env bash
# Build the platform's images: the runtime (base + common stack), the run forwarder and the MLflow
# server. Docker's layer cache makes a second call take seconds. Prints the env lines to export.
source "$(dirname "$0")/lib.sh"

BASE_IMAGE=$("$REPO_ROOT/scripts/base-image.sh")
RUNTIME_IMAGE="${M2D_RUNTIME_IMAGE:-m2d-runtime:latest}"
FORWARDER_IMAGE="${M2D_FORWARDER_IMAGE:-m2d-forwarder:latest}"
MLFLOW_IMAGE="${M2D_MLFLOW_IMAGE:-m2d-mlflow:latest}"
INDEX_IMAGE="${M2D_INDEX_IMAGE:-m2d-index:latest}"
export DOCKER_BUILDKIT=0

build() {  # build TAG CONTEXT [docker build args...]
    local tag=$1 context=$2; shift 2
    local logfile="$VAR_DIR/log/build-${tag//[:\/]/_}.log"
    docker build -q --label org.m2d.role=platform -t "$tag" --build-arg "BASE_IMAGE=$BASE_IMAGE" "$@" "$context" \
        >"$logfile" 2>&1 || die "building $tag failed; see $logfile"
}

# The runtime image gets the wheels of M2D_WHEELHOUSE (air-gapped sites, or a local torch build).
runtime_ctx=$(mktemp -d "$VAR_DIR/runtime-ctx.XXXXXX")
trap 'rm -rf "$runtime_ctx"' EXIT
cp -r "$REPO_ROOT/docker_scripts/runtime/." "$runtime_ctx/"
if [ -n "${M2D_WHEELHOUSE:-}" ] && [ -d "$M2D_WHEELHOUSE" ]; then
    find "$M2D_WHEELHOUSE" -maxdepth 1 -name '*.whl' -exec cp -l {} "$runtime_ctx/wheelhouse/" \; 2>/dev/null \
        || find "$M2D_WHEELHOUSE" -maxdepth 1 -name '*.whl' -exec cp {} "$runtime_ctx/wheelhouse/" \;
fi

log "building images (first time: a few minutes; then cached)"
build "$FORWARDER_IMAGE" "$REPO_ROOT/docker_scripts/forwarder" &
fwd=$!
build "$MLFLOW_IMAGE" "$REPO_ROOT/docker_scripts/mlflow" &
mlf=$!
build "$INDEX_IMAGE" "$REPO_ROOT/docker_scripts/index" &
idx=$!
build "$RUNTIME_IMAGE" "$runtime_ctx"
wait $fwd && wait $mlf && wait $idx || die "image build failed"

echo "export M2D_BASE_IMAGE=$BASE_IMAGE"
echo "export M2D_RUNTIME_IMAGE=$RUNTIME_IMAGE"
echo "export M2D_FORWARDER_IMAGE=$FORWARDER_IMAGE"
echo "export M2D_MLFLOW_IMAGE=$MLFLOW_IMAGE"
echo "export M2D_INDEX_IMAGE=$INDEX_IMAGE"
