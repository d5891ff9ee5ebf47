import os
import subprocess
import time

import pytest
from django.conf import settings as django_settings

from tests.conftest import REPO, WorkerPool
from tests.package_index import HeldIndex

FAST_RECOVERY = {"M2D_HEARTBEAT_SECONDS": 2, "M2D_RECONCILE_SECONDS": 3, "M2D_STOP_GRACE_SECONDS": 3}


@pytest.fixture
def held_index():
    """The stack's package index behind a relay the test can hold shut (a build then waits)."""
    index = HeldIndex(django_settings.M2D_PACKAGE_INDEX_URL)
    yield index
    index.close()


@pytest.fixture
def crash_pool(django_db_setup, smtp_server, settings, mailbox, held_index):
    """Workers (and beat) of their own, so a test can kill and restart them."""
    overrides = {**FAST_RECOVERY, "M2D_PACKAGE_INDEX_URL": held_index.url}
    pool = WorkerPool(smtp_server.port, prefix="crash-", overrides=overrides).start()
    pool.start_beat()
    pool.use(settings)
    yield pool
    pool.stop()


class Engine:
    """The second engine, started and stopped through scripts/second-engine.sh."""

    def __init__(self, name: str):
        self.name = name
        self.url = ""

    def _script(self, action: str) -> str:
        done = subprocess.run(
            [str(REPO / "scripts" / "second-engine.sh"), action, self.name],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def start(self) -> str:
        self.url = self._script("start")
        return self.url

    def stop(self) -> None:
        self._script("stop")

    def wipe(self) -> None:
        self._script("wipe")

    def docker(self, *args: str) -> str:
        done = subprocess.run(["docker", "-H", self.url, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="session")
def engine_b():
    """Host B's engine, for every two-host test of the session (it takes half a minute to start
    and load the images); a test that stops it starts it again."""
    started = time.monotonic()
    engine = Engine(f"{os.environ.get('M2D_STACK', 'm2d')}-b")
    engine.start()
    print(f"engine B ready in {time.monotonic() - started:.0f} s")
    yield engine
    engine.wipe()
