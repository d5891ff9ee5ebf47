"""/metrics: refused without the token, and figures that match what the database records."""

import base64
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from ops import outbox
from ops.models import MailFailure
from submissions.models import Submission, SubmissionEvent
from tests.conftest import free_port

pytestmark = pytest.mark.django_db
S = Submission.Status
TOKEN = "scrape-token-for-tests-0123456789"


@pytest.fixture
def token(settings):
    settings.M2D_METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_are_off_without_a_token(client, settings):
    settings.M2D_METRICS_TOKEN = ""
    response = client.get("/metrics")
    assert response.status_code == 403
    assert b"M2D_METRICS_TOKEN" in response.content


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", "Basic " + base64.b64encode(b"prometheus:wrong").decode(), "Basic !!notbase64"],
)
def test_metrics_refuse_a_missing_or_wrong_token(client, token, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"m2d_submissions" not in response.content


def test_metrics_accept_bearer_and_basic_auth(client, token):
    basic = "Basic " + base64.b64encode(f"prometheus:{TOKEN}".encode()).decode()
    for header in (f"Bearer {TOKEN}", basic):
        response = client.get("/metrics", HTTP_AUTHORIZATION=header, HTTP_HOST="scraper.internal")
        assert response.status_code == 200
        assert b"# TYPE m2d_submissions gauge" in response.content


def _submission(owner, path: list[tuple[str, float]], **fields) -> Submission:
    """A submission that went through `path`: (state, seconds after the start) pairs."""
    status = path[-1][0]
    submission = Submission.objects.create(
        owner=owner, status=status, archive="submissions/x.zip", archive_sha256="0" * 64, **fields
    )
    start = timezone.now() - timedelta(hours=1)
    previous = ""
    for state, offset in path:
        event = SubmissionEvent.objects.create(submission=submission, from_status=previous, to_status=state)
        SubmissionEvent.objects.filter(pk=event.pk).update(at=start + timedelta(seconds=offset))
        previous = state
    return submission


def test_metrics_count_what_the_database_records(client, token, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # the broker is down for this scrape
    owner = get_user_model().objects.create_user("metrics-owner", "m@example.org")
    ok = [(S.RECEIVED, 0), (S.BUILDING, 2), (S.QUEUED, 47), (S.RUNNING, 50), (S.SUCCEEDED, 170)]
    _submission(owner, ok, slot="gpu-host/0", tracking_calls=8, tracking_bytes=3700)
    _submission(owner, ok, slot="gpu-host/1", tracking_calls=2, tracking_bytes=300)
    _submission(owner, [(S.RECEIVED, 0), (S.BUILDING, 1), (S.FAILED, 400)], failure_stage="build")
    _submission(owner, [(S.RECEIVED, 0), (S.BUILDING, 1), (S.QUEUED, 20)])
    _submission(owner, [(S.RECEIVED, 0), (S.BUILDING, 1), (S.QUEUED, 2), (S.RUNNING, 3)], slot="gpu-host/0")

    m = scrape(client)

    assert m[("m2d_submissions", (("status", "succeeded"),))] == 2
    assert m[("m2d_submissions", (("status", "failed"),))] == 1
    assert m[("m2d_submissions", (("status", "queued"),))] == 1
    assert m[("m2d_submissions", (("status", "running"),))] == 1
    assert m[("m2d_submissions", (("status", "cancelled"),))] == 0
    assert m[("m2d_submissions_received_total", ())] == 5
    assert m[("m2d_submission_failures_total", (("stage", "build"), ("status", "failed")))] == 1
    assert m[("m2d_submission_failures_total", (("stage", "run"), ("status", "failed")))] == 0
    assert m[("m2d_queue_length", ())] == 1
    assert 3600 - 60 < m[("m2d_queue_oldest_wait_seconds", ())] < 3600 + 60

    # Builds took 45 s, 45 s, 399 s (failed) and 19 s and 1 s (the two now queued or running).
    assert m[("m2d_build_duration_seconds_count", ())] == 5
    assert m[("m2d_build_duration_seconds_sum", ())] == pytest.approx(45 + 45 + 399 + 19 + 1)
    assert m[("m2d_build_duration_seconds_bucket", (("le", "30.0"),))] == 2
    assert m[("m2d_build_duration_seconds_bucket", (("le", "60.0"),))] == 4
    assert m[("m2d_build_duration_seconds_bucket", (("le", "+Inf"),))] == 5
    # Queue waits: 3 s twice and 1 s; the submission still queued has no finished wait.
    assert m[("m2d_queue_wait_seconds_count", ())] == 3
    assert m[("m2d_queue_wait_seconds_sum", ())] == pytest.approx(7)
    # Runs: two finished, 120 s each; the running one is not counted yet.
    assert m[("m2d_run_duration_seconds_count", ())] == 2
    assert m[("m2d_run_duration_seconds_bucket", (("le", "60.0"),))] == 0
    assert m[("m2d_run_duration_seconds_bucket", (("le", "300.0"),))] == 2

    assert m[("m2d_runs_total", (("slot", "gpu-host/0"),))] == 2
    assert m[("m2d_runs_total", (("slot", "gpu-host/1"),))] == 1
    assert m[("m2d_slot_busy", (("slot", "gpu-host/0"),))] == 1
    assert m[("m2d_slot_busy", (("slot", "gpu-host/1"),))] == 0
    assert m[("m2d_tracking_gateway_bytes_total", ())] == 4000
    assert m[("m2d_tracking_gateway_calls_total", ())] == 10
    assert m[("m2d_broker_up", ())] == 0


@pytest.mark.services
def test_broker_queue_lengths_come_from_redis(client, token, settings):
    m = scrape(client)
    assert m[("m2d_broker_up", ())] == 1
    for queue in settings.CELERY_TASK_QUEUES:
        assert ("m2d_broker_messages", (("queue", queue.name),)) in m


def test_a_mail_server_that_refuses_is_counted(client, token, settings):
    settings.EMAIL_BACKEND = "ops.mail.MeteredEmailBackend"
    settings.M2D_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    assert scrape(client)[("m2d_email_failures_total", ())] == 0

    with pytest.raises(ConnectionRefusedError):
        send_mail("[M2D] Submission 7: execution finished", "body", None, ["r@example.org"])

    failure = MailFailure.objects.get()
    assert failure.recipients == "r@example.org"
    assert "ConnectionRefusedError" in failure.error
    assert scrape(client)[("m2d_email_failures_total", ())] == 1

    # The platform's own mails are kept until the server takes them: the gauge shows they wait.
    assert scrape(client)[("m2d_email_outbox", ())] == 0
    sent = outbox.post("[M2D] Submission 7: execution finished", "body", "", ["r@example.org"], background=False)
    assert sent is False
    assert scrape(client)[("m2d_email_outbox", ())] == 1
    assert scrape(client)[("m2d_email_failures_total", ())] == 2


def test_alert_rules_and_dashboard_use_only_metrics_that_exist(client, token):
    """A renamed metric must not leave an alert that can never fire, or an empty graph."""
    owner = get_user_model().objects.create_user("names-owner", "n@example.org")
    _submission(owner, [(S.RECEIVED, 0), (S.BUILDING, 1), (S.QUEUED, 2), (S.RUNNING, 3)], slot="host/0")
    exported = {name for name, _ in scrape(client)}
    monitoring = settings_dir() / "platform" / "monitoring"
    for name in ("alerts.yml", "grafana-dashboard.json"):
        used = set(re.findall(r"\bm2d_[a-z_]+", (monitoring / name).read_text()))
        assert used, name
        assert used <= exported, f"{name} uses metrics /metrics does not export: {sorted(used - exported)}"


def settings_dir():
    from django.conf import settings

    return settings.BASE_DIR
