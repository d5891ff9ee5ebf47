"""Clients of the REST API as a program meets it: token auth over HTTP, nothing forced."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.services import api_token_create


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(by=user).key}")
    return client


@pytest.fixture
def api_for():
    """An API client that signs in with `user`'s token, made on the account page's service."""
    return token_client


@pytest.fixture
def row():
    """A submission row in a given state, without a build (for the permission boundaries)."""
    from submissions.models import Submission, SubmissionEvent

    def factory(owner, status="queued", **fields):
        submission = Submission.objects.create(
            owner=owner, status=status, archive="submissions/none.zip", archive_sha256="0" * 64, **fields
        )
        SubmissionEvent.objects.create(submission=submission, from_status="", to_status=status)
        return submission

    return factory
