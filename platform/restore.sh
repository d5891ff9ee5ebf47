#!/usr/bin/env bash
# Restore a backup made by backup.sh onto this host, replacing what is there.
#   platform/restore.sh BACKUP_DIR
# Stops the portal, workers and MLflow, recreates the three databases from their dumps, puts the
# data folder's uploads, exports, logs, mail and model store back, then starts everything again (migrations
# run on the way up, so a backup from an older version is brought up to date).
# Environment: M2D_ENV_FILE (default platform/.env), COMPOSE_PROJECT_NAME (when not the default).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/compose-lib.sh"

backup="${1:?usage: restore.sh BACKUP_DIR}"
(cd "$backup" && sha256sum --check --quiet SHA256SUMS) || { echo "restore: $backup is incomplete or damaged" >&2; exit 1; }

compose stop web gateway build-worker run-worker ops-worker serve-batch-worker beat proxy mlflow >/dev/null 2>&1 || true
compose up -d postgres >/dev/null
for _ in $(seq 1 120); do
    compose exec -T -u postgres postgres pg_isready -q -h 127.0.0.1 -U postgres && break
    sleep 1
done

restore_db() {  # restore_db NAME OWNER
    compose exec -T -u postgres postgres psql -q -v ON_ERROR_STOP=1 --username=postgres --dbname=postgres \
        -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1 OWNER $2"
    compose exec -T -u postgres postgres pg_restore --username=postgres --dbname="$1" --no-owner --role="$2" \
        --exit-on-error < "$backup/$1.dump"
}
restore_db m2d m2d
restore_db mlflow mlflow
restore_db mlflow_auth mlflow

for folder in $DATA_FOLDERS; do rm -rf "${data_dir:?}/$folder"; done
tar -C "$data_dir" --extract --gzip --same-owner --preserve-permissions --file "$backup/files.tar.gz"

compose up -d
echo "restored $backup"
