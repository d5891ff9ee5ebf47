"""/healthz and /readyz on the real Redis, MLflow and Docker engine of the test run: a dependency
that is down turns /readyz into a 503 that names it to staff and to the metrics token's holder,
and tells everybody else only that the portal is not ready."""

import base64
import socket

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from ops import health
from tests.conftest import free_port

pytestmark = [pytest.mark.services, pytest.mark.django_db]

TOKEN = "readyz-test-token-3f9a"
WITH_TOKEN = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


@pytest.fixture
def all_checks(settings, tmp_path):
    settings.M2D_READY_CHECKS = ["database", "redis", "docker", "mlflow", "storage"]
    settings.M2D_READY_STORAGE_PATHS = [str(tmp_path)]
    settings.M2D_READY_MIN_FREE_BYTES = 1
    settings.M2D_METRICS_TOKEN = TOKEN
    return settings


def test_healthz_answers_without_touching_dependencies(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/healthz", HTTP_HOST="any-name.internal")
    assert response.status_code == 200
    assert response.content == b"ok\n"


def test_readyz_is_200_when_everything_answers(client, all_checks):
    response = client.get("/readyz", HTTP_HOST="any-name.internal", **WITH_TOKEN)
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["checks"]) == {"database", "redis", "docker", "mlflow", "storage"}
    assert body["checks"]["database"]["ok"]


@pytest.mark.parametrize(
    "name,breaks",
    [
        ("redis", lambda s, m, p: setattr(s, "REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")),
        ("mlflow", lambda s, m, p: setattr(s, "MLFLOW_URL", f"http://127.0.0.1:{free_port()}")),
        ("docker", lambda s, m, p: m.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")),
        ("storage", lambda s, m, p: setattr(s, "M2D_READY_STORAGE_PATHS", [str(p / "missing")])),
    ],
)
def test_readyz_names_the_dependency_that_is_down(client, all_checks, monkeypatch, tmp_path, name, breaks):
    breaks(all_checks, monkeypatch, tmp_path)
    response = client.get("/readyz", **WITH_TOKEN)
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["failing"] == [name]
    assert body["checks"][name]["ok"] is False
    assert body["checks"][name]["detail"]
    others = {n for n, c in body["checks"].items() if c["ok"]}
    assert others == {"database", "redis", "docker", "mlflow", "storage"} - {name}


def test_storage_check_refuses_a_full_disk(client, all_checks):
    all_checks.M2D_READY_MIN_FREE_BYTES = 1 << 62
    body = client.get("/readyz", **WITH_TOKEN).json()
    assert body["failing"] == ["storage"]
    assert "GiB free" in body["checks"]["storage"]["detail"]


def test_portal_without_socket_relies_on_worker_reports(client, all_checks, monkeypatch):
    """The web container has no Docker socket: it trusts what the workers' health checks wrote."""
    all_checks.M2D_INSTANCE = f"readyz-{socket.gethostname()}-{free_port()}"
    all_checks.M2D_READY_CHECKS = ["docker"]

    # A worker's health check, which does reach the engine, reports it.
    call_command("readyz", checks="docker")

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    body = client.get("/readyz", **WITH_TOKEN).json()
    assert body["status"] == "ok", body
    assert socket.gethostname() in body["checks"]["docker"]["detail"]

    health.redis_client().delete(*health.redis_client().keys(f"m2d:{all_checks.M2D_INSTANCE}:engine:*"))
    response = client.get("/readyz", **WITH_TOKEN)
    assert response.status_code == 503
    assert "no worker has reported" in response.json()["checks"]["docker"]["detail"]


def break_mlflow(settings):
    settings.MLFLOW_URL = f"http://127.0.0.1:{free_port()}"


def assert_status_only(response, status: int, word: str):
    assert response.status_code == status
    assert response.json() == {"status": word}
    assert b"127.0.0.1" not in response.content and b"detail" not in response.content


def test_anonymous_callers_learn_only_whether_the_portal_is_ready(client, all_checks):
    assert_status_only(client.get("/readyz"), 200, "ok")
    break_mlflow(all_checks)
    assert_status_only(client.get("/readyz"), 503, "unavailable")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong-token", "Basic " + base64.b64encode(b"prometheus:wrong-token").decode(), "Bearer "],
)
def test_a_wrong_token_counts_as_anonymous(client, all_checks, authorization):
    break_mlflow(all_checks)
    assert_status_only(client.get("/readyz", HTTP_AUTHORIZATION=authorization), 503, "unavailable")


def test_no_token_is_set_so_nobody_gets_details_by_token(client, all_checks):
    all_checks.M2D_METRICS_TOKEN = ""
    break_mlflow(all_checks)
    assert_status_only(client.get("/readyz", HTTP_AUTHORIZATION="Bearer "), 503, "unavailable")


@pytest.mark.parametrize("scheme", ["bearer", "basic"])
def test_the_metrics_token_shows_what_fails(client, all_checks, scheme):
    break_mlflow(all_checks)
    header = f"Bearer {TOKEN}" if scheme == "bearer" else "Basic " + base64.b64encode(f"p:{TOKEN}".encode()).decode()
    body = client.get("/readyz", HTTP_AUTHORIZATION=header).json()
    assert body["failing"] == ["mlflow"]
    assert "ConnectionError" in body["checks"]["mlflow"]["detail"]


@pytest.mark.parametrize("staff", [True, False])
def test_signed_in_staff_see_what_fails(client, all_checks, staff):
    user = get_user_model().objects.create_user("someone", "someone@hospital.example", "Pass-42", is_staff=staff)
    client.force_login(user)
    break_mlflow(all_checks)
    response = client.get("/readyz")
    if staff:
        assert response.json()["failing"] == ["mlflow"]
    else:
        assert_status_only(response, 503, "unavailable")


def test_readyz_command_fails_with_the_failing_check(all_checks, capsys):
    all_checks.MLFLOW_URL = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(CommandError, match="not ready: mlflow"):
        call_command("readyz", checks="database,mlflow")
    out = capsys.readouterr().out
    assert "ok   database" in out and "FAIL mlflow" in out
