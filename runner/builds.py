"""From a received submission to a queued one: its image, built from the stored zip. A build is
handed a frozen BuildJob and reports frozen BuildFacts, which submissions.services records."""

from __future__ import annotations

import dataclasses
import logging
import time

from django.conf import settings
from django.db import connection

from exports.hostlogs import keep as keep_log
from submissions.facts import BuildFacts
from submissions.models import Submission
from submissions.selectors import submission_cancelled
from submissions.services import build_begin, build_facts_record

from . import docker_api, index_door, provenance, scheduling
from .jobs import BuildJob, RunJob, build_job_for
from .outcomes import build_reason

log = logging.getLogger(__name__)
Stage = Submission.Stage


def build(submission_id: int) -> None:
    if not build_begin(submission_id=submission_id):
        return  # already handled (a duplicate message), or cancelled first
    job = build_job_for(submission_id)
    facts = _build(job)
    keep_log(submission_id, "build")  # for the portal, which may be on another host
    if not build_facts_record(facts=facts) and facts.image_id:
        docker_api.remove_image(job.spec.tag)  # cancelled or settled while it built


def _build(job: BuildJob) -> BuildFacts:
    spec, tail_lines = job.spec, job.log_tail_lines
    try:
        image_id = _build_leaving_nothing(spec, job.submission_id)
    except docker_api.BuildCancelled:
        log.info("build of submission %s stopped: cancelled", job.submission_id)
        return BuildFacts(job.submission_id, cancelled=True)
    except docker_api.BuildFailed as exc:
        return BuildFacts(
            job.submission_id, failure_stage=Stage.BUILD, reason=build_reason(str(exc), exc.log), log_tail=exc.log
        )
    except TimeoutError as exc:
        return BuildFacts(
            job.submission_id, timed_out=True, reason=str(exc), log_tail=docker_api.tail(spec.log_path, tail_lines)
        )
    except docker_api.PlatformFault as exc:
        return BuildFacts(
            job.submission_id,
            failure_stage=Stage.INFRASTRUCTURE,
            reason=f"The platform could not build the image: {exc}",
        )
    # Read now, before any run: nothing of a data set or a run can be in an image fresh from its build.
    provenance.capture_image(submission_id=job.submission_id, labels=spec.labels, image=image_id)
    return BuildFacts(job.submission_id, image_id=image_id, log_tail=docker_api.tail(spec.log_path, tail_lines))


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


def image_on_this_host(submission_id: int, image_id: str = "", should_stop=None) -> str:
    """The submission's image on this host's engine. A run or serving host may not hold it (it was
    built on another host, or pruned): it is built here from the stored zip; the requirements layer
    cache of this host serves it. The provenance record keeps what the first build's image held."""
    if docker_api.image_exists(image_id):
        return image_id
    log.info("submission %s: image not on this host, building it here", submission_id)
    return build_through_door(build_job_for(submission_id, "build-on-run-host.log").spec, should_stop=should_stop)


def image_for_run(job: RunJob) -> str:
    # The run's heartbeat goes on while its host builds the image (else it would look lost).
    return image_on_this_host(job.submission_id, job.image, should_stop=_build_watch(job.submission_id))


def _build_watch(submission_id: int):
    """Asked every second from the build's watcher thread: beat now and then, and say whether
    the submission was cancelled."""
    last_beat = [0.0]

    def should_stop() -> bool:
        try:
            if time.monotonic() - last_beat[0] >= settings.M2D_HEARTBEAT_SECONDS:
                last_beat[0] = time.monotonic()
                scheduling.beat(submission_id)
            return submission_cancelled(submission_id)
        finally:
            connection.close()

    return should_stop
