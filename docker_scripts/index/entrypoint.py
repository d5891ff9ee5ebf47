"""Start the package index: initialise its server folder once, then serve.

Settings (environment):
  M2D_INDEX_ROOT_PASSWORD  devpi's root password (generated and kept in the data folder when unset):
                           without it nobody may create users or indexes, or repoint the mirror
  M2D_INDEX_UPSTREAM_URL   the upstream simple index to mirror (a hospital's own mirror); unset:
                           devpi's default upstream
  M2D_INDEX_OFFLINE        "1": serve only what is cached, never go out
"""

import base64
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DATA = Path(os.environ.get("M2D_INDEX_DATA", "/data"))
SERVER_DIR = DATA / "server"
PORT = os.environ.get("M2D_INDEX_PORT", "3141")
BIN = Path(sys.executable).parent


def root_password() -> str:
    given = os.environ.get("M2D_INDEX_ROOT_PASSWORD", "")
    if given:
        return given
    kept = DATA / ".m2d-root-password"
    if not kept.exists():
        kept.write_text(secrets.token_urlsafe(24))
        kept.chmod(0o600)
    return kept.read_text().strip()


def api(method: str, path: str, body=None, token: str = "") -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORT}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    )
    if token:
        request.add_header("X-Devpi-Auth", token)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def point_mirror_upstream(password: str, upstream: str) -> None:
    login = api("POST", "/+login", {"user": "root", "password": password})
    token = base64.b64encode(f"root:{login['result']['password']}".encode()).decode()
    api("PATCH", "/root/pypi", [f"mirror_url={upstream}"], token=token)
    print(f"index: root/pypi mirrors {upstream}", flush=True)


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    password = root_password()
    if not (SERVER_DIR / ".serverversion").exists():
        subprocess.run([str(BIN / "devpi-init"), "--serverdir", str(SERVER_DIR), "--root-passwd", password], check=True)
    command = [
        str(BIN / "devpi-server"),
        "--serverdir", str(SERVER_DIR),
        "--host", "0.0.0.0",
        "--port", PORT,
        "--restrict-modify", "root",
    ]  # fmt: skip
    if os.environ.get("M2D_INDEX_OFFLINE") == "1":
        command.append("--offline-mode")
    server = subprocess.Popen(command)
    upstream = os.environ.get("M2D_INDEX_UPSTREAM_URL", "").strip()
    for _ in range(240):
        try:
            api("GET", "/+api")
            if upstream:
                point_mirror_upstream(password, upstream)
            break
        except OSError:
            time.sleep(0.5)
    warm_up()
    sys.exit(server.wait())


def warm_up() -> None:
    """Load the mirror's list of projects (and the build backends nearly every source package
    needs) before builds ask: asked for the first time by several requests at once, a cold mirror
    answered some of them with no versions at all."""
    for name in ("setuptools", "wheel"):
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{PORT}/root/pypi/+simple/{name}/",
                headers={"Accept": "application/vnd.pypi.simple.v1+json"},
            )
            with urllib.request.urlopen(request, timeout=300) as response:
                files = len(json.loads(response.read()).get("files", []))
            print(f"index: {name}: {files} files", flush=True)
        except (OSError, ValueError) as exc:  # offline, or upstream down: builds get what is cached
            print(f"index: could not load {name} ({exc})", flush=True)


if __name__ == "__main__":
    main()
