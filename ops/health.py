"""Readiness: can this process do its work? Each check answers within a few seconds and says
in plain words what is wrong.

The web container has no Docker socket (a portal must never hold the keys to the host), so where
the engine is not reachable from this process, the Docker check reads what the workers last
reported about their engines instead: workers write that report each time their own health check
runs (`manage.py readyz`).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis
import requests
from django.conf import settings
from django.db import connection

CHECK_TIMEOUT_S = 3.0


@dataclass
class Result:
    name: str
    ok: bool
    detail: str = ""
    ms: float = 0.0

    def as_dict(self) -> dict:
        return {"ok": self.ok, "detail": self.detail, "ms": round(self.ms, 1)}


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=2)


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def check_redis() -> str:
    redis_client().ping()
    return "ping answered"


def check_mlflow() -> str:
    response = requests.get(f"{settings.MLFLOW_URL}/health", timeout=CHECK_TIMEOUT_S)
    if response.status_code != 200:
        raise RuntimeError(f"{settings.MLFLOW_URL}/health answered {response.status_code}")
    return "health answered"


def check_storage() -> str:
    """The folders this process writes are there, writable and not full."""
    problems, seen = [], []
    for path in settings.M2D_READY_STORAGE_PATHS:
        path = Path(path)
        if not path.is_dir():
            problems.append(f"{path} is missing")
        elif not os.access(path, os.W_OK | os.X_OK):
            problems.append(f"{path} is not writable")
        elif (free := shutil.disk_usage(path).free) < settings.M2D_READY_MIN_FREE_BYTES:
            problems.append(f"{path} has only {free / 1024**3:.1f} GiB free")
        else:
            seen.append(str(path))
    if problems:
        raise RuntimeError("; ".join(problems))
    return ", ".join(seen) or "no local folders to check"


# --- Docker engine -------------------------------------------------------------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def engine_url() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def engine_reachable_here() -> bool:
    url = urlsplit(engine_url())
    return url.scheme != "unix" or Path(url.path).exists()


def ping_engine() -> str:
    """The engine's own /_ping, spoken directly: this needs no Docker client library."""
    url = urlsplit(engine_url())
    if url.scheme == "unix":
        conn: http.client.HTTPConnection = _UnixHTTPConnection(url.path, CHECK_TIMEOUT_S)
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port or 2375, timeout=CHECK_TIMEOUT_S)
    try:
        conn.request("GET", "/_ping")
        response = conn.getresponse()
        body = response.read(64).decode(errors="replace")
    finally:
        conn.close()
    if response.status != 200 or body != "OK":
        raise RuntimeError(f"the engine at {engine_url()} answered {response.status} {body!r}")
    return f"engine at {engine_url()} answered"


def _report_key(host: str = "") -> str:
    return f"m2d:{settings.M2D_INSTANCE}:engine:{host}"


def report_engine(ok: bool, detail: str) -> None:
    """Tell processes without a socket (the portal) what this worker's engine said."""
    payload = json.dumps({"ok": ok, "detail": detail, "at": time.time()})
    redis_client().set(_report_key(socket.gethostname()), payload, ex=settings.M2D_ENGINE_REPORT_TTL)


def engine_reports() -> dict[str, dict]:
    client = redis_client()
    keys = sorted(client.scan_iter(match=_report_key("*"), count=100))
    reports = {}
    for key, value in zip(keys, client.mget(keys) if keys else [], strict=True):
        if value:
            reports[key.decode().rsplit(":", 1)[-1]] = json.loads(value)
    return reports


def check_docker() -> str:
    if engine_reachable_here():
        return ping_engine()
    reports = engine_reports()
    if not reports:
        raise RuntimeError(
            f"no worker has reported on its Docker engine in the last {settings.M2D_ENGINE_REPORT_TTL} s "
            "(are the build and run workers up?)"
        )
    failing = {host: r["detail"] for host, r in reports.items() if not r["ok"]}
    if failing:
        raise RuntimeError("; ".join(f"{host}: {detail}" for host, detail in sorted(failing.items())))
    return "workers report their engines up: " + ", ".join(sorted(reports))


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "redis": check_redis,
    "docker": check_docker,
    "mlflow": check_mlflow,
    "storage": check_storage,
}


def _timed(name: str, fn: Callable[[], str]) -> Result:
    started = time.monotonic()
    try:
        detail = fn()
        return Result(name, True, detail, (time.monotonic() - started) * 1000)
    except Exception as exc:
        return Result(name, False, f"{type(exc).__name__}: {exc}", (time.monotonic() - started) * 1000)


def run_checks(names: list[str] | None = None) -> list[Result]:
    names = list(names if names is not None else settings.M2D_READY_CHECKS)
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown readiness checks: {', '.join(unknown)} (known: {', '.join(CHECKS)})")
    results: dict[str, Result] = {}
    # Network checks run side by side so one hanging dependency costs its timeout once; the
    # database check stays on this thread, which owns the Django connection.
    others = [n for n in names if n != "database"]
    with ThreadPoolExecutor(max_workers=max(1, len(others))) as pool:
        futures = {name: pool.submit(_timed, name, CHECKS[name]) for name in others}
        if "database" in names:
            results["database"] = _timed("database", check_database)
        for name, future in futures.items():
            try:
                results[name] = future.result(timeout=CHECK_TIMEOUT_S + 2)
            except FutureTimeout:
                results[name] = Result(name, False, f"no answer within {CHECK_TIMEOUT_S + 2:.0f} s")
    return [results[name] for name in names]
