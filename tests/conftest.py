"""Shared fixtures: a real SMTP server, real Celery workers, approved researchers on the real MLflow."""

from __future__ import annotations

import io
import os
import signal
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
from django.contrib.auth.hashers import PBKDF2PasswordHasher

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


def _worker_database_url() -> str:
    """The URL of the database the test run created, for worker processes."""
    name = _test_database_path()
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return url.rsplit("/", 1)[0] + "/" + name
    return f"sqlite:///{name}"


def _test_database_path() -> str:
    name = os.environ.get("M2D_TEST_DATABASE_NAME")
    if not name:
        pytest.skip("integration tests run through `make test` (M2D_TEST_DATABASE_NAME is not set)")
    return name


class WorkerPool:
    """Real Celery worker processes (build, run, ops, serve-batch), as in production, on the test database.

    A pool with a `prefix` listens on its own queues, so a test can run workers with other
    limits beside the shared ones; point the test process at them with `use(settings)`."""

    def __init__(
        self,
        smtp_port: int,
        prefix: str = "",
        overrides: dict[str, object] | None = None,
        roles: tuple[str, ...] = ("build", "run", "ops"),
    ):
        self.overrides = overrides or {}
        every = {
            "build": f"{prefix}build",
            "run": f"{prefix}run",
            "ops": f"{prefix}default",
            "batch": f"{prefix}serve-batch",
        }
        self.all_queues = every
        self.queues = {role: queue for role, queue in every.items() if role in roles}
        self.tag = f"{prefix}{self.overrides.get('M2D_HOST_NAME', '')}" or "shared"
        self.env = {
            **os.environ,
            "DATABASE_URL": _worker_database_url(),
            "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
            "PYTHONUNBUFFERED": "1",
            "M2D_QUEUE_BUILD": every["build"],
            "M2D_QUEUE_RUN": every["run"],
            "M2D_QUEUE_OPS": every["ops"],
            "M2D_QUEUE_SERVE_BATCH": every["batch"],
            **{key: str(value) for key, value in self.overrides.items()},
        }
        self.log_dir = Path(settings.VAR_DIR) / "log"
        self.processes: list[subprocess.Popen] = []

    def _worker_command(self, queue: str) -> list[str]:
        # One process per run slot, as on a real host; the other queues take one task at a time.
        concurrency = str(self.overrides.get("M2D_CPU_SLOTS", 1)) if queue == self.all_queues["run"] else "1"
        name = f"{queue}-{os.getpid()}-{time.monotonic_ns()}@%h"
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "m2d",
            "worker",
            "-Q",
            queue,
            "-c",
            concurrency,
            "-n",
            name,
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ]

    def start(self) -> WorkerPool:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logs = []
        for queue in self.queues.values():
            path = self.log_dir / f"worker-{self.tag}-{queue}.log"
            path.write_bytes(b"")
            logs.append(path)
            command = self._worker_command(queue)
            with open(path, "ab") as log:
                self.processes.append(
                    subprocess.Popen(
                        command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        deadline = time.monotonic() + 60
        for path in logs:
            while b"ready." not in path.read_bytes():
                assert time.monotonic() < deadline, f"a worker did not start; see {path}"
                time.sleep(0.2)
        return self

    def start_beat(self) -> None:
        """Celery beat for this pool: the reconciler every M2D_RECONCILE_SECONDS."""
        schedule = self.log_dir / f"beat-{self.all_queues['ops']}-{os.getpid()}"
        with open(self.log_dir / f"beat-{self.all_queues['ops']}.log", "ab") as log:
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "m2d", "beat", "-l", "INFO", "-s", str(schedule)],
                    cwd=REPO,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def process_for(self, role: str) -> subprocess.Popen:
        return self.processes[list(self.queues).index(role)]

    def kill(self, role: str) -> None:
        """kill -9 a worker and its pool processes, as a crash would."""
        process = self.process_for(role)
        os.killpg(process.pid, 9)
        process.wait(timeout=30)

    def restart(self, role: str) -> None:
        index = list(self.queues).index(role)
        queue = self.queues[role]
        path = self.log_dir / f"worker-{self.tag}-{queue}.log"
        before = path.read_bytes().count(b"ready.")
        command = self._worker_command(queue)
        with open(path, "ab") as log:
            self.processes[index] = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while path.read_bytes().count(b"ready.") <= before:
            assert time.monotonic() < deadline, f"the {role} worker did not restart; see {path}"
            time.sleep(0.2)

    def use(self, django_settings) -> None:
        django_settings.M2D_QUEUE_BUILD = self.all_queues["build"]
        django_settings.M2D_QUEUE_RUN = self.all_queues["run"]
        django_settings.M2D_QUEUE_OPS = self.all_queues["ops"]
        django_settings.M2D_QUEUE_SERVE_BATCH = self.all_queues["batch"]
        for key, value in self.overrides.items():
            setattr(django_settings, key, value)

    def stop(self) -> None:
        """Kill the pool's processes with their pool children, then close the index doors they
        kept, as their own exit would have. Celery's warm shutdown took 2.5-4 s for an idle worker
        (billiard joins its pool processes by polling) and up to 30 s for one still in a task; a
        test that is over needs neither, and what a task in flight leaves is what a crash leaves."""
        pids: set[int] = set()
        for process in self.processes:
            pids |= _process_group(process.pid)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:  # killed already (kill)
                pass
        for process in self.processes:
            process.wait(timeout=30)
        from runner import index_door

        index_door.remove_doors_kept_by(pids.__contains__)  # what their exit would have closed


def _process_group(pgid: int) -> set[int]:
    """The processes of a process group: a worker and its pool processes."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # gone meanwhile
            continue
        if int(after_name[2]) == pgid:  # state, parent, process group
            pids.add(int(stat.parent.name))
    return pids


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's own PBKDF2 hashes (any platform process checks them), with few rounds: the suite
    makes and checks hundreds of passwords, at about 0.3 s each with production's rounds."""

    iterations = 1000


@pytest.fixture(autouse=True, scope="session")
def _quick_password_hashes():
    from django.test import override_settings

    if not settings.configured:  # a run without pytest-django (tests/unit/test_dataset_generator.py)
        yield
        return
    with override_settings(PASSWORD_HASHERS=["tests.conftest.QuickPBKDF2PasswordHasher", *settings.PASSWORD_HASHERS]):
        yield


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's test database; before it is dropped, this process's outbox sends the mails
    that tests' transitions wrote (else its thread meets a database that is gone)."""
    yield
    from ops import outbox

    outbox.drain(timeout=15)


@pytest.fixture(scope="session")
def celery_workers(django_db_setup, django_db_blocker, smtp_server):
    """The shared pool of real workers on the default queues."""
    pool = WorkerPool(smtp_server.port, roles=("build", "run", "ops", "batch")).start()
    yield pool
    pool.stop()


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


@pytest.fixture(autouse=True, scope="session")
def _quiet_smtp_log():
    import logging

    logging.getLogger("mail.log").setLevel(logging.WARNING)
