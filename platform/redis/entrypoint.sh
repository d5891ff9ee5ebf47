#!/bin/sh
# The password comes from the environment (REDIS_PASSWORD), never from the command line that
# `ps` shows: it is written to a config file only this user can read.
set -eu
: "${REDIS_PASSWORD:?set REDIS_PASSWORD}"
umask 077
conf=/tmp/redis.conf
cat > "$conf" <<CONF
bind * -::*
protected-mode no
port 6379
dir /data
appendonly yes
save ""
requirepass $REDIS_PASSWORD
maxmemory-policy noeviction
CONF
exec redis-server "$conf"
