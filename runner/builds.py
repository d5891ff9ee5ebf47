"""From a received submission to a queued one: its image, built from the stored zip."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from submissions.models import Submission
from submissions.transitions import TransitionConflict, transition

from . import docker_api, index_door, provenance, scheduling
from .dispatch import wake_run_slots
from .naming import image_tag, labels, log_dir
from .outcomes import build_reason, fail, settle

log = logging.getLogger(__name__)
S = Submission.Status
Stage = Submission.Stage


def build(submission_id: int) -> None:
    submission = Submission.objects.select_related("owner").get(pk=submission_id)
    if submission.status != S.RECEIVED:
        return  # already handled: a duplicate message
    try:
        transition(submission, S.BUILDING, heartbeat_at=timezone.now())
    except TransitionConflict:
        return
    spec = build_spec(submission)
    try:
        image_id = _build_leaving_nothing(spec, submission.pk)
    except docker_api.BuildCancelled:
        log.info("build of submission %s stopped: cancelled", submission.pk)
        return
    except docker_api.BuildFailed as exc:
        fail(submission, Stage.BUILD, build_reason(str(exc), exc.log), build_log_tail=exc.log)
        return
    except TimeoutError as exc:
        settle(
            submission,
            S.TIMED_OUT,
            failure_stage=Stage.BUILD,
            reason=str(exc),
            build_log_tail=docker_api.tail(spec.log_path, settings.M2D_LOG_TAIL_LINES),
        )
        return
    except docker_api.PlatformFault as exc:
        fail(submission, Stage.INFRASTRUCTURE, f"The platform could not build the image: {exc}")
        return
    # Read now, before any run: nothing of a data set or a run can be in an image fresh from its build.
    provenance.capture_image(submission=submission, image=image_id)
    if settle(
        submission,
        S.QUEUED,
        image_id=image_id,
        build_log_tail=docker_api.tail(spec.log_path, settings.M2D_LOG_TAIL_LINES),
    ):
        transaction.on_commit(wake_run_slots)
    else:
        docker_api.remove_image(spec.tag)


def _build_leaving_nothing(spec: docker_api.BuildSpec, submission_id: int) -> str:
    try:
        try:
            return build_through_door(spec, should_stop=_build_watch(submission_id))
        except docker_api.CacheLayerLost as exc:
            log.warning("build of submission %s lost a cached layer (%s); building it again", submission_id, exc)
            return build_through_door(spec, should_stop=_build_watch(submission_id))
    finally:
        try:
            docker_api.remove_build_leftovers(settings.M2D_INSTANCE, submission_id)
        except docker_api.PlatformFault:
            pass  # the reconciler removes them once the engine answers


def build_through_door(spec: docker_api.BuildSpec, should_stop=None) -> str:
    """Build with the package index as the steps' only way out (index_door)."""
    purpose = "build" if spec.log_path.name == "build.log" else "rebuild"
    with index_door.opened(spec.submission_id, purpose) as network:
        index = {"PIP_INDEX_URL": index_door.build_index_url()} if network != "none" else {}
        spec = dataclasses.replace(spec, network=network, build_args={**spec.build_args, **index})
        return docker_api.build_image(spec, should_stop=should_stop)


def build_spec(submission: Submission, log_name: str = "build.log") -> docker_api.BuildSpec:
    dockerfile = "execute_code" if settings.M2D_USE_GPU else "execute_code-without-gpu"
    return docker_api.BuildSpec(
        submission_id=submission.pk,
        archive=Path(submission.archive.path),
        dockerfile=settings.M2D_DOCKER_SCRIPTS_DIR / dockerfile,
        runtime_image=settings.M2D_RUNTIME_IMAGE,
        tag=image_tag(submission.pk),
        labels={k: v for k, v in labels(submission).items() if k != docker_api.LABEL_SLOT},  # one step, last
        log_path=log_dir(submission.pk) / log_name,
        timeout=settings.M2D_BUILD_TIMEOUT,
        log_max_bytes=settings.M2D_LOG_MAX_BYTES,
        memory=settings.M2D_BUILD_MEMORY,
        cpus=settings.M2D_BUILD_CPUS,
        max_bytes=settings.M2D_BUILD_MAX_BYTES,
        build_args={
            "M2D_BUILD_PIDS": str(settings.M2D_BUILD_PIDS),
            "M2D_BUILD_FILE_BYTES": str(settings.M2D_BUILD_MAX_BYTES),
        },
    )


def image_on_this_host(submission: Submission) -> str:
    """The run host's engine may not hold the image (it was built on another host, or pruned):
    build it here from the stored zip; the requirements layer cache of this host serves it. The
    provenance record keeps what the first build's image held."""
    if docker_api.image_exists(submission.image_id):
        return submission.image_id
    log.info("submission %s: image not on this host, building it here", submission.pk)
    return build_through_door(build_spec(submission, "build-on-run-host.log"))


def _build_watch(submission_id: int):
    """Asked every second from the build's watcher thread: beat now and then, and say whether
    the submission was cancelled."""
    last_beat = [0.0]

    def should_stop() -> bool:
        try:
            if time.monotonic() - last_beat[0] >= settings.M2D_HEARTBEAT_SECONDS:
                last_beat[0] = time.monotonic()
                scheduling.beat(submission_id)
            return Submission.objects.filter(pk=submission_id, status=S.CANCELLED).exists()
        finally:
            connection.close()

    return should_stop
