"""A prediction's audit row is written before its worker is asked: while the worker answers it is
in flight and keeps its version from being scaled down as idle; one its gateway never completed
(killed mid-request) reads interrupted once the response timeout and a margin are past, and no
longer keeps the version busy. No engine needed: the rows are as the gateway writes them."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from modelstore.services import model_register
from serving import selectors, services
from serving.models import Deployment, Prediction

from .conftest import FILES


def test_a_prediction_in_flight_keeps_its_version_busy_until_it_reads_interrupted(released, settings):
    settings.M2D_SERVE_RESPONSE_TIMEOUT = 60
    submission = released(FILES, held=())
    version = model_register(by=submission.owner, submission=submission, paths=["model/"], name="toy-scoring")
    deployment = Deployment.objects.create(version=version, min_workers=0, max_workers=2)
    now = timezone.now()
    Deployment.objects.filter(pk=deployment.pk).update(updated_at=now - timedelta(hours=1))
    deployment.refresh_from_db()
    since = now - timedelta(seconds=30)  # the idle time asked for
    assert selectors.idle_since(deployment, since)

    row = services.prediction_begin(user=submission.owner, model_name="toy-scoring", version=version, endpoint="v2")
    Prediction.objects.filter(pk=row.pk).update(at=now - timedelta(seconds=50))  # a slow model, still answering
    row.refresh_from_db()
    assert selectors.prediction_state(row) == "in flight"
    assert not selectors.idle_since(deployment, since)

    Prediction.objects.filter(pk=row.pk).update(at=now - timedelta(seconds=60 + 11))  # nobody completed it
    row.refresh_from_db()
    assert selectors.prediction_state(row) == "interrupted"
    assert selectors.idle_since(deployment, since)
    assert not selectors.refused_busy_since(deployment, now - timedelta(hours=1))  # never a busy refusal

    services.prediction_end(prediction=row, status=200, outputs={"score": 1.0}, total_seconds=0.1)
    row.refresh_from_db()
    assert (row.status, selectors.prediction_state(row)) == (200, "answered")
