#!/bin/sh
# Write the auth app's ini from the environment, then start the server.
set -eu
: "${MLFLOW_AUTH_ADMIN_USERNAME:?set MLFLOW_AUTH_ADMIN_USERNAME}"
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD (12 characters or more)}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY}"
BACKEND_STORE_URI="${MLFLOW_BACKEND_STORE_URI:-sqlite:////data/mlflow.db}"
AUTH_DATABASE_URI="${MLFLOW_AUTH_DATABASE_URI:-sqlite:////data/basic_auth.db}"
PORT="${MLFLOW_PORT:-3001}"
# Host names the server answers to: the run's name for it, loopback, and the public name.
export MLFLOW_SERVER_ALLOWED_HOSTS="${MLFLOW_SERVER_ALLOWED_HOSTS:-mlflow-server:$PORT,localhost:$PORT,127.0.0.1:$PORT,localhost:*,127.0.0.1:*}"

INI=/tmp/basic_auth.ini
cat > "$INI" <<INI
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = $AUTH_DATABASE_URI
admin_username = $MLFLOW_AUTH_ADMIN_USERNAME
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL:-30}
INI
export MLFLOW_AUTH_CONFIG_PATH="$INI"

exec mlflow server --app-name basic-auth --host 0.0.0.0 --port "$PORT" \
    --backend-store-uri "$BACKEND_STORE_URI" \
    --default-artifact-root /tmp/mlflow-artifacts-refused --no-serve-artifacts \
    --workers "${MLFLOW_WORKERS:-1}"
