"""A submission's full build and run logs, wherever the build and the run happened.

The host that builds or runs a submission writes its logs to its own disk (submissions.logpolicy),
and the portal may be on another machine. So each host keeps a copy of a log it has finished in
the export storage, which every host reaches, and the portal reads a log from there when it is not
on its own disk. The copy is held like an export file nobody has released: an admin reads it, and a
researcher gets it only through a release request and its review.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from submissions import logpolicy

from . import storage

log = logging.getLogger(__name__)


def keep(submission_id: int, kind: str) -> None:
    """Copy this host's full log of the submission to the export storage; called once the build
    or the run that wrote it has ended. A failure leaves the log on this host only."""
    path = logpolicy.log_dir(submission_id) / f"{kind}.log"
    if not path.is_file():
        return
    try:
        storage.store_file(storage.host_log_key(submission_id, kind), path)
    except Exception:
        log.exception("the %s log of submission %s could not be kept in export storage", kind, submission_id)


def _kept(submission_id: int, kind: str) -> bool:
    try:
        return storage.exists(storage.host_log_key(submission_id, kind))
    except Exception as exc:  # storage away: the log is missing from the page, not the page itself
        log.warning("export storage could not say whether submission %s has a %s log: %s", submission_id, kind, exc)
        return False


def available(submission, kind: str) -> bool:
    return logpolicy.full_log_path(submission, kind).is_file() or _kept(submission.pk, kind)


def open_log(submission, kind: str):
    """The whole log as a binary file (this host's own, which may still grow, before the kept
    copy), or None when there is none."""
    path = logpolicy.full_log_path(submission, kind)
    if path.is_file():
        return open(path, "rb")  # noqa: SIM115 (the caller streams and closes it)
    if _kept(submission.pk, kind):
        return storage.open_file(storage.host_log_key(submission.pk, kind))
    return None


@contextmanager
def local_copy(submission, kind: str) -> Iterator[Path | None]:
    """The log as a file on this host while the block runs (fetched from the export storage when
    another host wrote it), or None when there is none."""
    path = logpolicy.full_log_path(submission, kind)
    if path.is_file():
        yield path
        return
    if not _kept(submission.pk, kind):
        yield None
        return
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / f"{kind}.log"
        with storage.open_file(storage.host_log_key(submission.pk, kind)) as source, open(target, "wb") as copy:
            shutil.copyfileobj(source, copy, 1024 * 1024)
        yield target
