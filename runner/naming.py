"""What a submission's things are called on the engine and on disk."""

from __future__ import annotations

from django.conf import settings

from submissions.logpolicy import log_dir
from submissions.models import Submission

from . import docker_api

__all__ = ["container_name", "image_tag", "labels", "labels_for_build", "log_dir", "run_labels"]


def image_tag(submission_id: int) -> str:
    return f"m2d-submission:{settings.M2D_INSTANCE}-{submission_id}"


def container_name(submission_id: int) -> str:
    return f"m2d-{settings.M2D_INSTANCE}-run-{submission_id}"


def labels(submission: Submission, slot: str = "") -> dict[str, str]:
    return run_labels(submission.pk, submission.owner.username, slot)


def run_labels(submission_id: int, owner_username: str, slot: str = "") -> dict[str, str]:
    return {
        docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE,
        docker_api.LABEL_SUBMISSION: str(submission_id),
        docker_api.LABEL_SLOT: slot,
        "org.m2d.owner": owner_username,
    }


def labels_for_build(submission_id: int) -> dict[str, str]:
    """Labels of what a build starts beside it (its door to the package index)."""
    return {
        docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE,
        docker_api.LABEL_SUBMISSION: str(submission_id),
        docker_api.LABEL_ROLE: "door",
    }
