"""The serving panel of a model's page: each version's deployment (workers kept ready, ready,
starting, failed, the last cold start), the owner's and staff's scale form, which goes through
the serving service, and the lines that ask the shown version, with the inputs of its card."""

from __future__ import annotations

import pytest
from django.urls import reverse

from serving.models import Deployment, ServeWorker

from .test_store_pages import registered, signed_in, text  # noqa: F401 (fixture)

pytestmark = [pytest.mark.django_db]


def test_the_owner_scales_a_version_and_sees_its_workers(registered, approved, settings):  # noqa: F811
    settings.M2D_QUEUE_OPS = "serving-panel-tests"  # nobody reconciles: the test plays the workers' part
    owner, other = approved["owner"], approved["other"]
    first, _second = registered(owner)
    url = reverse("modelstore:model", args=["clam-malignancy"])

    page = text(signed_in(owner).get(url))
    assert page.count("not deployed") == 3  # each version's row, and the panel of the shown one
    assert "How to ask it" in page
    assert "m2d predict clam-malignancy LCC=lcc.png LMLO=lmlo.png RCC=rcc.png RMLO=rmlo.png" in page
    assert f"curl --user {owner.email}:TOKEN http://testserver/predictions/clam-malignancy -F LCC=@lcc.png" in page

    scaled = signed_in(owner).post(
        reverse("modelstore:scale", args=["clam-malignancy", 1]), {"min_workers": "1", "max_workers": "2"}, follow=True
    )
    assert "clam-malignancy version 1 scaled to 1–2 workers" in text(scaled)
    deployment = Deployment.objects.get(version=first)
    assert (deployment.min_workers, deployment.max_workers, deployment.updated_by) == (1, 2, owner)
    assert deployment.events.filter(by=owner, comment__contains="1–2").exists()

    ServeWorker.objects.create(deployment=deployment, state=ServeWorker.State.READY)
    ServeWorker.objects.create(deployment=deployment, state=ServeWorker.State.FAILED, reason="out of memory")
    Deployment.objects.filter(pk=deployment.pk).update(last_cold_start_seconds=2.46)
    row = text(signed_in(owner).get(url)).split("Serving version 1")[1]
    assert "1 ready" in row and "1 failed" in row and "1–2 workers" in row and "cold start 2.5 s" in row
    assert "Last failure: out of memory" in row

    # Another researcher sees the deployment and how to ask it, but no scale form, and cannot scale.
    viewer = signed_in(other).get(url).content.decode()
    assert "1 ready" in viewer and 'id="scale-form"' not in viewer
    refused = signed_in(other).post(
        reverse("modelstore:scale", args=["clam-malignancy", 1]), {"min_workers": "0"}, follow=True
    )
    assert "Only the model&#x27;s owner or staff may scale it." in refused.content.decode()
    assert Deployment.objects.get(version=first).min_workers == 1

    # What to fix is said; stopping sets both counts to 0.
    bad = signed_in(owner).post(
        reverse("modelstore:scale", args=["clam-malignancy", 1]), {"min_workers": "2", "max_workers": "1"}, follow=True
    )
    assert "max_worker cannot be less than min_worker." in text(bad)
    stopped = signed_in(owner).post(
        reverse("modelstore:scale", args=["clam-malignancy", 1]), {"min_workers": "0", "max_workers": "0"}, follow=True
    )
    assert "clam-malignancy version 1 is no longer deployed" in text(stopped)


def test_a_version_other_than_the_default_is_asked_by_number(registered, approved):  # noqa: F811
    owner = approved["owner"]
    registered(owner)
    page = text(signed_in(owner).get(reverse("modelstore:model", args=["clam-malignancy"]) + "?version=2"))
    assert "m2d predict clam-malignancy --version 2 LCC=lcc.png" in page
    assert "/predictions/clam-malignancy/2 -F LCC=@lcc.png" in page
