#!/bin/sh
# The local dry run's entry point (docker-compose*.yaml); the platform never uses it.
#
# Your code runs as the owner of the folder mounted at /mnt/export (you, on your machine), so that
# it can write there and what it writes is yours afterwards, whoever cloned the repository. Both
# processes drop every capability before they start: the container is given only those needed to
# change user.
#
# MLflow is relayed to 127.0.0.1:<the port published on your machine>, so the links MLflow prints
# ("View run … at: http://localhost:3001/#/…") open in your browser.
set -eu
drop="--clear-groups --inh-caps=-all --bounding-set=-all"
# shellcheck disable=SC2086
setpriv --reuid=65534 --regid=65534 $drop -- \
    python3 /opt/m2d-dry-run/relay.py "${DRY_RUN_MLFLOW_PORT:-3001}" mlflow-server 3001
owner=$(stat -c %u /mnt/export)
group=$(stat -c %g /mnt/export)
# shellcheck disable=SC2086
exec setpriv --reuid="$owner" --regid="$group" $drop -- "$@"
