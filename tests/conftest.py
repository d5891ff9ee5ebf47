"""Shared fixtures: a real SMTP server, real Celery workers, approved researchers on the real MLflow."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import pytest
from django.conf import settings

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MailBox:
    """What the SMTP server received, in order."""

    def __init__(self):
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        with self._lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def for_address(self, address: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if address in m["To"]]

    def wait_for(self, address: str, count: int, timeout: float = 30.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.for_address(address)
            if len(found) >= count:
                return found
            time.sleep(0.1)
        return self.for_address(address)


@pytest.fixture(scope="session")
def smtp_server():
    from aiosmtpd.controller import Controller

    box = MailBox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


@pytest.fixture
def mailbox(smtp_server, settings):
    """Mail sent by this process and by the workers lands in the real SMTP server."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_USE_TLS = False
    return smtp_server


def _test_database_path() -> str:
    name = os.environ.get("M2D_TEST_DATABASE_NAME")
    if not name:
        pytest.skip("integration tests run through `make test` (M2D_TEST_DATABASE_NAME is not set)")
    return name


@pytest.fixture(scope="session")
def celery_workers(django_db_setup, django_db_blocker, smtp_server):
    """Real Celery workers, one per queue, as in production, on the test database."""
    database = _test_database_path()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_server.port}",
        "PYTHONUNBUFFERED": "1",
    }
    log_dir = Path(settings.VAR_DIR) / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    processes = []
    for queue in ("build", "run", "default"):
        log = open(log_dir / f"worker-{queue}.log", "ab")  # noqa: SIM115
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "m2d",
                    "worker",
                    "-Q",
                    queue,
                    "-c",
                    "1",
                    "-n",
                    f"{queue}-test@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "-l",
                    "INFO",
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    deadline = time.monotonic() + 60
    for queue in ("build", "run", "default"):
        while b"ready." not in (log_dir / f"worker-{queue}.log").read_bytes():
            assert time.monotonic() < deadline, f"the {queue} worker did not start; see {log_dir}"
            time.sleep(0.2)
    yield processes
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def make_zip(files: dict[str, str | bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    buffer.seek(0)
    buffer.name = "submission.zip"
    return buffer


@pytest.fixture
def make_researcher(transactional_db):
    """Approved researchers, provisioned on the real MLflow server."""
    from accounts.services import researcher_approve, researcher_create

    counter = iter(range(1, 1000))

    def factory(prefix: str = "alice"):
        name = f"{prefix}{next(counter)}-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        researcher = researcher_create(username=name, email=f"{name}@example.org", password="pw-" + name * 2)
        return researcher_approve(by=None, researcher=researcher, provision_now=True)

    return factory
