"""A build worker's frozen job (runner.jobs.build_job_for) and how the facts a build reports are
recorded (submissions.services.build_begin, build_facts_record), on the test database."""

import pytest
from django.contrib.auth import get_user_model

from runner import docker_api
from runner.jobs import build_job_for
from submissions.facts import BuildFacts
from submissions.models import Submission
from submissions.services import build_begin, build_facts_record, submission_cancel

S = Submission.Status


@pytest.fixture
def received(db):
    owner = get_user_model().objects.create_user("builder", "builder@example.org")
    return Submission.objects.create(owner=owner, archive="submissions/b.zip", archive_sha256="0" * 64)


@pytest.fixture
def building(received):
    assert build_begin(submission_id=received.pk)
    received.refresh_from_db()
    return received


def test_the_job_says_what_to_build_and_with_which_limits(received, settings):
    settings.M2D_USE_GPU, settings.M2D_BUILD_MEMORY, settings.M2D_BUILD_PIDS = False, "3g", 77
    job = build_job_for(received.pk)
    assert job.submission_id == received.pk and job.image_id == ""
    assert job.spec.dockerfile.name == "execute_code-without-gpu" and job.spec.memory == "3g"
    assert job.spec.build_args["M2D_BUILD_PIDS"] == "77"
    assert job.spec.labels[docker_api.LABEL_SUBMISSION] == str(received.pk)
    assert docker_api.LABEL_SLOT not in job.spec.labels  # a run's slot is set when a run takes the image
    assert job.spec.log_path.name == "build.log"
    with pytest.raises(AttributeError):
        job.image_id = "changed"  # frozen


def test_a_build_begins_once(received):
    assert build_begin(submission_id=received.pk)
    assert not build_begin(submission_id=received.pk)  # a duplicate message
    assert Submission.objects.get(pk=received.pk).status == S.BUILDING


def test_an_image_queues_the_submission(building):
    assert build_facts_record(facts=BuildFacts(building.pk, image_id="sha256:abc", log_tail="Successfully built\n"))
    building.refresh_from_db()
    assert (building.status, building.image_id, building.build_log_tail) == (
        S.QUEUED,
        "sha256:abc",
        "Successfully built\n",
    )


def test_a_failed_build_is_the_researcher_s_and_a_platform_fault_is_not(building, db):
    build_facts_record(
        facts=BuildFacts(building.pk, failure_stage="build", reason="No matching distribution", log_tail="ERROR\n")
    )
    building.refresh_from_db()
    assert (building.status, building.failure_stage, building.reason) == (S.FAILED, "build", "No matching distribution")

    other = Submission.objects.create(owner=building.owner, archive="submissions/c.zip", archive_sha256="1" * 64)
    build_begin(submission_id=other.pk)
    build_facts_record(
        facts=BuildFacts(other.pk, failure_stage="infrastructure", reason="The platform could not build")
    )
    other.refresh_from_db()
    assert (other.status, other.failure_stage) == (S.FAILED, "infrastructure")


def test_a_build_past_its_time_limit_times_out(building):
    build_facts_record(facts=BuildFacts(building.pk, timed_out=True, reason="longer than its limit of 60 s"))
    building.refresh_from_db()
    assert (building.status, building.failure_stage) == (S.TIMED_OUT, "build")


def test_an_image_made_after_a_cancel_is_not_wanted(building):
    submission_cancel(by=building.owner, submission=building)
    assert not build_facts_record(facts=BuildFacts(building.pk, image_id="sha256:late"))
    building.refresh_from_db()
    assert (building.status, building.image_id) == (S.CANCELLED, "")
