"""Log lines as text or JSON (`M2D_LOG_FORMAT`), each carrying the submission it concerns.

The submission id travels in a context variable: Celery tasks that take a `submission_id` set it
for their duration, the run slot sets it around each run (the tracking gateway's thread inherits
it), and portal requests for one submission set it in middleware. A handler filter copies it onto
every record, so a line logged deep inside a library call is still attributed.

This module is imported by settings: it must not import Django models.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import os
from contextlib import contextmanager

from celery import signals
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

_submission: contextvars.ContextVar[int | None] = contextvars.ContextVar("m2d_submission_id", default=None)


def current_submission_id() -> int | None:
    return _submission.get()


def set_submission(submission_id: int) -> contextvars.Token:
    return _submission.set(int(submission_id))


def clear_submission(**_) -> None:
    """Between requests: a thread that served one submission's page must not lend its id to the next."""
    _submission.set(None)


@contextmanager
def submission_context(submission_id):
    token = _submission.set(int(submission_id) if submission_id is not None else None)
    try:
        yield
    finally:
        _submission.reset(token)


class SubmissionFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "submission_id", None) is None:
            record.submission_id = _submission.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s%(submission)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        submission_id = getattr(record, "submission_id", None)
        record.submission = f" [submission {submission_id}]" if submission_id is not None else ""
        return super().format(record)


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time, level, logger, message, service, submission_id (when one is
    concerned), and the traceback when there is one."""

    def __init__(self):
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": os.environ.get("M2D_SERVICE", "m2d")},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )

    def add_fields(self, log_data, record, message_dict) -> None:
        super().add_fields(log_data, record, message_dict)
        submission_id = getattr(record, "submission_id", None)
        if submission_id is not None:
            log_data["submission_id"] = submission_id
        else:  # lines about no submission in particular carry no such key
            log_data.pop("submission_id", None)
        # the text formatter's helper field is not for JSON readers
        log_data.pop("submission", None)


def logging_config(fmt: str = "text", level: str = "INFO") -> dict:
    if fmt not in ("text", "json"):
        raise ValueError(f"M2D_LOG_FORMAT must be text or json, not {fmt!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"submission": {"()": "ops.logs.SubmissionFilter"}},
        "formatters": {"text": {"()": "ops.logs.TextFormatter"}, "json": {"()": "ops.logs.JsonFormatter"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": fmt, "filters": ["submission"]},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            # gunicorn's own handlers would bypass the format; send its lines through ours
            "gunicorn.error": {"handlers": [], "propagate": True},
            "gunicorn.access": {"handlers": [], "propagate": True},
        },
    }


# --- Celery --------------------------------------------------------------------------------------


@functools.cache
def _takes_submission_id(task) -> bool:
    try:
        params = list(inspect.signature(task.run).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == "submission_id"


def _task_submission_id(task, args, kwargs):
    if kwargs and "submission_id" in kwargs:
        return kwargs["submission_id"]
    if args and _takes_submission_id(task):
        return args[0]
    return None


_task_tokens: dict[str, contextvars.Token] = {}


def _on_task_prerun(task_id=None, task=None, args=None, kwargs=None, **_):
    submission_id = _task_submission_id(task, args, kwargs)
    if submission_id is not None:
        _task_tokens[task_id] = _submission.set(int(submission_id))


def _on_task_postrun(task_id=None, **_):
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        _submission.reset(token)


def connect_celery_signals() -> None:
    signals.task_prerun.connect(_on_task_prerun, weak=False, dispatch_uid="m2d-log-context-prerun")
    signals.task_postrun.connect(_on_task_postrun, weak=False, dispatch_uid="m2d-log-context-postrun")
