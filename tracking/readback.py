"""A submission's metrics as MLflow recorded them, per step: what the portal's chart and the API show."""

from __future__ import annotations

import logging

from django.core.cache import cache

from .client import MlflowAdmin, MlflowRefused, MlflowUnavailable

log = logging.getLogger(__name__)

# A chart needs no more than this many metrics, and MLflow should not be asked for more per page view.
MAX_KEYS = 12
# A run is marked succeeded, failed or timed out only once its tracking gateway has closed: its
# history is final, so page views need not ask MLflow again for a while. A cancelled run may still
# log while its container is being stopped: it is always read afresh, as are unfinished ones.
SETTLED = ("succeeded", "failed", "timed_out")
SETTLED_CACHE_SECONDS = 600


def metric_history(submission) -> tuple[dict[str, list[dict]], bool]:
    """{metric: [{"step", "value", "timestamp"}]} over the submission's MLflow runs, and whether
    MLflow answered (False: it could not be read now; the final metrics stored with the submission
    still stand)."""
    researcher = getattr(submission.owner, "researcher", None)
    if researcher is None or not researcher.mlflow_experiment_id:
        return {}, True
    # created_at too: a restored or recreated database may give an id to another submission
    experiment = researcher.mlflow_experiment_id
    cache_key = f"m2d:metric-history:{experiment}:{submission.pk}:{submission.created_at.timestamp()}"
    settled = submission.status in SETTLED
    if settled and (cached := cache.get(cache_key)) is not None:
        return cached, True
    client = MlflowAdmin()
    history: dict[str, list[dict]] = {}
    try:
        runs = client.submission_runs(experiment, submission.pk)
        for run in reversed(runs):  # oldest first, so a later run's points follow an earlier one's
            for key in sorted(run.metrics):
                if key in history or len(history) < MAX_KEYS:
                    history.setdefault(key, []).extend(client.metric_history(run.run_id, key))
    except (MlflowUnavailable, MlflowRefused) as exc:
        log.warning("metric history of submission %s not read: %s", submission.pk, exc)
        return {}, False
    if settled:
        cache.set(cache_key, history, SETTLED_CACHE_SECONDS)
    return history, True
