#!/usr/bin/env bash
# Create .venv with requirements.txt, or bring it up to date when requirements.txt changed.
source "$(dirname "$0")/lib.sh"
VENV="$REPO_ROOT/.venv"
STAMP="$VENV/.requirements.sha256"
want=$(sha256sum "$REPO_ROOT/requirements.txt" | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then exit 0; fi
command -v python3 >/dev/null || die "python3 is missing"
python3 -m venv --help >/dev/null 2>&1 || apt_ensure python3-venv
log "installing the platform's Python packages into .venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r "$REPO_ROOT/requirements.txt" 2> >(grep -v "is ignored: it is neither" >&2)
"$VENV/bin/pip" install -q -e "$REPO_ROOT" --no-deps 2>/dev/null || true
echo "$want" > "$STAMP"
