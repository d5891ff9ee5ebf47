"""A submission that tries to carry its run's output out through the provenance record, which its
owner downloads without review: a package of its requirements tries, in the build, to turn /opt
into a link to /mnt/export, so that in the run /opt/m2d (where the image's pip freeze lies) would
be the run's own export folder. Builds run as a non-root builder, and provenance is read from the
image at its build: the record holds the image's real freeze and nothing of the run."""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from tests.conftest import WorkerPool
from tests.helpers import upload, wait_finished
from tests.package_index import TestIndex

from .test_hostile_runs import PAYLOADS

pytestmark = [pytest.mark.docker, pytest.mark.services]
HOOK = PAYLOADS / "freeze_planter_hook.py"
MARKER = "RUN-OUTPUT-8f1c2e"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"


def planter_wheel(folder: Path) -> Path:
    """freeze-planter 1.0: the hook, and a .pth file that imports it at every start of Python."""
    files = {
        "freeze_planter_hook.py": HOOK.read_bytes(),
        "freeze_planter.pth": b"import freeze_planter_hook\n",
        "freeze_planter-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: freeze-planter\nVersion: 1.0\n",
        "freeze_planter-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: m2d-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(_record_line(name, data) for name, data in files.items())
    record += "freeze_planter-1.0.dist-info/RECORD,,\n"
    path = folder / "freeze_planter-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("freeze_planter-1.0.dist-info/RECORD", record)
    return path


@pytest.fixture(scope="module")
def planter_pool(django_db_setup, smtp_server):
    """Build workers whose package index holds freeze-planter, as a public index would."""
    index = TestIndex(settings.M2D_PACKAGE_INDEX_URL)
    with tempfile.TemporaryDirectory() as folder:
        wheel = planter_wheel(Path(folder))
        index.upload(wheel.name, wheel.read_bytes(), "freeze-planter", "1.0")
    overrides = {"M2D_PACKAGE_INDEX_URL": index.simple_url}
    pool = WorkerPool(smtp_server.port, prefix="planter-", overrides=overrides).start()
    yield pool
    pool.stop()
    index.delete()


def test_provenance_holds_the_images_freeze_not_the_runs_output(client, planter_pool, settings, make_researcher):
    planter_pool.use(settings)
    researcher = make_researcher("planter")
    requirements = "mlflow==3.17.2\nfreeze-planter==1.0\n"
    main_py = "print('main.py runs: the planted hook found no way in')\n"
    submission_id = upload(client, researcher.user, {"main.py": main_py, "requirements.txt": requirements})
    submission = wait_finished(submission_id)
    assert submission.status == "succeeded", submission.reason + submission.build_log_tail + submission.run_log_tail
    # The hook ran in the build (pip freeze imports it) as the non-root builder: /opt stayed the
    # image's own, so in the run /opt/m2d is not the export folder and nothing was planted.
    assert "main.py runs" in submission.run_log_tail and "bytes of data set" not in submission.run_log_tail
    assert not (settings.M2D_EXPORT_ROOT / str(submission_id) / "m2d").exists()

    client.force_login(researcher.user)
    response = client.get(reverse("exports:provenance", args=[submission_id]))
    assert response.status_code == 200
    body = response.content.decode()
    record = json.loads(body)
    run_output = body.count(MARKER)
    assert run_output == 0, f"provenance.json ({len(body)} bytes) carries {run_output} lines of the run's output"
    assert len(body) < 256 * 1024
    resolved, runtime = record["code"]["requirements_resolved"], record["code"]["runtime_packages"]
    assert "mlflow==3.17.2" in resolved and "freeze-planter==1.0" in resolved
    assert "numpy==" in runtime
    assert record["capture_problems"] == []
