"""Periodic repair: compare the database with the engine and put right what a lost message or a
crash left behind."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from submissions.models import Submission

from . import docker_api
from .dispatch import request_build, wake_run_slots

log = logging.getLogger(__name__)
S = Submission.Status


def reconcile() -> None:
    grace = timezone.now() - timedelta(seconds=settings.M2D_RECONCILE_SECONDS)
    # A build message that never arrived: ask again (the build task ignores duplicates).
    for submission_id in Submission.objects.filter(status=S.RECEIVED, updated_at__lt=grace).values_list(
        "pk", flat=True
    ):
        request_build(submission_id)
    # Queued work with no slot awake: wake the slots.
    if Submission.objects.filter(status=S.QUEUED).exists():
        wake_run_slots()
    _remove_orphans()


def _remove_orphans() -> None:
    try:
        containers = docker_api.list_labelled(settings.M2D_INSTANCE)
    except docker_api.PlatformFault as exc:
        log.warning("reconciler: engine unavailable: %s", exc)
        return
    live = set(Submission.objects.filter(status__in=[S.BUILDING, S.QUEUED, S.RUNNING]).values_list("pk", flat=True))
    for container in containers:
        submission_id = container.labels.get(docker_api.LABEL_SUBMISSION, "")
        if submission_id.isdigit() and int(submission_id) not in live:
            log.info("reconciler: removing orphan container %s", container.name)
            try:
                container.remove(force=True)
            except Exception:  # gone meanwhile
                pass
