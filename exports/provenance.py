"""The provenance record of a submission: exactly what ran, on what, and what came out.

Facts that vanish with the image (pip freeze, digests, GPUs) are captured at the end of the run,
before the image is removed; everything else is read from the records when the document is asked for.
"""

from __future__ import annotations

import logging

from django.conf import settings

from .dataset_index import dataset_index
from .models import ExportEvent, Provenance

log = logging.getLogger(__name__)
SUBMISSION_FREEZE = "/opt/m2d/submission-freeze.txt"
RUNTIME_FREEZE = "/opt/m2d/runtime-freeze.txt"
FORMAT = "m2d-provenance/1"


def provenance_capture(*, submission, image: str, container: str) -> Provenance:
    """Read what the run's image and container say about themselves. Never raises: a fact that
    cannot be read is recorded as missing, with why, and the run goes on."""
    from runner import docker_api
    from runner.naming import labels

    problems: list[str] = []
    facts: dict = {"image": {}, "base_image": {}, "runtime_image": {}, "gpus": [], "files": {}}

    def attempt(what: str, fn):
        try:
            return fn()
        except Exception as exc:
            problems.append(f"{what}: {type(exc).__name__}: {exc}"[:500])
            return None

    facts["image"] = attempt("image", lambda: docker_api.describe_image(image)) or {}
    for key, name in (("base_image", settings.M2D_BASE_IMAGE), ("runtime_image", settings.M2D_RUNTIME_IMAGE)):
        facts[key] = {"name": name, **(attempt(key, lambda n=name: docker_api.describe_image(n)) or {})}
    runtime_layers = facts["runtime_image"].pop("layers", None)
    facts["base_image"].pop("layers", None)
    if runtime_layers is not None and facts["image"].get("layers"):
        # The runtime image may have been rebuilt since: say whether it is the one this image grew from.
        facts["runtime_image"]["is_parent"] = facts["image"]["layers"][: len(runtime_layers)] == runtime_layers
    files = attempt(
        "pip freeze",
        lambda: docker_api.read_image_files(
            image, [SUBMISSION_FREEZE, RUNTIME_FREEZE], labels(submission), container_name=container
        ),
    )
    facts["gpus"] = attempt("GPUs", lambda: docker_api.container_gpus(container)) or []
    index = attempt("data set fingerprint", dataset_index)
    files = files or {}
    for path in (SUBMISSION_FREEZE, RUNTIME_FREEZE):
        if files and files.get(path) is None:
            problems.append(f"{path} is not in the image")
    record, _ = Provenance.objects.update_or_create(
        submission=submission,
        defaults={
            "image": {k: v for k, v in facts["image"].items() if k != "layers"}
            | {"layers": len(facts["image"].get("layers", []))},
            "base_image": facts["base_image"],
            "runtime_image": facts["runtime_image"],
            "submission_freeze": (files.get(SUBMISSION_FREEZE) or b"").decode("utf-8", "replace"),
            "runtime_freeze": (files.get(RUNTIME_FREEZE) or b"").decode("utf-8", "replace"),
            "gpus": facts["gpus"],
            "dataset_fingerprint": index.fingerprint if index else "",
            "problems": problems,
        },
    )
    if problems:
        log.warning("provenance of submission %s is incomplete: %s", submission.pk, "; ".join(problems))
    return record


def final_metrics(submission) -> tuple[dict, str]:
    """The submission's final metrics, from MLflow when it answers, else as recorded after the run."""
    from tracking.client import MlflowAdmin, MlflowUnavailable
    from tracking.readback import latest_values

    researcher = getattr(submission.owner, "researcher", None)
    if researcher is not None and researcher.mlflow_experiment_id:
        try:
            runs = MlflowAdmin().submission_runs(researcher.mlflow_experiment_id, submission.pk)
        except MlflowUnavailable as exc:
            log.warning("metrics of submission %s read from the record: %s", submission.pk, exc)
        else:
            return latest_values(runs), "mlflow"
    return dict(submission.metrics), "recorded after the run"


def _outcome(submission) -> dict:
    reason = submission.reason or ""
    return {
        "status": submission.status,
        "failure_stage": submission.failure_stage or None,
        "exit_code": submission.exit_code,
        "oom_killed": reason.startswith("out of memory"),
        "timed_out": submission.status == "timed_out",
        "reason": reason.splitlines()[0][:300] if reason else None,
    }


def provenance_record(submission) -> dict:
    from submissions.reports import submission_summary

    captured = getattr(submission, "provenance", None)
    export = getattr(submission, "export", None)
    timings = submission_summary(submission)["timings"]
    metrics, metrics_source = final_metrics(submission)
    entries = list(export.entries.all()) if export else []
    decisions = submission.export_events.filter(action__in=ExportEvent.DECISIONS + (ExportEvent.Action.REQUESTED,))
    return {
        "format": FORMAT,
        "submission": {"id": submission.pk, "owner": submission.owner.username, "status": submission.status},
        "code": {
            "archive_sha256": submission.archive_sha256,
            "original_name": submission.original_name,
            "requirements_submitted": submission.requirements,
            "requirements_resolved": captured.submission_freeze if captured else None,
            "runtime_packages": captured.runtime_freeze if captured else None,
        },
        "images": {
            "image_id": submission.image_id or (captured.image.get("id") if captured else None),
            "image": captured.image if captured else None,
            "base": captured.base_image if captured else None,
            "runtime": captured.runtime_image if captured else None,
        },
        "dataset": {
            "fingerprint": (captured.dataset_fingerprint if captured else "")
            or (export.dataset_fingerprint if export else None),
        },
        "execution": {
            "slot": submission.slot or None,
            "gpus": captured.gpus if captured else [],
            "started_at": timings["run_start"],
            "ended_at": timings["run_end"],
            "timings": timings,
            **_outcome(submission),
        },
        "metrics": {"final": metrics, "source": metrics_source},
        "tracking": {"calls": submission.tracking_calls, "bytes": submission.tracking_bytes},
        "export": {
            "status": export.status if export else None,
            "total_bytes": export.total_bytes if export else 0,
            "files": [
                {
                    "path": f.display_path,
                    "size": f.size,
                    "sha256": f.sha256,
                    "type": f.kind,
                    "flags": f.flags,
                    "state": f.state,
                }
                for f in entries
            ],
        },
        "review": [
            {
                "action": event.action,
                "by": event.by.username if event.by_id else None,
                "at": event.at.isoformat(),
                "file": event.path or None,
                "comment": event.comment,
            }
            for event in decisions.select_related("by")
        ],
        "capture_problems": captured.problems if captured else ["no provenance was captured for this run"],
    }
