import pytest

from tests.conftest import WorkerPool

FAST_RECOVERY = {"M2D_HEARTBEAT_SECONDS": 2, "M2D_RECONCILE_SECONDS": 3, "M2D_STOP_GRACE_SECONDS": 3}


@pytest.fixture
def crash_pool(django_db_setup, smtp_server, settings, mailbox):
    """Workers (and beat) of their own, so a test can kill and restart them."""
    pool = WorkerPool(smtp_server.port, prefix="crash-", overrides=FAST_RECOVERY).start()
    pool.start_beat()
    pool.use(settings)
    yield pool
    pool.stop()
