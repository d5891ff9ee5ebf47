"""Researchers never choose a user name (sign-up asks for none): the portal, its e-mails and its
messages greet and name them by the full name they gave, or else by their e-mail address."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts.services import researcher_create
from submissions.models import Submission
from submissions.notifications import status_changed
from tests.helpers import mail_text

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "pw-for-names-test-1"


def signed_in_as(page: str) -> str:
    return re.search(r'<span class="muted" id="signed-in-as">([^<]*)</span>', page).group(1)


@pytest.mark.parametrize(
    ("email", "full_name", "shown"),
    [("mara.j@example.org", "Mara Jansen", "Mara Jansen"), ("kees.v@example.org", "", "kees.v@example.org")],
    ids=["named", "unnamed"],
)
def test_greeted_by_the_name_they_gave_never_by_a_made_up_user_name(email, full_name, shown, mailbox):
    researcher = researcher_create(username="user8f3k2q", email=email, password=PASSWORD, full_name=full_name)
    client = Client()
    response = client.post("/accounts/login/", {"login": email, "password": PASSWORD}, follow=True)
    page = response.content.decode()
    assert f"Successfully signed in as {shown}." in page
    assert signed_in_as(page) == shown
    assert "user8f3k2q" not in client.get(reverse("accounts:profile")).content.decode()

    submission = Submission.objects.create(
        owner=researcher.user, archive="submissions/x.zip", archive_sha256="0" * 64, original_name="submission.zip"
    )
    status_changed(submission.pk, Submission.Status.RECEIVED)
    mail = mail_text(mailbox.wait_for(email, 1)[-1])
    assert mail.startswith(f"Hello {shown},")
    assert "user8f3k2q" not in mail
