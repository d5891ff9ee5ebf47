"""Structured logs: one JSON object a line, with the submission id on the lines that concern one."""

import io
import json
import logging
import logging.config

import pytest
from celery import Celery

from ops.logs import logging_config, submission_context


@pytest.fixture
def capture():
    """The platform's logging configuration, writing to a buffer."""

    def configure(fmt: str) -> io.StringIO:
        config = logging_config(fmt, "INFO")
        stream = io.StringIO()
        config["handlers"]["console"]["stream"] = stream
        logging.config.dictConfig(config)
        return stream

    yield configure
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


def test_json_lines_carry_the_submission_id(capture, monkeypatch):
    monkeypatch.setenv("M2D_SERVICE", "run-worker")
    stream = capture("json")
    log = logging.getLogger("runner.pipeline")
    log.info("before")
    with submission_context(42):
        log.warning("collecting exports of %s", "it")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("lost")
    log.info("after")

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["before", "collecting exports of it", "lost", "after"]
    assert [line.get("submission_id") for line in lines] == [None, 42, 42, None]
    assert lines[1]["level"] == "WARNING" and lines[1]["logger"] == "runner.pipeline"
    assert lines[1]["service"] == "run-worker" and "time" in lines[1]
    assert "ValueError: boom" in lines[2]["exc_info"]


def test_text_lines_name_the_submission(capture):
    stream = capture("text")
    with submission_context(7):
        logging.getLogger("runner.gateway").info("gateway listening")
    logging.getLogger("runner.gateway").info("idle")
    first, second = stream.getvalue().splitlines()
    assert first.endswith("INFO runner.gateway [submission 7] gateway listening")
    assert second.endswith("INFO runner.gateway idle")


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="M2D_LOG_FORMAT"):
        logging_config("xml")


def test_celery_tasks_about_a_submission_log_its_id(capture):
    """A task whose first argument is submission_id logs with it, in an eagerly run task too."""
    stream = capture("json")
    app = Celery("log-context-test", set_as_current=False)
    app.conf.task_always_eager = True

    @app.task
    def build_submission(submission_id):
        logging.getLogger("runner.tasks").info("building")

    @app.task
    def reconcile():
        logging.getLogger("runner.tasks").info("reconciling")

    build_submission.delay(31)
    build_submission.delay(submission_id=32)
    reconcile.delay()
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if '"runner.tasks"' in line]
    assert [(line["message"], line.get("submission_id")) for line in lines] == [
        ("building", 31),
        ("building", 32),
        ("reconciling", None),
    ]


def test_portal_lines_about_a_submission_carry_its_id(capture, client, django_user_model):
    """Django's own "Not Found" line for a submission page names the submission."""
    stream = capture("json")
    client.force_login(django_user_model.objects.create_user("reader", "reader@example.org"))
    assert client.get("/submissions/987654/").status_code == 404
    assert client.get("/accounts/login/").status_code in (200, 302)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    not_found = [line for line in lines if line["message"] == "Not Found: /submissions/987654/"]
    assert [line.get("submission_id") for line in not_found] == [987654]
    assert all("submission_id" not in line for line in lines if "987654" not in line["message"])
