"""Fixtures of the airlock tests: export storage (local folder, or S3 through a real moto
server started here on 127.0.0.1), users, and finished submissions with crafted exports."""

from __future__ import annotations

import hashlib
import os
import re
import time

import boto3
import pytest
from django.conf import settings as django_settings

from tests.conftest import free_port

BUCKET = "m2d-exports-test"
S3_KEYS = {"access_key": "m2d-test-key", "secret_key": "m2d-test-secret"}


@pytest.fixture(scope="session")
def s3_server():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEYS["access_key"],
        aws_secret_access_key=S3_KEYS["secret_key"],
    )


@pytest.fixture(params=["local", "s3"])
def export_storage(request, settings, tmp_path):
    """Each test that takes this runs once on the local export root and once on S3."""
    settings.M2D_EXPORT_ROOT = tmp_path / "exports"
    settings.M2D_EXPORT_ROOT.mkdir()
    settings.VAR_DIR = tmp_path / "var"
    if request.param == "local":
        settings.STORAGES = {
            **django_settings.STORAGES,
            "exports": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(settings.M2D_EXPORT_ROOT)},
            },
        }
        yield "local"
        return
    endpoint = request.getfixturevalue("s3_server")
    client = s3_client(endpoint)
    bucket = f"{BUCKET}-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
    client.create_bucket(Bucket=bucket)
    settings.STORAGES = {
        **django_settings.STORAGES,
        "exports": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "location": "exports",
                "endpoint_url": endpoint,
                "region_name": "us-east-1",
                "default_acl": None,
                "file_overwrite": True,
                "signature_version": "s3v4",
                **S3_KEYS,
            },
        },
    }
    settings.S3_TEST_BUCKET = bucket
    settings.S3_TEST_ENDPOINT = endpoint
    yield "s3"


def stored_keys(settings) -> list[str]:
    """Every key that exists in the export storage (bucket objects, or files under the root)."""
    if getattr(settings, "S3_TEST_BUCKET", None) and "S3Storage" in settings.STORAGES["exports"]["BACKEND"]:
        listing = s3_client(settings.S3_TEST_ENDPOINT).list_objects_v2(Bucket=settings.S3_TEST_BUCKET)
        return sorted(o["Key"].removeprefix("exports/") for o in listing.get("Contents", []))
    root = settings.M2D_EXPORT_ROOT
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def users(transactional_db):
    """A researcher who owns the export, another researcher, and two admins (all with e-mail)."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    tag = f"{os.getpid()}{int(time.time() * 1000) % 10**6}"

    def make(name, **extra):
        return User.objects.create_user(
            username=f"{name}{tag}", email=f"{name}{tag}@example.org", password=f"pw-{name}-{tag}-long", **extra
        )

    return {
        "owner": make("owner"),
        "other": make("other"),
        "admin1": make("admin1", is_staff=True),
        "admin2": make("admin2", is_staff=True),
    }


def seen_on_page(client, export) -> dict[str, str]:
    """The files the review page shows as waiting, as its form posts them back (seen-<id>: sha256)."""
    from django.urls import reverse

    page = client.get(reverse("exports:review", args=[export.pk])).content.decode()
    return dict(re.findall(r'name="(seen-\d+)" value="([0-9a-f]{64})"', page))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def finished_submission(settings):
    """A succeeded submission whose run wrote `files` to its export folder, collected as after a run."""
    from exports.services import export_collect
    from submissions.models import Submission

    def make(owner, files: dict[str, bytes], **fields):
        submission = Submission.objects.create(
            owner=owner,
            status=fields.pop("status", Submission.Status.SUCCEEDED),
            archive="submissions/crafted.zip",
            archive_sha256="0" * 64,
            exit_code=0,
            **fields,
        )
        folder = settings.M2D_EXPORT_ROOT / str(submission.pk)
        for path, content in files.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(content)
        export_collect(submission=submission, folder=folder)
        submission.refresh_from_db()
        return submission

    return make
