"""The inference gateway: from a checked request to a ready worker and back, with one audit row
per request. Platform code only: it never imports the model's libraries or unpickles anything."""

from __future__ import annotations

import base64
import json
import random
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.http import Http404

from modelstore import selectors as store
from runner.dispatch import reconcile_serving

from . import inputs, selectors, services
from .errors import ModelFailed, ModelTimedOut, NoWorker, ServingError
from .files import socket_path
from .workerclient import WorkerTimedOut, WorkerUnreachable, ask


@dataclass(frozen=True)
class Answer:
    model: str
    version: int
    outputs: dict
    prediction: str  # the audit row's id, also sent to the caller


def resolve(user, name: str, version_ref: str | None):
    """The version a request means: the one named, or the model's `default` alias."""
    model = store.model_for(user, name)
    return store.version_for(user, model, version_ref or "default")


def predict(*, user, name: str, version_ref: str | None, given: dict, endpoint: str) -> Answer:
    """Ask the model; raises Http404 or a ServingError, each recorded like an answer."""
    started = time.monotonic()
    record = {"user": user, "model_name": name[:100], "endpoint": endpoint}
    try:
        version = resolve(user, name, version_ref)
        record["version"] = version
        record["inputs"] = inputs.check(version.card, given)
        worker = _pick(version)
        record["worker"] = worker
        body = {
            "inputs": {k: {"content_type": t, "data": base64.b64encode(d).decode()} for k, (t, d) in given.items()},
            "parameters": {},
        }
        status, answer = _ask(worker, body)
        if status != 200:
            error = str(answer.get("error", "the model failed"))[:2000]
            if status in (400, 413):
                raise inputs.InvalidInput(error)
            raise ModelFailed(f"The model could not answer: {error}")
        outputs = answer.get("outputs", {})
        saved = services.prediction_record(
            **record,
            status=200,
            outputs=_capped(outputs),
            model_seconds=answer.get("model_seconds"),
            total_seconds=time.monotonic() - started,
        )
        return Answer(model=version.model.name, version=version.number, outputs=outputs, prediction=str(saved.uuid))
    except Http404:
        services.prediction_record(
            **record, status=404, error="no such model", total_seconds=time.monotonic() - started
        )
        raise
    except ServingError as exc:
        services.prediction_record(
            **record, status=exc.code, error=str(exc)[:2000], total_seconds=time.monotonic() - started
        )
        raise


def _pick(version):
    workers = selectors.ready_workers(version)
    if not workers:
        deployment = selectors.deployment_of(version)
        if deployment is None or deployment.max_workers == 0:
            raise NoWorker(f"{version.model.name} version {version.number} is not deployed; ask its owner to scale it.")
        raise NoWorker(f"{version.model.name} version {version.number} has no ready worker yet; try again shortly.")
    return random.choice(workers)


def _ask(worker, body: dict) -> tuple[int, dict]:
    try:
        return ask(
            socket_path(worker.pk),
            settings.M2D_SERVE_UID,
            "POST",
            "/predict",
            body,
            timeout=settings.M2D_SERVE_RESPONSE_TIMEOUT,
            max_answer=settings.M2D_SERVE_MAX_ANSWER_BYTES,
        )
    except WorkerTimedOut as exc:
        _retire(worker, str(exc))
        raise ModelTimedOut(f"The model did not answer within {settings.M2D_SERVE_RESPONSE_TIMEOUT:g} s.") from None
    except WorkerUnreachable as exc:
        _retire(worker, str(exc))
        raise ModelFailed(f"The model's worker could not be asked ({exc}); it is being replaced.") from None


def _retire(worker, reason: str) -> None:
    """A worker that broke a request is not asked again; the reconciler removes and replaces it."""
    with transaction.atomic():
        services.worker_end(worker=worker, failed=True, reason=reason)
        transaction.on_commit(reconcile_serving)


def _capped(outputs: dict):
    text = json.dumps(outputs)
    return outputs if len(text) <= 16_384 else {"kept": False, "bytes": len(text)}
