"""The model store's pages as researchers and staff meet them: the store with its search and metric
sort, a model's page (card, versions, aliases, metrics, provenance, downloads), registering a
version from a released submission, setting the default and retiring, and the staff list."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from django.test import Client
from django.urls import reverse

from modelstore import services
from modelstore.models import ModelAlias, ModelVersion, RegisteredModel
from tests.helpers import sign_in_with_second_factor

from .conftest import PREDICT, WEIGHTS


@pytest.fixture
def registered(released):
    """`owner`'s clam-malignancy with two versions (final auc 0.71, then 0.83), version 1 default."""

    def make(owner, name="clam-malignancy", aucs=(0.71, 0.83), visibility="approved"):
        versions = []
        for auc in aucs:
            submission = released(owner=owner)
            submission.metrics = {"test_auc": auc, "test_loss": 1 - auc}
            submission.save(update_fields=["metrics"])
            versions.append(
                services.model_register(
                    by=owner, submission=submission, paths=["model/"], name=name, visibility=visibility
                )
            )
        return versions

    return make


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_the_store_lists_what_each_user_may_see_searches_and_sorts_by_a_metric(registered, approved):
    owner, other, outsider = approved["owner"], approved["other"], approved["outsider"]
    registered(owner, "clam-malignancy", aucs=(0.71, 0.83))
    registered(other, "clam-density", aucs=(0.9,), visibility="private")
    registered(other, "toy-iris", aucs=(0.5,), visibility="approved")

    page = text(signed_in(owner).get(reverse("modelstore:list")))
    assert "clam-malignancy" in page and "toy-iris" in page
    assert "clam-density" not in page  # another researcher's private model is not there at all
    assert "Case-level malignancy from the four CLaM views." in page  # the card's summary
    # An unapproved account sees neither approved-only model.
    assert "clam-malignancy" not in text(signed_in(outsider).get(reverse("modelstore:list")))

    client = signed_in(owner)
    only_clam = text(client.get(reverse("modelstore:list"), {"dataset": "clam"}))
    assert "clam-malignancy" in only_clam and "toy-iris" not in only_clam
    by_owner = text(client.get(reverse("modelstore:list"), {"owner": other.username}))
    assert "toy-iris" in by_owner and "clam-malignancy" not in by_owner
    assert "No model you may see matches" in text(client.get(reverse("modelstore:list"), {"task": "nothing"}))

    # Sorting by a metric compares each model's default version: clam-malignancy's is version 1.
    best_first = client.get(reverse("modelstore:list"), {"sort": "-metric:test_auc"}).content.decode()
    assert best_first.index("clam-malignancy") < best_first.index("toy-iris")
    assert "0.7100" in best_first
    worst_first = client.get(reverse("modelstore:list"), {"sort": "metric:test_auc"}).content.decode()
    assert worst_first.index("toy-iris") < worst_first.index("clam-malignancy")
    # The sort menu offers the metrics the models have.
    assert 'value="-metric:test_loss"' in best_first


def test_the_model_page_shows_card_versions_aliases_metrics_and_provenance(registered, approved):
    owner, other = approved["owner"], approved["other"]
    first, second = registered(owner)
    services.model_alias_set(by=owner, model=first.model, alias="best", version=2)
    url = reverse("modelstore:model", args=["clam-malignancy"])

    page = signed_in(owner).get(url)
    body, shown = page.content.decode(), text(page)
    assert "version 1" in shown  # the default, whose card is shown
    for view in ("LCC", "LMLO", "RCC", "RMLO"):
        assert f"<code>{view}</code>" in body
    assert "predict.py:Model" in shown and "CC-BY-4.0" in shown and "research use only" in shown
    assert "approved researchers" in shown  # who may see it
    assert re.search(r'data-version="2".*?badge alias">best<', body, re.S)
    assert 'aria-label="test_auc per version"' in body  # one chart per metric across versions
    assert reverse("exports:provenance", args=[first.submission_id]) in body
    assert "Set default" in body and "Register a new version" in body

    # Another approved researcher sees the model and may download it, but neither the
    # provenance record nor the buttons.
    viewer = signed_in(other).get(url).content.decode()
    assert reverse("exports:provenance", args=[first.submission_id]) not in viewer
    assert "Set default" not in viewer and "Register a new version" not in viewer
    download = signed_in(other).get(reverse("modelstore:download", args=["clam-malignancy", 2, "weights.pt"]))
    assert download.status_code == 200 and b"".join(download.streaming_content) == WEIGHTS
    archive = signed_in(other).get(reverse("modelstore:download_zip", args=["clam-malignancy", 2]))
    with zipfile.ZipFile(io.BytesIO(b"".join(archive.streaming_content))) as files:
        assert sorted(files.namelist()) == ["m2d-model.json", "predict.py", "weights.pt"]
        assert files.read("predict.py") == PREDICT

    # A researcher who may not see it gets the same answer as for a model that does not exist.
    assert signed_in(approved["outsider"]).get(url).status_code == 404
    assert signed_in(owner).get(reverse("modelstore:model", args=["clam-nothing"])).status_code == 404


