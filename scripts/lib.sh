# Shared helpers for the set-up scripts. Sourced, not run.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR_DIR="${M2D_VAR_DIR:-$REPO_ROOT/var}"
mkdir -p "$VAR_DIR/log" "$VAR_DIR/run"

# The portal refuses to start without DJANGO_SECRET_KEY (unless DJANGO_DEBUG): the local stacks
# (demo, up, test, bench) and every process they start share one, made at the first start and
# kept in var/ for its owner only. One given in the environment or the top .env file wins.
local_secret_key() {
    local file="$VAR_DIR/secret-key" tmp
    if [ ! -s "$file" ]; then
        tmp=$(mktemp "$VAR_DIR/.secret-key.XXXXXX")
        python3 -c 'import secrets; print(secrets.token_urlsafe(50))' > "$tmp"
        mv -n "$tmp" "$file"  # a stack starting beside this one may have made it first
        rm -f "$tmp"
    fi
    cat "$file"
}
if [ -z "${DJANGO_SECRET_KEY:-}" ] && ! grep -qs '^DJANGO_SECRET_KEY=.' "$REPO_ROOT/.env"; then
    DJANGO_SECRET_KEY=$(local_secret_key)
    export DJANGO_SECRET_KEY
fi

log() { printf '\033[1m[m2d]\033[0m %s %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[m2d] error: %s\n' "$*" >&2; exit 1; }

# A TCP port on the loopback that nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Install Debian packages that are missing; a no-op when all are there.
apt_ensure() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}

# The first Debian mirror this machine's apt is configured with (never hard-coded).
debian_mirror() {
    local uri
    uri=$( { cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } \
        | grep -E '^(URIs:|deb )' | grep -v -- '-security' | head -n1 | awk '{ if ($1 == "URIs:") print $2; else for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }')
    [ -n "$uri" ] || die "no Debian mirror found in /etc/apt/sources.list*"
    echo "$uri"
}
