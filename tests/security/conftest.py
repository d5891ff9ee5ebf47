import socket

import pytest

from tests.conftest import WorkerPool

# Small limits, so each hostile run meets its limit in seconds.
SANDBOX_LIMITS = {
    "M2D_RUN_TIMEOUT": 25,
    "M2D_RUN_SILENCE_TIMEOUT": 8,
    "M2D_RUN_MEMORY": "256m",
    "M2D_RUN_PIDS": 64,
    "M2D_RUN_CPUS": 1.0,
    "M2D_RUN_SHM": "64m",
    "M2D_RUN_TMP": "32m",
    "M2D_EXPORT_MAX_BYTES": 20 * 1024 * 1024,
    "M2D_LOG_MAX_BYTES": 1024 * 1024,
    "M2D_TRACKING_MAX_BYTES": 200_000,
    "M2D_STOP_GRACE_SECONDS": 2,
}


@pytest.fixture(scope="module")
def sandbox_pool(django_db_setup, smtp_server):
    pool = WorkerPool(smtp_server.port, prefix="sandbox-", overrides=SANDBOX_LIMITS).start()
    yield pool
    pool.stop()


@pytest.fixture
def sandboxed(sandbox_pool, settings, mailbox):
    """Submissions made in the test go to the workers with the small limits."""
    sandbox_pool.use(settings)
    return sandbox_pool


@pytest.fixture
def host_listener():
    """A listener on the host, on every address: a run or a build must not be able to reach it."""
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()
