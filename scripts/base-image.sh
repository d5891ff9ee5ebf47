#!/usr/bin/env bash
# Print the base image the platform builds on, building it offline when needed.
#
# M2D_BASE_IMAGE names it. When that image is not on this engine, nothing is pulled: a Debian
# bookworm root with python3 is made with debootstrap from this machine's apt mirror and imported
# as M2D_OFFLINE_BASE_IMAGE (cached: skipped when the image exists). The CA bundle in
# M2D_CA_BUNDLE (default: the host's) is baked in, so pip inside builds trusts the same
# TLS-intercepting proxies the host trusts.
source "$(dirname "$0")/lib.sh"

PUBLIC_BASE="${M2D_BASE_IMAGE:-python:3.11-slim-bookworm}"
OFFLINE_BASE="${M2D_OFFLINE_BASE_IMAGE:-m2d-base:bookworm}"
CA_BUNDLE="${M2D_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

if docker image inspect "$PUBLIC_BASE" >/dev/null 2>&1; then echo "$PUBLIC_BASE"; exit 0; fi
if docker image inspect "$OFFLINE_BASE" >/dev/null 2>&1; then echo "$OFFLINE_BASE"; exit 0; fi

command -v debootstrap >/dev/null || apt_ensure debootstrap
mirror=$(debian_mirror)
rootfs=$(mktemp -d "$VAR_DIR/rootfs.XXXXXX")
trap 'as_root rm -rf "$rootfs"' EXIT
log "building the base image $OFFLINE_BASE from Debian packages (about a minute)"
as_root debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$VAR_DIR/log/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $VAR_DIR/log/debootstrap.log"
[ -f "$CA_BUNDLE" ] && as_root cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
as_root tar -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' - "$OFFLINE_BASE" >/dev/null
log "base image $OFFLINE_BASE ready"
echo "$OFFLINE_BASE"
