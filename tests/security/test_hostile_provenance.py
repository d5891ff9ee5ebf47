"""A submission that tries to carry its run's output out through the provenance record, which its
owner downloads without review: its build turns /opt into a link to /mnt/export, so that in the
run /opt/m2d (where the image's pip freeze lies) is the run's own export folder, and the run
writes data set bytes there. The record must hold the image's real freeze and nothing of the run."""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import threading
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from tests.helpers import upload, wait_finished

from .test_hostile_runs import PAYLOADS, docker_bridge_address

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


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def package_index(tmp_path):
    """A folder of packages served on the host, where builds reach it: a package index of the
    researcher's choosing, as any public index is."""
    planter_wheel(tmp_path)
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"{docker_bridge_address()}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_provenance_holds_the_images_freeze_not_the_runs_output(client, celery_workers, make_researcher, package_index):
    researcher = make_researcher("planter")
    requirements = (
        f"--no-index\n--find-links http://{package_index}/\n--trusted-host {package_index}\n"
        "mlflow==3.17.2\nfreeze-planter==1.0\n"
    )
    main_py = "print('main.py is not what runs: the planted hook is')\n"
    submission_id = upload(client, researcher.user, {"main.py": main_py, "requirements.txt": requirements})
    submission = wait_finished(submission_id)
    assert submission.status == "succeeded", submission.reason + submission.build_log_tail + submission.run_log_tail
    assert "bytes of data set at /opt/m2d" in submission.run_log_tail

    # The attack took: what the run wrote at /opt/m2d landed in its export, as run output does.
    planted = settings.M2D_EXPORT_ROOT / str(submission_id) / "m2d" / "submission-freeze.txt"
    assert planted.stat().st_size == 3 * 1024**2 and planted.read_text().startswith(MARKER)

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
