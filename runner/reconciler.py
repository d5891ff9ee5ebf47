"""Periodic repair: compare the database with the engine and put right what a lost message or a
crash left behind."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from disclosure.selectors import submissions_assessing, submissions_to_assess_again
from serving.models import Deployment
from submissions.models import Submission
from submissions.services import run_lost_record
from submissions.transitions import TransitionConflict, transition

from . import docker_api, scheduling
from .dispatch import assess_disclosure, queue_length, request_build, wake_run_slots
from .jobs import export_volume

log = logging.getLogger(__name__)
S = Submission.Status


def reconcile() -> None:
    _restart_interrupted_builds()
    _requeue_lost_runs()
    # Build messages lost (a broker outage, a crash): when the build queue is empty, every
    # submission still waiting for its build needs a new message. Duplicates are harmless.
    if queue_length(settings.M2D_QUEUE_BUILD) == 0:
        grace = timezone.now() - timedelta(seconds=settings.M2D_RECONCILE_SECONDS)
        for submission_id in Submission.objects.filter(status=S.RECEIVED, updated_at__lt=grace).values_list(
            "pk", flat=True
        ):
            request_build(submission_id)
    # Queued work with no slot awake, or runs whose worker died: wake the slots (a restarted
    # worker waits for its orphaned run where it stands).
    wakes = scheduling.stale_runs().count() + Submission.objects.filter(status=S.QUEUED).exists()
    if wakes and queue_length(settings.M2D_QUEUE_RUN) in (0, None):
        for _ in range(wakes):
            wake_run_slots()
    # Disclosure jobs whose message was lost, or whose worker died (their lease ran out).
    if queue_length(settings.M2D_QUEUE_RUN) == 0:
        for submission_id in submissions_to_assess_again(
            now=timezone.now(),
            grace_seconds=settings.M2D_RECONCILE_SECONDS,
            lease_seconds=settings.M2D_DISCLOSURE_LEASE_SECONDS,
        ):
            assess_disclosure(submission_id)
    _remove_orphans()
    _remove_stale_export_volumes()


def _remove_stale_export_volumes() -> None:
    """Export volumes stay mounted only while their run runs; a worker killed mid-cleanup
    leaves one behind (its files were either collected already or belong to a lost run)."""
    folder = settings.M2D_EXPORT_VOLUME_DIR
    if not folder.is_dir():
        return
    running = {str(pk) for pk in Submission.objects.filter(status=S.RUNNING).values_list("pk", flat=True)}
    for entry in folder.iterdir():
        name = entry.name.removesuffix(".img")
        if name.isdigit() and name not in running:
            log.info("reconciler: removing the stale export volume of submission %s", name)
            try:
                export_volume(int(name)).destroy()
            except Exception as exc:  # busy: the next period tries again
                log.warning("reconciler: export volume %s not removed: %s", name, exc)


def _requeue_lost_runs() -> None:
    """A run whose slot has been silent for M2D_RUN_LOST_SECONDS (its host went down, its worker
    did not come back) is queued again for any host, once, as the platform's fault. Its worker,
    should it come back, finds the run taken and removes what it left (pipeline.clear_leftovers)."""
    for submission in scheduling.lost_runs():
        if scheduling.take_over(submission, lost=True):
            host = submission.slot.partition("/")[0] or "its host"
            log.warning("reconciler: submission %s lost its run worker on %s", submission.pk, host)
            run_lost_record(
                submission_id=submission.pk,
                reason=f"The run's host ({host}) stopped reporting for {settings.M2D_RUN_LOST_SECONDS} s",
            )


def _restart_interrupted_builds() -> None:
    """A build whose worker died is built again from the start."""
    for submission in scheduling.stale_builds():
        try:
            transition(submission, S.RECEIVED, expected=S.BUILDING, note="its build was interrupted; building again")
        except TransitionConflict:
            continue
        request_build(submission.pk)


def _remove_orphans() -> None:
    try:
        containers = docker_api.list_labelled(settings.M2D_INSTANCE)
    except docker_api.PlatformFault as exc:
        log.warning("reconciler: engine unavailable: %s", exc)
        return
    live = set(Submission.objects.filter(status__in=[S.BUILDING, S.QUEUED, S.RUNNING]).values_list("pk", flat=True))
    live |= submissions_assessing()  # a disclosure job's containers, and the image it asks the model in
    for container in containers:
        # A serving worker inherits its submission's labels from the image, and outlives the run;
        # serving's own reconcile keeps those to what the deployments ask.
        if container.labels.get(docker_api.LABEL_ROLE) == "serve":
            continue
        submission_id = container.labels.get(docker_api.LABEL_SUBMISSION, "")
        if submission_id.isdigit() and int(submission_id) not in live:
            log.info("reconciler: removing orphan container %s", container.name)
            try:
                container.remove(force=True)
            except Exception:  # gone meanwhile
                pass
    if settings.M2D_KEEP_IMAGES:
        return
    try:
        images = docker_api.client().images.list(
            filters={"label": f"{docker_api.LABEL_INSTANCE}={settings.M2D_INSTANCE}"}
        )
    except docker_api.PlatformFault:
        return
    # A received submission may be an interrupted build restarted a moment ago: the image its
    # first build left is the cache the new build stands on (removing it fails that build).
    keep = live | set(Submission.objects.filter(status=S.RECEIVED).values_list("pk", flat=True))
    # A deployed model version's workers start from its submission's image.
    keep |= set(Deployment.objects.filter(max_workers__gt=0).values_list("version__submission_id", flat=True))
    for image in images:
        submission_id = image.labels.get(docker_api.LABEL_SUBMISSION, "")
        if submission_id.isdigit() and int(submission_id) not in keep:
            log.info("reconciler: removing the image of finished submission %s", submission_id)
            try:
                docker_api.remove_image(image.id)
            except Exception:  # in use by a build that just started, or gone meanwhile
                pass
    try:
        docker_api.prune_build_cache(settings.M2D_BUILD_CACHE_SECONDS)
    except Exception as exc:  # a prune already running, or the engine away: next period
        log.info("reconciler: build cache not pruned: %s", exc)