def test_the_owner_registers_a_version_sets_it_default_and_retires_the_old_one(registered, released, approved):
    owner = approved["owner"]
    registered(owner, aucs=(0.7,))
    submission = released(owner=owner)
    client = signed_in(owner)
    url = reverse("modelstore:model", args=["clam-malignancy"])

    form = client.get(url, {"submission": submission.pk}).content.decode()
    # The folder holding the card is offered ticked; files held back by the reviewer are not offered.
    assert re.search(r'value="model/" checked', form)
    assert "scratch.bin" not in form and "notes.txt" in form
    done = client.post(
        reverse("modelstore:register"),
        {"submission": submission.pk, "name": "clam-malignancy", "paths": ["model/"], "label": "2.0", "next": url},
        follow=True,
    )
    assert "Registered clam-malignancy version 2." in text(done)
    version = ModelVersion.objects.get(model__name="clam-malignancy", number=2)
    assert version.label == "2.0" and sorted(version.files.values_list("path", flat=True)) == [
        "m2d-model.json",
        "predict.py",
        "weights.pt",
    ]

    done = client.post(reverse("modelstore:set_default", args=["clam-malignancy", 2]), {"next": url}, follow=True)
    assert "Version 2 is now the default of clam-malignancy." in text(done)
    assert ModelAlias.objects.get(model__name="clam-malignancy", name="default").version == version

    alias_url = reverse("modelstore:alias", args=["clam-malignancy"])
    pointed = client.post(alias_url, {"alias": "best", "version": "2", "next": "https://elsewhere.example/"})
    assert pointed.url == url  # back to the model's page, never to another site
    assert ModelAlias.objects.get(model__name="clam-malignancy", name="best").version == version
    assert "Choose the version" in text(client.post(alias_url, {"alias": "best", "version": ""}, follow=True))
    client.post(alias_url, {"alias": "best", "delete": "1"})
    assert not ModelAlias.objects.filter(model__name="clam-malignancy", name="best").exists()

    # The default cannot be retired while another version is registered; the old one can.
    refused = client.post(reverse("modelstore:retire", args=["clam-malignancy", 2]), follow=True)
    assert "make another version the default" in text(refused)
    client.post(reverse("modelstore:retire", args=["clam-malignancy", 1]), {"comment": "superseded"})
    assert ModelVersion.objects.get(model__name="clam-malignancy", number=1).state == "retired"

    # A retired version's files stay for its owner, not for other viewers.
    file_url = reverse("modelstore:download", args=["clam-malignancy", 1, "weights.pt"])
    assert client.get(file_url).status_code == 200
    assert signed_in(approved["other"]).get(file_url).status_code == 404


def test_registering_says_what_to_fix_and_others_cannot_change_a_model(registered, released, approved):
    owner, other = approved["owner"], approved["other"]
    registered(owner, aucs=(0.7,))
    submission = released(owner=owner)
    client = signed_in(owner)

    bad = client.post(
        reverse("modelstore:register"),
        {"submission": submission.pk, "name": "Clam Model", "paths": ["model/"]},
        follow=True,
    )
    assert "Name the model &lt;dataset&gt;-&lt;task&gt;" in bad.content.decode()
    missing = client.post(
        reverse("modelstore:register"),
        {"submission": submission.pk, "name": "clam-other", "paths": ["scratch.bin"]},
        follow=True,
    )
    assert "has no released file" in text(missing)
    assert not RegisteredModel.objects.filter(name="clam-other").exists()

    stranger = signed_in(other)
    refused = stranger.post(reverse("modelstore:set_default", args=["clam-malignancy", 1]), follow=True)
    assert "Only the owner of clam-malignancy or staff can change it." in text(refused)
    stranger.post(reverse("modelstore:retire", args=["clam-malignancy", 1]))
    assert ModelVersion.objects.get(model__name="clam-malignancy", number=1).state == "registered"
    # Someone else's submission is not theirs to register from.
    assert (
        stranger.post(
            reverse("modelstore:register"), {"submission": submission.pk, "name": "clam-x", "paths": ["model/"]}
        ).status_code
        == 404
    )


def test_staff_list_every_model_and_version_after_a_second_factor(registered, approved):
    owner, other = approved["owner"], approved["other"]
    registered(owner, aucs=(0.7, 0.8))
    registered(other, "clam-density", aucs=(0.9,), visibility="private")
    url = reverse("modelstore:staff")

    assert signed_in(owner).get(url).status_code == 404  # researchers are not told the page exists
    password_only = signed_in(approved["admin1"]).get(url)
    assert password_only.status_code == 302  # a staff session without a second factor is sent to get one

    client = Client()
    sign_in_with_second_factor(client, approved["admin1"])
    page = client.get(url)
    body = page.content.decode()
    assert page.status_code == 200
    assert 'data-model="clam-density" data-version="1"' in body  # private models too
    assert 'data-model="clam-malignancy" data-version="2"' in body
    assert "Registered" in text(page)
    # The store page offers staff the way there.
    assert url in client.get(reverse("modelstore:list")).content.decode()


def test_the_menu_leads_to_the_store(approved):
    page = signed_in(approved["owner"]).get(reverse("submissions:list")).content.decode()
    assert f'href="{reverse("modelstore:list")}">Models<' in page
