"""The inference gateway: from a checked request to a ready worker and back, with one audit row
per request. Platform code only: it never imports the model's libraries or unpickles anything."""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.http import Http404

from modelstore import selectors as store
from runner.dispatch import reconcile_serving
from submissions.queue import host_name

from . import inputs, selectors, services
from .errors import InvalidInput, ModelFailed, ModelTimedOut, NoWorker, ServingError, WorkersBusy
from .files import socket_path
from .relay import RelayUnreachable, ask_remote, cut_off_lately
from .workerclient import WorkerBrokeOff, WorkerTimedOut, WorkerUnreachable, ask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    model: str
    version: int
    outputs: dict
    prediction: str  # the audit row's id, also sent to the caller


def resolve(user, name: str, version_ref: str | None):
    """The version a request means: the one named, or the model's `default` alias."""
    return store.visible_version(user, name, version_ref or "default")


ONLY_INPUT = None  # the key of a body sent without a name: the model's one input


def _named(card: dict, given: dict) -> dict:
    """`given` with a body sent without a name given the name of the model's one input."""
    if ONLY_INPUT not in given:
        return given
    names = [spec["name"] for spec in card.get("inputs", [])]
    if len(names) != 1:
        raise InvalidInput(
            f"This model takes {len(names)} inputs; send them as multipart parts named {', '.join(names)}."
        )
    return {names[0]: given[ONLY_INPUT]}


def predict(*, user, name: str, version_ref: str | None, given: dict, endpoint: str) -> Answer:
    """Ask the model; raises Http404 or a ServingError, each recorded like an answer. A body sent
    without a name (key ONLY_INPUT) is the model's one input. The audit row of a request handed
    to a worker is written before the worker is asked and completed after, so a gateway killed
    meanwhile leaves it in flight (serving.selectors.prediction_state reads it as interrupted)."""
    started = time.monotonic()
    record = {"user": user, "model_name": name[:100], "endpoint": endpoint}
    row = None
    try:
        version = resolve(user, name, version_ref)
        record["version"] = version
        given = _named(version.card, given)
        record["inputs"] = inputs.check(version.card, given)
        workers = _ready(version)
        body = {
            "inputs": {k: {"content_type": t, "data": base64.b64encode(d).decode()} for k, (t, d) in given.items()},
            "parameters": {},
        }
        record["worker"] = workers[0]
        row = services.prediction_begin(**record)
        cut_off = []
        for worker in workers:
            record["worker"] = worker
            try:
                status, answer = _ask(worker, body)
            except RelayUnreachable as exc:
                log.error("serving: worker %s on host %s cannot be reached: %s", worker.pk, worker.host, exc)
                cut_off.append(worker.host)
                continue
            if not (status == 503 and answer.get("busy")):
                break
        else:
            if len(cut_off) == len(workers):
                raise NoWorker(
                    f"{version.model.name} version {version.number} has its workers on "
                    f"{', '.join(sorted(set(cut_off)))}, which cannot be reached now; try again shortly."
                )
            raise WorkersBusy(
                f"{WorkersBusy.prefix} {version.model.name} version {version.number} is busy "
                f"({len(workers)} worker{'s' if len(workers) > 1 else ''}, "
                f"{settings.M2D_SERVE_IN_FLIGHT} prediction{'s' if settings.M2D_SERVE_IN_FLIGHT > 1 else ''} "
                "at a time each); try again in a few seconds."
            )
        if status != 200:
            error = str(answer.get("error", "the model failed"))[:2000]
            if status in (400, 413):
                raise InvalidInput(error)
            raise ModelFailed(f"The model could not answer: {error}")
        outputs = answer.get("outputs", {})
        saved = _recorded(
            row,
            record,
            started,
            status=200,
            outputs=_capped(outputs),
            model_seconds=answer.get("model_seconds"),
        )
        return Answer(model=version.model.name, version=version.number, outputs=outputs, prediction=str(saved.uuid))
    except Http404:
        _recorded(row, record, started, status=404, error="no such model")
        raise
    except ServingError as exc:
        _recorded(row, record, started, status=exc.code, error=str(exc)[:2000])
        raise
    except Exception as exc:
        if row is not None:  # the row of a request the platform failed to complete says so, not "interrupted"
            _recorded(row, record, started, status=500, error=f"the platform failed: {exc}"[:2000])
        raise


def _recorded(row, record: dict, started: float, **fields):
    """The request's audit row, completed (written at once when the request ended before a worker)."""
    fields["total_seconds"] = time.monotonic() - started
    if row is None:
        return services.prediction_record(**record, **fields)
    services.prediction_end(prediction=row, worker=record["worker"], **fields)
    return row


def _ready(version) -> list:
    """The version's ready workers in a random order: the first busy one passes the request on."""
    workers = selectors.ready_workers(version)
    if not workers:
        deployment = selectors.deployment_of(version)
        if deployment is None or deployment.max_workers == 0:
            raise NoWorker(f"{version.model.name} version {version.number} is not deployed; ask its owner to scale it.")
        if deployment.state == deployment.State.DEGRADED:
            raise NoWorker(
                f"{version.model.name} version {version.number} is degraded: its workers fail to start. "
                "Its owner and the admins know; try again later."
            )
        raise NoWorker(f"{version.model.name} version {version.number} has no ready worker yet; try again shortly.")
    random.shuffle(workers)
    # Workers of a host found cut off a moment ago are asked last (sorted() keeps the shuffle).
    return sorted(workers, key=lambda worker: cut_off_lately(worker.relay))


def _ask(worker, body: dict) -> tuple[int, dict]:
    """The worker's answer: through its socket here, or through its host's relay when it runs on
    another host. Raises RelayUnreachable when that host cannot be asked (the worker is kept)."""
    timeout, max_answer = settings.M2D_SERVE_RESPONSE_TIMEOUT, settings.M2D_SERVE_MAX_ANSWER_BYTES
    try:
        if worker.relay and worker.host != host_name():
            return ask_remote(worker.relay, worker.pk, "predict", body, timeout=timeout, max_answer=max_answer)
        return ask(
            socket_path(worker.pk),
            settings.M2D_SERVE_UID,
            "POST",
            "/predict",
            body,
            timeout=timeout,
            max_answer=max_answer,
        )
    except WorkerTimedOut as exc:
        _retire(worker, str(exc))
        raise ModelTimedOut(f"The model did not answer within {settings.M2D_SERVE_RESPONSE_TIMEOUT:g} s.") from None
    except WorkerBrokeOff as exc:
        _retire(worker, str(exc))
        raise ModelFailed(
            "The model's worker stopped while it answered (it ran out of memory or exited); it is being replaced."
        ) from None
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
