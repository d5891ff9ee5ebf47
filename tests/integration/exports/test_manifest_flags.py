"""After a run, every exported file is in the manifest with its type and the flags a reviewer must
see; a file copied from the data set is caught through the data set's hash index."""

from __future__ import annotations

import collections
import io
import json
import pickle
import shutil
import tarfile
import zipfile

import numpy as np
import pytest
from django.urls import reverse

from exports.dataset_index import dataset_index
from exports.models import ExportFile
from tests.helpers import sign_in_with_second_factor

from .conftest import sha256

DATASET_IMAGE = "CLaM-sample/S1-A1/LCC/1.png"


def torch_like_checkpoint() -> bytes:
    """A checkpoint laid out as torch.save writes it (a zip with data.pkl and tensor storages)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/data.pkl", pickle.dumps(collections.OrderedDict(weight=[1.0, 2.0]), protocol=2))
        archive.writestr("model/data/0", b"\x00" * 4096)
        archive.writestr("model/version", b"3\n")
    return buffer.getvalue()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture
def crafted_files(settings):
    dataset_png = (settings.M2D_DATASET_DIR / DATASET_IMAGE).read_bytes()
    return {
        "copied/1.png": dataset_png,
        "metrics.csv": b"epoch,loss,auc\n" + b"".join(f"{i},{1 / (i + 1):.4f},0.{i}\n".encode() for i in range(40)),
        "embeddings.npy": npy(np.zeros((12, 7, 3), dtype=np.float32)),
        "model.pt": torch_like_checkpoint(),
        "bundle.tar.gz": tar_gz({"a.txt": b"alpha", "nested/b.bin": b"\x01" * 300}),
        "notes/readme.txt": b"trained for 40 epochs\n",
    }


def test_manifest_types_flags_and_total(settings, export_storage, users, finished_submission, crafted_files, client):
    settings.M2D_EXPORT_LARGE_FILE_BYTES = max(len(c) for c in crafted_files.values())
    crafted_files["weights.bin"] = bytes(range(256)) * (settings.M2D_EXPORT_LARGE_FILE_BYTES // 256 + 1)
    submission = finished_submission(users["owner"], crafted_files)
    export = submission.export
    entries = {f.path: f for f in export.entries.all()}

    assert sorted(entries) == sorted(crafted_files)
    for path, content in crafted_files.items():
        assert (entries[path].size, entries[path].sha256) == (len(content), sha256(content))
    assert export.total_bytes == sum(len(c) for c in crafted_files.values())
    assert {p: f.kind for p, f in entries.items()} == {
        "copied/1.png": "image",
        "metrics.csv": "csv",
        "embeddings.npy": "array",
        "model.pt": "pytorch",
        "bundle.tar.gz": "archive",
        "weights.bin": "binary",
        "notes/readme.txt": "text",
    }
    assert entries["copied/1.png"].flags == ["dataset_copy", "image"]
    assert entries["copied/1.png"].dataset_matches == [DATASET_IMAGE]
    assert entries["embeddings.npy"].flags == ["array"]
    assert entries["model.pt"].flags == ["pickle"]
    assert entries["bundle.tar.gz"].flags == ["archive"]
    assert entries["weights.bin"].flags == ["large"]
    assert entries["notes/readme.txt"].flags == [] and entries["metrics.csv"].flags == []
    assert export.dataset_fingerprint == dataset_index().fingerprint

    # The reviewer sees all of it, with previews read without trusting the files.
    sign_in_with_second_factor(client, users["admin1"])
    page = client.get(reverse("exports:review", args=[export.pk])).content.decode()
    assert "identical to a data set file" in page and DATASET_IMAGE in page
    assert 'src="data:image/png;base64,' in page  # the thumbnail
    assert "12 × 7 × 3" in page and "float32" in page  # .npy header only
    assert "collections.OrderedDict" in page and "model/data/0" in page  # pickle imports, zip entries
    assert "epoch,loss,auc" in page and "18,0.0526" in page and "19,0.0500" not in page  # the first 20 lines
    assert "nested/b.bin" in page  # archive listing
    assert "large file" in page


def test_npy_preview_never_loads_object_arrays(settings, export_storage, users, finished_submission):
    """An object array would need unpickling: the header is read, the data never."""
    buffer = io.BytesIO()
    np.save(buffer, np.array([None, "P1-secret"], dtype=object), allow_pickle=True)
    payload = buffer.getvalue()
    submission = finished_submission(users["owner"], {"objects.npy": payload})
    entry = submission.export.entries.get()
    facts = dict(entry.preview["facts"])
    assert facts["dtype"] == "object" and "not loaded" in facts["warning"]
    assert "P1-secret" not in json.dumps(entry.preview)


def test_dataset_index_is_kept_and_rebuilt_when_the_dataset_changes(settings, tmp_path):
    dataset = tmp_path / "dataset"
    shutil.copytree(settings.M2D_DATASET_DIR / "CLaM-sample" / "S1-A1", dataset / "S1-A1")
    index_dir = tmp_path / "index"

    first = dataset_index(dataset, index_dir)
    stored = sorted(p.name for p in index_dir.glob("*.json"))
    assert stored == [f"{first.stat_fingerprint}.json"]
    assert first.file_count == 8
    png = (dataset / "S1-A1" / "RCC" / "1.png").read_bytes()
    assert first.matches(sha256(png)) == ["S1-A1/RCC/1.png"]
    assert dataset_index(dataset, index_dir) is first  # no rebuild while nothing changed

    (dataset / "S1-A1" / "RCC" / "2.csv").write_bytes(b"Patient_Id;Age\nP1;51\n")
    second = dataset_index(dataset, index_dir)
    assert second.fingerprint != first.fingerprint and second.file_count == 9
    assert second.matches(sha256(b"Patient_Id;Age\nP1;51\n")) == ["S1-A1/RCC/2.csv"]
    assert sorted(p.name for p in index_dir.glob("*.json")) == [f"{second.stat_fingerprint}.json"]


def test_an_empty_export_has_nothing_to_review(settings, export_storage, users, finished_submission, client):
    submission = finished_submission(users["owner"], {})
    assert submission.export.entries.count() == 0 and submission.export.total_bytes == 0
    client.force_login(users["owner"])
    response = client.post(
        reverse("exports:request", args=[submission.pk]), {"justification": "I need the model weights."}, follow=True
    )
    assert "There is nothing left to release" in response.content.decode()
    assert submission.export.entries.filter(state=ExportFile.State.HELD).count() == 0
