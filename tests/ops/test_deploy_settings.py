"""platform/.env.example is the operator's list of settings: it names every setting the code
and the compose file read, and its production values pass Django's deployment checks."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.ops.compose_stack import PLATFORM, REPO, env_file_from_example

EXAMPLE = PLATFORM / ".env.example"


def example_keys() -> set[str]:
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", EXAMPLE.read_text(), flags=re.M))


def example_values() -> dict[str, str]:
    values = {}
    for line in EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key] = value
    return values


def test_every_setting_in_settings_py_is_in_env_example():
    source = (REPO / "m2d" / "settings.py").read_text()
    read = set(re.findall(r"\benv(?:\.[a-z_]+)?\(\s*\"([A-Z][A-Z0-9_]*)\"", source))
    assert len(read) > 40  # the pattern still finds the settings
    missing = sorted(read - example_keys())
    assert not missing, f"settings read in m2d/settings.py but not described in platform/.env.example: {missing}"


def test_every_variable_of_the_compose_files_is_in_env_example():
    used = set()
    for name in (
        "docker-compose.yml",
        "docker-compose.gpu.yml",
        "docker-compose.central.yml",
        "docker-compose.worker-host.yml",
    ):
        used |= set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", (PLATFORM / name).read_text()))
    missing = sorted(used - example_keys())
    assert not missing, f"variables of platform/docker-compose*.yml not in platform/.env.example: {missing}"


def check_deploy(**overrides) -> subprocess.CompletedProcess:
    """`manage.py check --deploy` with the example's production values, as the web container has
    them (the URLs compose derives from the passwords included)."""
    env = {
        "PATH": os.environ["PATH"],
        **example_values(),
        "DATABASE_URL": "postgres://m2d:secret@postgres:5432/m2d",
        "REDIS_URL": "redis://:secret@redis:6379/0",
        "CACHE_URL": "rediscache://:secret@redis:6379/1",
        "MLFLOW_URL": "http://mlflow:3001",
        "DJANGO_SECRET_KEY": "k" + "x7Qp2vL9mZ4rT8wB1nC6yH3jF5sD0gK" * 2,
        **overrides,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_production_values():
    result = check_deploy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    "setting,value,issue",
    [
        ("DJANGO_DEBUG", "true", "security.W018"),
        ("DJANGO_SECURE_SSL_REDIRECT", "false", "security.W008"),
        ("DJANGO_SESSION_COOKIE_SECURE", "false", "security.W012"),
        ("DJANGO_SECURE_HSTS_SECONDS", "0", "security.W004"),
    ],
)
def test_check_deploy_catches_a_weakened_setting(setting, value, issue):
    result = check_deploy(**{setting: value})
    assert result.returncode != 0
    assert issue in result.stdout + result.stderr


def manage_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("env", [{}, {"DJANGO_SECRET_KEY": ""}, {"DJANGO_DEBUG": "false"}])
def test_the_portal_refuses_to_start_without_a_secret_key(env):
    """A public default key would let anyone forge sessions and download links."""
    result = manage_check(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set" in result.stderr
    assert "secrets.token_urlsafe(50)" in result.stderr  # how to make one


def test_the_example_settings_refuse_to_start_until_a_key_is_filled_in():
    result = check_deploy(DJANGO_SECRET_KEY=example_values()["DJANGO_SECRET_KEY"])
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_debugging_runs_without_a_secret_key():
    result = manage_check({"DJANGO_DEBUG": "true"})
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
@pytest.mark.parametrize(
    "files",
    [
        ["docker-compose.yml"],
        ["docker-compose.yml", "docker-compose.gpu.yml"],
        ["docker-compose.yml", "docker-compose.central.yml"],
        ["docker-compose.yml", "docker-compose.gpu.yml", "docker-compose.worker-host.yml"],
        ["docker-compose.yml", "docker-compose.gpu.yml", "docker-compose.serving-host.yml"],
    ],
)
def test_compose_files_are_valid_with_the_example_settings(tmp_path, files):
    env_file = tmp_path / "prod.env"
    settings = {
        "M2D_ENV_FILE": str(env_file),
        "M2D_INTERNAL_ADDRESS": "10.0.0.1",
        "M2D_HOST_ADDRESS": "10.0.0.3",
        "M2D_GPU_IDS": "0,1",
    }
    env_file.write_text(env_file_from_example(settings))
    command = ["docker-compose", "--env-file", str(env_file)]
    for name in files:
        command += ["-f", str(PLATFORM / name)]
    result = subprocess.run([*command, "config"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr  # no variable left unset
    if "docker-compose.gpu.yml" in files:
        assert "M2D_GPU_IDS: 0,1" in result.stdout
    if "docker-compose.worker-host.yml" in files:
        assert "MLFLOW_URL: http://10.0.0.1:3001" in result.stdout
    if "docker-compose.serving-host.yml" in files:
        # the serving agent listens to its own queue only, and the relay answers on the internal address
        assert "M2D_WORKER_QUEUE: serve.gpu-host-1" in result.stdout
        assert "M2D_SERVE_RELAY_URL: https://10.0.0.3:8790" in result.stdout
        assert "M2D_WEB_CERTFILE: /etc/m2d/relay-tls/relay.pem" in result.stdout
        assert "10.0.0.3:8790:8790" in result.stdout and "m2d.relay_wsgi" in result.stdout


def test_sqlite_durability_is_normal_or_full_and_nothing_weaker():
    result = manage_check({"DJANGO_DEBUG": "true", "M2D_SQLITE_SYNCHRONOUS": "off"})
    assert result.returncode != 0
    assert "M2D_SQLITE_SYNCHRONOUS is NORMAL or FULL" in result.stderr
