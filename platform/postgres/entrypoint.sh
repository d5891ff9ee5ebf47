#!/bin/sh
# First start: make the cluster and the platform's roles and databases from the environment.
#   POSTGRES_PASSWORD   the superuser's (postgres) password
#   M2D_DB_PASSWORD     role m2d, owner of database m2d (the portal and workers)
#   MLFLOW_DB_PASSWORD  role mlflow, owner of databases mlflow (runs) and mlflow_auth (users)
# Later starts only start the server; changing these variables then changes nothing (see
# docs/operations.md, "Rotate secrets").
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /run/postgresql
    chown postgres:postgres "$PGDATA" "$(dirname "$PGDATA")" /run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups sh "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${M2D_DB_PASSWORD:?set M2D_DB_PASSWORD}"
    : "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD}"
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" --username=postgres --pwfile="$pwfile" --encoding=UTF8 --locale=C \
        --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    {
        echo "listen_addresses = '*'"
        echo "password_encryption = scram-sha-256"
        echo "log_min_duration_statement = ${POSTGRES_LOG_SLOW_MS:-2000}"
    } >> "$PGDATA/postgresql.conf"
    {
        echo "host all all 0.0.0.0/0 scram-sha-256"
        echo "host all all ::/0 scram-sha-256"
    } >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    psql -v ON_ERROR_STOP=1 --username=postgres --dbname=postgres -q \
        -v m2d_pw="$M2D_DB_PASSWORD" -v mlflow_pw="$MLFLOW_DB_PASSWORD" <<'SQL'
CREATE ROLE m2d LOGIN PASSWORD :'m2d_pw';
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_pw';
CREATE DATABASE m2d OWNER m2d;
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
SQL
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "m2d-postgres: cluster created with databases m2d, mlflow, mlflow_auth"
fi

exec postgres -D "$PGDATA"
