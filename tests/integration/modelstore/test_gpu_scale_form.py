"""The model page's scale form asks for a GPU per worker; the panel says so, and the stop button
keeps what the deployment had."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hosts.facts import HostFacts
from hosts.services import host_report
from serving.models import Deployment

from .test_store_pages import registered, signed_in, text  # noqa: F401 (fixture)

pytestmark = [pytest.mark.django_db]


def gpu_host(name: str) -> None:
    host_report(
        facts=HostFacts(
            name=name,
            cpu_slots=2,
            gpu_ids=("0",),
            engine_ok=True,
            engine_problem="",
            disk_free_bytes=100 * 1024**3,
            disk_path="/srv/m2d/export-volumes",
        )
    )


def test_the_owner_asks_for_a_gpu_per_worker_on_the_model_page(registered, approved, settings):  # noqa: F811
    settings.M2D_QUEUE_OPS = "gpu-panel-tests"  # nobody reconciles
    owner = approved["owner"]
    first, _second = registered(owner)
    scale = reverse("modelstore:scale", args=["clam-malignancy", 1])
    form = {"min_workers": "1", "max_workers": "1", "gpu_asked": "1", "gpu": "on"}

    refused = text(signed_in(owner).post(scale, form, follow=True))
    assert "No host of this platform has GPU slots" in refused
    assert not Deployment.objects.filter(version=first).exists()

    gpu_host("gpu-1")
    scaled = text(signed_in(owner).post(scale, form, follow=True))
    assert "clam-malignancy version 1 scaled to 1–1 workers, a GPU each" in scaled
    assert Deployment.objects.get(version=first).gpu is True
    page = signed_in(owner).get(reverse("modelstore:model", args=["clam-malignancy"])).content.decode()
    assert '<input type="checkbox" name="gpu" checked>' in page
    assert "1 worker, a GPU each kept ready" in text(
        signed_in(owner).get(reverse("modelstore:model", args=["clam-malignancy"]))
    )

    signed_in(owner).post(scale, {"min_workers": "0", "max_workers": "0"})  # the stop button
    assert Deployment.objects.get(version=first).gpu is True
