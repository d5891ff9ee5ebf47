# Shared by backup.sh and restore.sh: the compose command of this deployment and its data folder.
# Sourced, not run.
env_file="${M2D_ENV_FILE:-$here/.env}"
[ -f "$env_file" ] || { echo "no settings file at $env_file (set M2D_ENV_FILE)" >&2; exit 1; }

compose() {
    local project=()
    [ -n "${COMPOSE_PROJECT_NAME:-}" ] && project=(-p "$COMPOSE_PROJECT_NAME")
    docker-compose "${project[@]}" -f "$here/docker-compose.yml" --env-file "$env_file" "$@"
}

setting() { sed -n "s/^$1=//p" "$env_file" | tail -n 1; }
data_dir=$(setting M2D_DATA_DIR)
[ -n "$data_dir" ] && [ -d "$data_dir" ] || { echo "M2D_DATA_DIR ($data_dir) is not a folder" >&2; exit 1; }
# What lives in the data folder and is worth keeping (gateway sockets, export volumes, the
# serving workers' folders and the disclosure-risk jobs' folders are scratch space).
DATA_FOLDERS="media exports logs mail dataset-index models"
