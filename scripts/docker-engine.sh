#!/usr/bin/env bash
# Make sure a Docker engine answers on /var/run/docker.sock: install Debian's docker.io and start
# dockerd when none does. Prints "started" when this script started the engine (so callers know
# to stop it), "running" otherwise.
source "$(dirname "$0")/lib.sh"

# The researchers' local dry run (docker-compose*.yaml) needs Compose; Debian ships version 1.29.
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || apt_ensure docker-compose

if docker info >/dev/null 2>&1; then echo running; exit 0; fi
command -v dockerd >/dev/null || apt_ensure docker.io
command -v dockerd >/dev/null || die "dockerd is not installed and could not be installed"

log "starting dockerd (log: $VAR_DIR/log/dockerd.log)"
# live-restore: runs keep running while the engine restarts (an upgrade, a crash).
as_root setsid dockerd --host unix:///var/run/docker.sock --live-restore >"$VAR_DIR/log/dockerd.log" 2>&1 < /dev/null &
echo $! > "$VAR_DIR/run/dockerd.pid"
for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && { echo started; exit 0; }
    sleep 0.5
done
die "dockerd did not answer within 30 s; see $VAR_DIR/log/dockerd.log"
