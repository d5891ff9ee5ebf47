"""A submission's metric history: what the portal's chart, the API and the e-mails show. A run's
history is read once when the run has ended and kept in the database; only a submission still on
its way is read live from MLflow."""

from __future__ import annotations

import logging

from tracking.client import MlflowRefused, MlflowUnavailable
from tracking.readback import ReadBack, read_from_mlflow

from .models import MetricHistory

log = logging.getLogger(__name__)


def _experiment(submission) -> str:
    researcher = getattr(submission.owner, "researcher", None)
    return researcher.mlflow_experiment_id if researcher is not None else ""


def collect(submission) -> ReadBack | None:
    """After the run: read the history once and keep it. None when MLflow could not be read (the
    page reads it later, and keeps it then)."""
    experiment = _experiment(submission)
    if not experiment:
        return ReadBack({}, {})
    try:
        read = read_from_mlflow(experiment, submission.pk)
    except (MlflowUnavailable, MlflowRefused) as exc:
        log.warning("metrics of submission %s not read back: %s", submission.pk, exc)
        return None
    MetricHistory.objects.update_or_create(
        submission_id=submission.pk, defaults={"history": read.history, "thinned": read.thinned}
    )
    return read


def metric_history(submission) -> tuple[dict[str, list[dict]], bool]:
    """{metric: [points]} and whether it could be read (False: MLflow does not answer just now;
    the final metrics stored with the submission still stand)."""
    if not _experiment(submission):
        return {}, True
    if submission.is_finished:
        try:
            return submission.metric_record.history, True
        except MetricHistory.DoesNotExist:
            read = collect(submission)  # ended while MLflow was away, or before histories were kept
            return (read.history, True) if read is not None else ({}, False)
    try:
        return read_from_mlflow(_experiment(submission), submission.pk).history, True
    except (MlflowUnavailable, MlflowRefused) as exc:
        log.warning("metric history of submission %s not read: %s", submission.pk, exc)
        return {}, False
