"""The reconciler against the real engine: what a finished submission left behind goes."""

import io
import tarfile

import pytest
from django.contrib.auth import get_user_model

from modelstore.models import ModelVersion, RegisteredModel
from runner import docker_api
from runner.reconciler import reconcile
from serving.models import Deployment
from submissions.models import Submission

pytestmark = pytest.mark.docker


def labelled_image(settings, submission_id: int) -> str:
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = f"FROM {settings.M2D_FORWARDER_IMAGE}\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    context.seek(0)
    image, _ = docker_api.client().images.build(
        fileobj=context,
        custom_context=True,
        rm=True,
        forcerm=True,
        tag=f"m2d-reconciler-test:{submission_id}",
        labels={docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE, docker_api.LABEL_SUBMISSION: str(submission_id)},
    )
    return image.id


def test_orphans_of_finished_submissions_are_removed(db, settings):
    owner = get_user_model().objects.create_user("orphan", "orphan@example.org")
    finished = Submission.objects.create(owner=owner, status="failed", archive="x.zip", archive_sha256="0" * 64)
    queued = Submission.objects.create(owner=owner, status="queued", archive="y.zip", archive_sha256="1" * 64)
    # An interrupted build, sent to be built again: the new build may stand on its first image.
    received = Submission.objects.create(owner=owner, status="received", archive="z.zip", archive_sha256="2" * 64)
    finished_image, queued_image = labelled_image(settings, finished.pk), labelled_image(settings, queued.pk)
    received_image = labelled_image(settings, received.pk)
    container = docker_api.client().containers.create(
        settings.M2D_FORWARDER_IMAGE,
        labels={docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE, docker_api.LABEL_SUBMISSION: str(finished.pk)},
    )
    # A finished submission whose model version is deployed: its image and its serving worker stay.
    served = Submission.objects.create(owner=owner, status="succeeded", archive="s.zip", archive_sha256="3" * 64)
    model = RegisteredModel.objects.create(name="served", owner=owner, dataset="toy", task="scoring")
    version = ModelVersion.objects.create(model=model, number=1, submission=served, created_by=owner)
    Deployment.objects.create(version=version, min_workers=1, max_workers=1)
    served_image = labelled_image(settings, served.pk)
    worker = docker_api.client().containers.create(
        served_image, labels={docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE, docker_api.LABEL_ROLE: "serve"}
    )
    try:
        reconcile()
        assert not docker_api.image_exists(finished_image)
        assert docker_api.image_exists(queued_image)  # still needed
        assert docker_api.image_exists(received_image)
        assert not docker_api.run_exists(container.name)
        assert docker_api.image_exists(served_image) and docker_api.run_exists(worker.name)
    finally:
        worker.remove(force=True)
        docker_api.remove_image(queued_image)
        docker_api.remove_image(received_image)
        docker_api.remove_image(finished_image)
        docker_api.remove_image(served_image)
