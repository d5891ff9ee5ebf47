#!/usr/bin/env bash
# A throwaway PostgreSQL server for one stack, from Debian's packages, on a free loopback port.
#   scripts/postgres.sh start NAME   prints the DATABASE_URL
#   scripts/postgres.sh stop NAME
source "$(dirname "$0")/lib.sh"

name=${2:?usage: $0 start|stop NAME}
data="$VAR_DIR/postgres-$name"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)

case "$1" in
    start)
        [ -n "$bin" ] || { apt_ensure postgresql; bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1); }
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        rm -rf "$data" && mkdir -p "$data" && chown postgres: "$data"
        # PostgreSQL refuses to run as root: run it as the postgres user of Debian's package.
        runuser -u postgres -- "$bin/initdb" -D "$data/db" -U m2d --auth=trust >"$VAR_DIR/log/postgres-$name.log" 2>&1 \
            || die "initdb failed; see $VAR_DIR/log/postgres-$name.log"
        runuser -u postgres -- "$bin/pg_ctl" -D "$data/db" -w -l "$data/server.log" \
            -o "-h 127.0.0.1 -p $port -k $data -c fsync=off -c max_connections=200" start >/dev/null \
            || die "PostgreSQL did not start; see $data/server.log"
        echo "postgres://m2d@127.0.0.1:$port/m2d"
        ;;
    stop)
        [ -d "$data/db" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$data/db" -m fast stop >/dev/null 2>&1 || true
        rm -rf "$data"
        ;;
    *) die "usage: $0 start|stop NAME" ;;
esac
