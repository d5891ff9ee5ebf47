"""Every hostile archive, through the portal and the pre-flight command: refused with a message
that says what to fix, and nothing left behind (no file, no row, no task, no e-mail)."""

import io
import stat
import subprocess
import sys
import zipfile

import pytest
from django.conf import settings
from django.urls import reverse

from submissions.models import Submission, SubmissionEvent
from tests.unit.test_intake import (
    MAIN_PY,
    REQUIREMENTS,
    Raw,
    good_files,
    good_raw,
    local_header,
    make_zip,
    nest,
    raw_zip,
    zeros_deflated,
)


def too_many_files() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("main.py", MAIN_PY)
        zf.writestr("requirements.txt", REQUIREMENTS)
        for i in range(10_001):
            zf.writestr(f"data/{i}.txt", b"")
    return buf.getvalue()


def overlapping() -> bytes:
    inner = Raw("b.bin", b"B" * 100)
    outer = Raw("a.bin", local_header(inner) + inner.data)
    inner.local, inner.offset = False, 30 + len("a.bin")
    return raw_zip([outer, inner, Raw("main.py", MAIN_PY), Raw("requirements.txt", REQUIREMENTS)])


ARCHIVES = {
    "not a zip": (lambda: b"%PDF-1.7 a paper, not code", "not a zip"),
    "truncated zip": (lambda: make_zip(good_files())[:-30], "zip"),
    "encrypted member": (lambda: good_raw(Raw("secret.py", b"x = 1\n", flags=0x1)), "password"),
    "absolute path": (lambda: good_raw(Raw("/etc/cron.d/evil", b"x")), "absolute"),
    "dot-dot path": (lambda: good_raw(Raw("../evil.py", b"x")), ".."),
    "drive letter": (lambda: good_raw(Raw("C:/evil.py", b"x")), "drive letter"),
    "symlink": (lambda: good_raw(Raw("data", b"/etc/passwd", mode=stat.S_IFLNK | 0o777)), "symbolic link"),
    "device file": (lambda: good_raw(Raw("dev0", b"", mode=stat.S_IFCHR | 0o600)), "dev0"),
    "fifo": (lambda: good_raw(Raw("pipe", b"", mode=stat.S_IFIFO | 0o600)), "pipe"),
    "duplicate names": (lambda: good_raw(Raw("lib/a.py", b"1"), Raw("lib/a.py", b"2")), "twice"),
    "too many files": (too_many_files, "10,000"),
    "ratio bomb": (
        lambda: good_raw(Raw("zeros.bin", zeros_deflated(1024), method=8, size=1024**3, crc=0)),
        "zeros.bin",
    ),
    "lying header": (lambda: good_raw(Raw("w.bin", zeros_deflated(8), method=8, size=1000, crc=0)), "w.bin"),
    "nested bomb": (
        lambda: make_zip(
            good_files(
                **{"inner.zip": raw_zip([Raw("z.bin", zeros_deflated(512), method=8, size=512 * 1024**2, crc=0)])}
            ),
            zipfile.ZIP_STORED,
        ),
        "inner.zip",
    ),
    "nested too deep": (lambda: make_zip(good_files(**{"n.zip": nest(3, make_zip({"a.txt": b"ok"}))})), "level3.zip"),
    "overlapping entries": (overlapping, "overlap"),
    "main.py is a folder": (
        lambda: make_zip({"main.py/": b"", "main.py/x.py": b"", "requirements.txt": b""}),
        "main.py",
    ),
    "missing main.py": (lambda: make_zip({"requirements.txt": REQUIREMENTS}), "main.py is missing"),
    "missing requirements.txt": (lambda: make_zip({"main.py": MAIN_PY}), "requirements.txt"),
    "one folder too deep": (
        lambda: make_zip({"a/src/main.py": MAIN_PY, "a/src/requirements.txt": REQUIREMENTS}),
        "a/src/main.py",
    ),
}


@pytest.fixture
def researcher(db):
    from accounts.models import Researcher
    from accounts.services import researcher_create

    researcher = researcher_create(username="hana", email="hana@example.org", password="pw-hana-hana-hana")
    Researcher.objects.filter(pk=researcher.pk).update(
        status=Researcher.Status.APPROVED, mlflow_username="hana", mlflow_provisioned_at="2026-01-01T00:00Z"
    )
    researcher.user.refresh_from_db()
    return researcher


def stored_files():
    folder = settings.MEDIA_ROOT / "submissions"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("case", ARCHIVES)
def test_portal_refuses_and_keeps_nothing(client, researcher, case, django_capture_on_commit_callbacks, mailoutbox):
    build, needle = ARCHIVES[case]
    upload = io.BytesIO(build())
    upload.name = "submission.zip"
    before = stored_files()
    client.force_login(researcher.user)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("submissions:upload"), {"archive": upload})
    assert response.status_code == 400
    assert needle in response.content.decode()
    assert not Submission.objects.exists() and not SubmissionEvent.objects.exists()
    assert stored_files() == before
    assert callbacks == [] and mailoutbox == []


@pytest.mark.parametrize("case", ["symlink", "ratio bomb", "overlapping entries", "one folder too deep"])
def test_check_submission_gives_the_same_verdict(tmp_path, case):
    build, needle = ARCHIVES[case]
    path = tmp_path / "submission.zip"
    path.write_bytes(build())
    result = subprocess.run(
        [sys.executable, "manage.py", "check_submission", str(path)],
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
    )
    assert result.returncode == 1
    assert "REFUSED" in result.stderr and needle in result.stderr
