#!/usr/bin/env bash
# A second Docker engine on this machine, standing in for a further run host: its own socket,
# data root, exec root, pidfile and bridge, and no iptables rules, so the engine on
# /var/run/docker.sock and its networks are never touched. (Not `--bridge none`: an engine
# started so deletes the interface docker0, which is the first engine's.) Runs and builds use no
# bridge in any case: their containers have no network but loopback. No registry: the platform's images
# are copied into it from the first engine (docker save | docker load).
#
#   scripts/second-engine.sh start NAME   start it (if needed) and load the images; prints its DOCKER_HOST
#   scripts/second-engine.sh stop NAME    stop it (its containers stop with it)
#   scripts/second-engine.sh wipe NAME    stop it and remove its disk
#
# NAME keeps engines of stacks side by side apart. Its containers die with it (no live restore):
# stopping it is what a host going down looks like to the runs on it. Its data root is a disk of
# its own, an ext4 file system of M2D_ENGINE_DISK_BYTES (default 8 GiB, sparse) loop-mounted at
# var/engines/NAME/data: it can be filled up like a real host's disk, and goes in one unlink.
source "$(dirname "$0")/lib.sh"

action=${1:?usage: second-engine.sh start|stop|wipe NAME}
name=${2:?usage: second-engine.sh start|stop|wipe NAME}
[[ "$name" =~ ^[a-zA-Z0-9_.-]+$ ]] || die "engine names are letters, digits, '.', '_' and '-': $name"
# Unix socket paths are limited to 108 bytes, and containerd nests its sockets under the exec root.
exec_root="/run/m2d-engine-$name"
socket="unix://$exec_root.sock"
pidfile="$exec_root.pid"
state="$VAR_DIR/engines/$name"
data_root="$state/data"
disk="$state/disk.img"
# Interface names are limited to 15 bytes.
bridge="m2db$(printf '%s' "$name" | md5sum | cut -c1-8)"
images=("${M2D_BASE_IMAGE:-m2d-base:bookworm}" "${M2D_RUNTIME_IMAGE:-m2d-runtime:latest}"
    "${M2D_FORWARDER_IMAGE:-m2d-forwarder:latest}")

engine_b() { docker -H "$socket" "$@"; }

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

mount_disk() {
    mkdir -p "$state" "$data_root"
    mountpoint -q "$data_root" && return 0
    if [ ! -f "$disk" ]; then
        truncate -s "${M2D_ENGINE_DISK_BYTES:-$((8 * 1024 ** 3))}" "$disk"
        mkfs.ext4 -q -F -O ^has_journal "$disk" || die "could not make the engine $name's disk"
    fi
    as_root mount -o loop "$disk" "$data_root" || die "could not mount the engine $name's disk"
}

start() {
    if ! running; then
        command -v ip >/dev/null || apt_ensure iproute2
        command -v mkfs.ext4 >/dev/null || apt_ensure e2fsprogs
        mount_disk
        # An empty configuration file: /etc/docker/daemon.json belongs to the first engine.
        echo '{}' > "$state/daemon.json"
        ip link show "$bridge" >/dev/null 2>&1 || as_root ip link add "$bridge" type bridge
        as_root setsid dockerd --host "$socket" --data-root "$data_root" --exec-root "$exec_root" \
            --pidfile "$pidfile" --config-file "$state/daemon.json" --bridge "$bridge" --iptables=false \
            --ip6tables=false --ip-masq=false --ip-forward=false --cgroup-parent "m2d-engine-$name" \
            >"$state/dockerd.log" 2>&1 </dev/null &
        for _ in $(seq 1 60); do
            engine_b info >/dev/null 2>&1 && break
            sleep 0.5
        done
        engine_b info >/dev/null 2>&1 || die "the engine $name did not answer within 30 s; see $state/dockerd.log"
    fi
    # Only what is missing or changed travels: layers the engine holds already are skipped by load.
    # (An image it holds stays as it is while the first engine does not answer: it may be restarting.)
    local wanted=() have
    for image in "${images[@]}"; do
        have=$(engine_b image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
        [ -n "$have" ] && [ "$have" = "$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || echo "$have")" ] \
            || wanted+=("$image")
    done
    if [ ${#wanted[@]} -gt 0 ]; then
        log "copying ${wanted[*]} into the engine $name"
        docker save "${wanted[@]}" | engine_b load -q >/dev/null || die "loading the images into the engine $name failed"
    fi
    echo "$socket"
}

stop() {
    local pid
    if running; then
        pid=$(cat "$pidfile")
        as_root kill "$pid"
        for _ in $(seq 1 120); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        ! kill -0 "$pid" 2>/dev/null || as_root kill -9 "$pid"
    fi
    # Mounts the engine leaves under its roots when it is stopped hard, then its disk.
    awk -v a="$exec_root/" -v b="$data_root/" 'index($2, a) == 1 || index($2, b) == 1 { print $2 }' /proc/mounts \
        | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    ! mountpoint -q "$data_root" || as_root umount -l "$data_root"
    rm -f "$pidfile"
    ! ip link show "$bridge" >/dev/null 2>&1 || as_root ip link delete "$bridge"
}

case "$action" in
    start) start ;;
    stop) stop ;;
    wipe) stop; rm -rf "$state" "$exec_root" ;;
    *) die "usage: second-engine.sh start|stop|wipe NAME" ;;
esac
