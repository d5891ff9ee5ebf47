#!/usr/bin/env bash
# Build the platform's images: the runtime (base + common stack), the run forwarder, the MLflow
# server, the package index and the disclosure checks. Docker's layer cache makes a second call
# take seconds. Prints the env lines to export.
source "$(dirname "$0")/lib.sh"

BASE_IMAGE=$("$REPO_ROOT/scripts/base-image.sh")
RUNTIME_IMAGE="${M2D_RUNTIME_IMAGE:-m2d-runtime:latest}"
FORWARDER_IMAGE="${M2D_FORWARDER_IMAGE:-m2d-forwarder:latest}"
MLFLOW_IMAGE="${M2D_MLFLOW_IMAGE:-m2d-mlflow:latest}"
INDEX_IMAGE="${M2D_INDEX_IMAGE:-m2d-index:latest}"
DISCLOSURE_IMAGE="${M2D_DISCLOSURE_IMAGE:-m2d-disclosure:latest}"
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

# The disclosure image (SACRO-ML, ACRO) gets the torch wheel of M2D_WHEELHOUSE: SACRO-ML needs torch,
# and the index's would pull gigabytes of CUDA. Skipped when the image holds the same recipe.
disclosure_ctx=$(mktemp -d "$VAR_DIR/disclosure-ctx.XXXXXX")
trap 'rm -rf "$runtime_ctx" "$disclosure_ctx"' EXIT
cp -r "$REPO_ROOT/docker_scripts/disclosure/." "$disclosure_ctx/"
mkdir -p "$disclosure_ctx/wheelhouse"
if [ -n "${M2D_WHEELHOUSE:-}" ] && [ -d "$M2D_WHEELHOUSE" ]; then
    find "$M2D_WHEELHOUSE" -maxdepth 1 -name 'torch-2.13.0*.whl' -exec cp -l {} "$disclosure_ctx/wheelhouse/" \; 2>/dev/null \
        || find "$M2D_WHEELHOUSE" -maxdepth 1 -name 'torch-2.13.0*.whl' -exec cp {} "$disclosure_ctx/wheelhouse/" \;
fi
disclosure_recipe=$( { cd "$disclosure_ctx" && cat Dockerfile requirements.txt attack.py tables.py acro_results.py
    ls "$disclosure_ctx/wheelhouse"; docker image inspect -f '{{.Id}}' "$BASE_IMAGE"; } | sha256sum | cut -c1-16)
build_disclosure() {
    if ! ls "$disclosure_ctx"/wheelhouse/torch-2.13.0*.whl >/dev/null 2>&1; then
        log "no torch-2.13.0 wheel in M2D_WHEELHOUSE: the disclosure image is not built (assessments say so)"
        return 0
    fi
    [ "$(docker image inspect -f '{{ index .Config.Labels "org.m2d.recipe" }}' "$DISCLOSURE_IMAGE" 2>/dev/null)" \
        = "$disclosure_recipe" ] && return 0
    build "$DISCLOSURE_IMAGE" "$disclosure_ctx" --label "org.m2d.recipe=$disclosure_recipe"
}

log "building images (first time: a few minutes; then cached)"
build "$FORWARDER_IMAGE" "$REPO_ROOT/docker_scripts/forwarder" &
fwd=$!
build "$MLFLOW_IMAGE" "$REPO_ROOT/docker_scripts/mlflow" &
mlf=$!
build "$INDEX_IMAGE" "$REPO_ROOT/docker_scripts/index" &
idx=$!
build_disclosure &
dis=$!
build "$RUNTIME_IMAGE" "$runtime_ctx"
wait $fwd && wait $mlf && wait $idx && wait $dis || die "image build failed"

echo "export M2D_BASE_IMAGE=$BASE_IMAGE"
echo "export M2D_RUNTIME_IMAGE=$RUNTIME_IMAGE"
echo "export M2D_FORWARDER_IMAGE=$FORWARDER_IMAGE"
echo "export M2D_MLFLOW_IMAGE=$MLFLOW_IMAGE"
echo "export M2D_INDEX_IMAGE=$INDEX_IMAGE"
echo "export M2D_DISCLOSURE_IMAGE=$DISCLOSURE_IMAGE"
