import pytest
from django.conf import settings as django_settings

from tests.conftest import WorkerPool
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
