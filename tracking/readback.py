"""A submission's metrics as MLflow recorded them, per step, read from MLflow by the tag its runs
carry (submissions.metrics decides when to read and keeps what it read)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .client import MlflowAdmin

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
