#!/usr/bin/env bash
# Back up everything a restore needs: the portal's database, MLflow's two databases (runs and
# users), and the host data folder's uploads, exports, run logs, mail and model store.
#   platform/backup.sh [DEST]          (default /var/backups/m2d)
# Writes DEST/<UTC time>/ and prints its path. Runs while the platform is up: each database dump
# is consistent in itself; files written during the backup (a run finishing) may be missing.
# Environment: M2D_ENV_FILE (default platform/.env), COMPOSE_PROJECT_NAME (when not the default).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/compose-lib.sh"

dest="${1:-/var/backups/m2d}/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$dest"
chmod 700 "$dest"
for db in m2d mlflow mlflow_auth; do
    compose exec -T -u postgres postgres pg_dump --username=postgres --format=custom "$db" > "$dest/$db.dump"
done
tar -C "$data_dir" --create --gzip --file "$dest/files.tar.gz" --ignore-failed-read $DATA_FOLDERS
(cd "$dest" && sha256sum ./*.dump files.tar.gz > SHA256SUMS)
echo "$dest"
