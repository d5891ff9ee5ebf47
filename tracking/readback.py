"""A submission's metrics as MLflow recorded them, per step: what the portal's chart, the API and
the e-mails show. A run's history is read once when the run has ended and kept in the database;
only a submission still on its way is read live from MLflow."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .client import MlflowAdmin, MlflowRefused, MlflowUnavailable
from .models import MetricHistory

log = logging.getLogger(__name__)

# A chart needs no more than this many metrics, and MLflow should not be asked for more per read.
MAX_KEYS = 12
# Points kept per metric: more than a chart can draw. A run that logged more (a loss per batch) is
# thinned evenly, its first and last points kept; MLflow itself keeps every point.
MAX_POINTS = 1000


@dataclass(frozen=True)
class ReadBack:
    history: dict[str, list[dict]]  # {metric: [{"step", "value", "timestamp"}]}
    final: dict[str, float]  # each metric's latest value, the newest run's winning
    thinned: bool = False


def thin(points: list[dict], keep: int = MAX_POINTS) -> list[dict]:
    """At most `keep` points, evenly spread, the first and the last among them."""
    if len(points) <= keep:
        return points
    last = len(points) - 1
    return [points[round(i * last / (keep - 1))] for i in range(keep)]


def read_from_mlflow(experiment_id: str, submission_id: int) -> ReadBack:
    """Every run of the submission in its owner's experiment, oldest first, so that a later run's
    points follow an earlier one's. Raises MlflowUnavailable / MlflowRefused."""
    client = MlflowAdmin()
    history: dict[str, list[dict]] = {}
    runs = client.submission_runs(experiment_id, submission_id)
    for run in reversed(runs):
        for key in sorted(run.metrics):
            if key in history or len(history) < MAX_KEYS:
                history.setdefault(key, []).extend(client.metric_history(run.run_id, key))
    thinned = any(len(points) > MAX_POINTS for points in history.values())
    return ReadBack({key: thin(points) for key, points in history.items()}, latest_values(runs), thinned)


def latest_values(runs) -> dict[str, float]:
    """Each metric's last value over the submission's runs (newest first, as MLflow lists them):
    where two runs logged a metric, the newer one's value wins."""
    final: dict[str, float] = {}
    for run in reversed(runs):
        final.update(run.metrics)
    return final


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
