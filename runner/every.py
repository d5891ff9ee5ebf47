"""Work a worker's main process repeats on a timer of its own (a host's heartbeat, a serving
host's reconciles), beside the tasks its pool runs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import connection

log = logging.getLogger(__name__)


def every(seconds: Callable[[], float], work: Callable[[], None], name: str, failure: str) -> threading.Thread:
    """Do `work` now and then every `seconds()` from a daemon thread. A round that fails (the
    database or the engine away for a moment) is logged as `failure`, and the next one tries
    again; each round gives the thread's database connection back."""

    def loop() -> None:
        while True:
            try:
                work()
            except Exception as exc:
                log.warning("%s: %s", failure, exc)
            finally:
                connection.close()
            time.sleep(seconds())

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
