"""Each download of a model's files from the store leaves one row that admins read in the admin
site: who, which version and file, when, how many bytes. A refused download leaves none: nothing
left the store, and the refusal is the 404 of a model that does not exist."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from modelstore import services
from modelstore.models import ModelDownload
from tests.helpers import sign_in_with_second_factor

from .conftest import FOLDER, PREDICT, WEIGHTS


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def rows() -> list[tuple]:
    return list(ModelDownload.objects.values_list("by__username", "version__number", "path", "files", "bytes"))


def test_a_download_leaves_one_row_admins_see_and_a_refused_one_none(released, approved):
    owner, other, outsider = approved["owner"], approved["other"], approved["outsider"]
    first = services.model_register(
        by=owner, submission=released(), paths=["model/"], name="clam-malignancy", visibility="approved"
    )
    second = services.model_register(by=owner, submission=released(), paths=["model/"], name="clam-malignancy")
    services.model_set_default(by=owner, model=first.model, version=2)
    services.model_version_retire(by=owner, version_obj=first, comment="superseded")
    researcher = signed_in(other)

    # Refused: a model the user may not see, a retired version of someone else's model, a file
    # the version does not have. Each answers 404, and nothing is recorded.
    refused = [
        signed_in(outsider).get(reverse("modelstore:download", args=["clam-malignancy", 2, "weights.pt"])),
        signed_in(outsider).get(reverse("modelstore:download_zip", args=["clam-malignancy", 2])),
        researcher.get(reverse("modelstore:download", args=["clam-malignancy", 1, "weights.pt"])),
        researcher.get(reverse("modelstore:download_zip", args=["clam-malignancy", 1])),
        researcher.get(reverse("modelstore:download", args=["clam-malignancy", 2, "notes.txt"])),
    ]
    assert [r.status_code for r in refused] == [404] * 5
    with pytest.raises(services.NotFound):  # the service refuses it too, whoever calls it
        services.model_download_record(by=outsider, version=second)
    assert rows() == []

    # One file: one row, with the bytes of that file.
    download = researcher.get(reverse("modelstore:download", args=["clam-malignancy", 2, "weights.pt"]))
    assert download.status_code == 200 and b"".join(download.streaming_content) == WEIGHTS
    assert rows() == [(other.username, 2, "weights.pt", 1, len(WEIGHTS))]
    row = ModelDownload.objects.get()
    assert row.version == second and row.at is not None

    # The whole version as a zip: one more row, with the bytes of all its files.
    archive = researcher.get(reverse("modelstore:download_zip", args=["clam-malignancy", 2]))
    with zipfile.ZipFile(io.BytesIO(b"".join(archive.streaming_content))) as files:
        assert sorted(files.namelist()) == ["m2d-model.json", "predict.py", "weights.pt"]
    model_bytes = sum(len(data) for path, data in FOLDER.items() if path.startswith("model/"))
    assert rows()[1:] == [(other.username, 2, "", 3, model_bytes)]

    # The owner's own download of the retired version is theirs to make, and recorded too.
    assert (
        signed_in(owner).get(reverse("modelstore:download", args=["clam-malignancy", 1, "predict.py"])).status_code
        == 200
    )
    assert rows()[2:] == [(owner.username, 1, "predict.py", 1, len(PREDICT))]

    # Admins read them in the admin site; researchers do not reach it.
    steward = get_user_model().objects.create_superuser("steward", "steward@hospital.example", "Staff-pass-1-xyz")
    admin = Client()
    sign_in_with_second_factor(admin, steward)
    page = admin.get(reverse("admin:modelstore_modeldownload_changelist"))
    assert page.status_code == 200
    listed = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.content.decode()))
    assert "3 model downloads" in listed
    assert "weights.pt" in listed and "all files (zip)" in listed and "predict.py" in listed
    assert other.username in listed and owner.username in listed
    assert str(len(WEIGHTS)) in listed
    assert researcher.get(reverse("admin:modelstore_modeldownload_changelist")).status_code == 302
