"""The production stack of platform/docker-compose.yml, brought up here as hospital IT would:
settings from platform/.env.example with the secrets filled in, its own compose project name,
ports, data folder and container labels, so it meets no other stack on this engine."""

from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
PLATFORM = REPO / "platform"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_file_from_example(overrides: dict[str, str]) -> str:
    """.env.example with its values replaced, as an operator fills it in."""
    text = (PLATFORM / ".env.example").read_text()
    for key, value in overrides.items():
        text, found = re.subn(rf"^#?\s*{key}=.*$", f"{key}={value}", text, flags=re.M)
        if not found:
            text += f"\n{key}={value}\n"
    return text


class ComposeStack:
    SHARED = ("export-volumes", "serve", "disclosure")

    def __init__(self, workdir: Path):
        self.project = f"m2dops{os.getpid()}"
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.dataset_dir = REPO / "dataset"
        self.env_path = workdir / "compose.env"
        self.cert = workdir / "cert.pem"
        self.portal_port, self.mlflow_port, self.http_port = _free_port(), _free_port(), _free_port()
        self.url = f"https://localhost:{self.portal_port}"
        self.mlflow_url = f"https://localhost:{self.mlflow_port}"
        self.metrics_token = secrets.token_hex(16)
        self.instance = self.project
        self.env = {
            "M2D_PUBLIC_HOST": "localhost",
            "M2D_BIND_ADDRESS": "127.0.0.1",
            "M2D_HTTPS_PORT": str(self.portal_port),
            "M2D_MLFLOW_HTTPS_PORT": str(self.mlflow_port),
            "M2D_HTTP_PORT": str(self.http_port),
            "M2D_DATA_DIR": str(self.data_dir),
            "M2D_DATASET_DIR": str(self.dataset_dir),
            "M2D_ENV_FILE": str(self.env_path),
            "M2D_HOST_NAME": "test-host",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "M2D_DB_PASSWORD": secrets.token_hex(16),
            "MLFLOW_DB_PASSWORD": secrets.token_hex(16),
            "REDIS_PASSWORD": secrets.token_hex(16),
            "MLFLOW_ADMIN_PASSWORD": secrets.token_hex(16),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
            "M2D_METRICS_TOKEN": self.metrics_token,
            "DJANGO_ALLOWED_HOSTS": "localhost",
            "DJANGO_CSRF_TRUSTED_ORIGINS": self.url,
            "M2D_PORTAL_URL": self.url,
            "MLFLOW_PUBLIC_URL": self.mlflow_url,
            "EMAIL_URL": "",  # mail goes to files under the data folder
            "M2D_INSTANCE": self.instance,
            "TZ": "UTC",
            # the images this test run built already (scripts/images.sh); nothing is pulled
            "M2D_BASE_IMAGE": os.environ.get("M2D_BASE_IMAGE", "python:3.11-slim-bookworm"),
            "M2D_RUNTIME_IMAGE": os.environ.get("M2D_RUNTIME_IMAGE", "m2d-runtime:latest"),
            "M2D_FORWARDER_IMAGE": os.environ.get("M2D_FORWARDER_IMAGE", "m2d-forwarder:latest"),
            "M2D_MLFLOW_IMAGE": os.environ.get("M2D_MLFLOW_IMAGE", "m2d-mlflow:latest"),
            "M2D_DISCLOSURE_IMAGE": os.environ.get("M2D_DISCLOSURE_IMAGE", "m2d-disclosure:latest"),
            # sized for a 2-core test machine
            "WEB_CONCURRENCY": "2",
            "MLFLOW_WORKERS": "1",
            "M2D_RUN_MEMORY": "2g",
            "M2D_RUN_CPUS": "1",
            "M2D_RUN_SHM": "256m",
            "M2D_RUN_TMP": "256m",
            "M2D_EXPORT_MAX_BYTES": str(64 * 1024**2),
            "M2D_READY_MIN_FREE_BYTES": str(64 * 1024**2),
        }

    # --- commands ------------------------------------------------------------------------------

    def compose(self, *args: str, timeout: float = 600, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        command = [
            "docker-compose",
            "-p",
            self.project,
            "-f",
            str(PLATFORM / "docker-compose.yml"),
            "--env-file",
            str(self.env_path),
            *args,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=self.process_env())
        if check and result.returncode != 0:
            output = result.stdout[-3000:] + result.stderr[-3000:]
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{output}")
        return result

    def process_env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0"}

    def script(self, name: str, *args: str, timeout: float = 600) -> str:
        env = {**self.process_env(), "COMPOSE_PROJECT_NAME": self.project, "M2D_ENV_FILE": str(self.env_path)}
        result = subprocess.run([str(PLATFORM / name), *args], capture_output=True, text=True, timeout=timeout, env=env)
        assert result.returncode == 0, f"{name} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        return result.stdout

    def manage(self, *args: str) -> str:
        return self.compose("exec", "-T", "web", "python", "manage.py", *args).stdout

    # --- life cycle ----------------------------------------------------------------------------

    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env_path.write_text(env_file_from_example(self.env))
        self.env_path.chmod(0o600)
        # Each run's capped export file system and each disclosure job's output folder, mounted by
        # the run worker, and each serving worker's socket folder, mounted by the ops worker, must
        # propagate to the host; this machine's / is a private mount, so these folders are made
        # shared ones.
        for name in self.SHARED:
            folder = self.data_dir / name
            folder.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
            subprocess.run(["mount", "--make-shared", str(folder)], check=True)

    def build(self) -> float:
        """Build the platform's own images; the runtime, forwarder, MLflow and disclosure images exist
        already and are left as they are (the test run built them)."""
        started = time.monotonic()
        self.compose("build", "postgres", "redis", "proxy", "migrate", timeout=1800)
        return time.monotonic() - started

    def up(self) -> float:
        started = time.monotonic()
        self.compose("up", "-d", timeout=900)
        self.wait_ready()
        return time.monotonic() - started

    def wait_ready(self, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        body: dict = {}
        while time.monotonic() < deadline:
            try:
                self.fetch_certificate()
                response = requests.get(
                    f"{self.url}/readyz",
                    headers={"Authorization": f"Bearer {self.metrics_token}"},  # what fails, too
                    verify=str(self.cert),
                    timeout=20,
                )
                body = response.json()
                if response.status_code == 200:
                    return body
            except (requests.RequestException, AssertionError, ValueError):
                pass
            time.sleep(3)
        raise AssertionError(f"/readyz did not turn 200 within {timeout} s: {body}\n{self.logs()}")

    def fetch_certificate(self) -> None:
        """The proxy's certificate (self-signed at its first start) is what clients trust."""
        pem = self.compose("exec", "-T", "proxy", "cat", "/etc/m2d/tls/cert.pem").stdout
        assert "BEGIN CERTIFICATE" in pem
        self.cert.write_text(pem)

    def logs(self, *services: str, tail: int = 60) -> str:
        result = self.compose("logs", "--no-color", "--tail", str(tail), *services, check=False)
        return result.stdout[-20000:]

    def down(self) -> None:
        (self.workdir / "compose.log").write_text(self.logs(tail=300))
        self.compose("down", "-v", "--remove-orphans", check=False, timeout=300)
        leftovers = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=org.m2d.instance={self.instance}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        if leftovers:
            subprocess.run(["docker", "rm", "-f", *leftovers], capture_output=True)
        for name in self.SHARED:
            subprocess.run(["umount", "-l", str(self.data_dir / name)], capture_output=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)


@functools.cache
def compose_available() -> str:
    """Why the production stack cannot be brought up here, or '' when it can."""
    if shutil.which("docker-compose") is None:
        return "docker-compose is not installed"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no Docker engine answers"
    return ""
