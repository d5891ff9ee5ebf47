"""The page a new researcher waits on says who was told, and says so only when someone was."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from accounts.models import Researcher

pytestmark = pytest.mark.django_db


def waiting_page(client) -> str:
    user = get_user_model().objects.create_user("waits", "waits@example.org", "a-long-password-1")
    Researcher.objects.create(user=user, status=Researcher.Status.PENDING)
    client.force_login(user)
    return client.get(reverse("accounts:profile")).content.decode()


def test_without_an_admin_nobody_is_said_to_be_told(client):
    get_user_model().objects.create_user("staff-no-mail", "", "pw", is_staff=True)  # no address to mail
    page = waiting_page(client)
    assert "have been told" not in page
    assert "no admin account yet, so nobody has been told" in page and "manage.py create_staff" in page


def test_with_an_admin_the_researcher_reads_that_they_were_told(client):
    get_user_model().objects.create_user("steward", "steward@example.org", "pw", is_staff=True)
    page = waiting_page(client)
    assert "they have been told that you are waiting" in page and 'id="no-admin"' not in page
