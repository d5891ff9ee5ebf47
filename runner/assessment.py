"""The disclosure-risk job of a run that has ended: its exported models and tables, copied out of
export storage into platform-owned folders, are handed to runner.disclosure and
runner.disclosure_tables; the facts go to disclosure.services. It runs on a run worker, after the
run's result is recorded, and never changes that result or holds up the review: whatever fails
here settles as "could not be assessed", which the release rule treats as the two-admin path."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path, PurePosixPath

from django.conf import settings

from disclosure.facts import TableCheck
from disclosure.services import (
    ACRO_BOOKKEEPING,
    ACRO_RESULTS,
    TABLE_SUFFIXES,
    acro_folders,
    disclosure_claim,
    disclosure_record_fault,
    disclosure_record_model,
    disclosure_record_table,
    parent_folder,
)
from exports import storage
from exports.models import ExportFile
from submissions.models import Submission

from . import docker_api
from .builds import image_on_this_host
from .disclosure import assess_model
from .disclosure_tables import ACRO_RESULTS_MAX_BYTES, check_acro_results, check_tables
from .jobs import disclosure_job_for
from .naming import image_tag

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024


class _Damaged(Exception):
    """The bytes in export storage are not those recorded after the run: the platform's fault."""


def assess(submission_id: int) -> None:
    """Settle the submission's pending reports; a duplicate message finds them taken and does nothing."""
    reports = disclosure_claim(submission_id=submission_id)
    if not reports:
        return
    folder = settings.M2D_DISCLOSURE_WORK_DIR / str(submission_id)
    try:
        _clear(folder)
        folder.mkdir(parents=True, mode=0o755)
        folder.chmod(0o755)
        entries = {
            e.path: e
            for e in ExportFile.objects.filter(
                export__submission_id=submission_id,
                source=ExportFile.Source.RUN,
                state__in=(ExportFile.State.HELD, ExportFile.State.RELEASED),
            )
        }
        models = [r for r in reports if r.kind == r.Kind.MODEL]
        tables = [r for r in reports if r.kind == r.Kind.TABLE]
        if tables:
            _check_tables(tables, entries, folder)
        if models:
            image_id = Submission.objects.filter(pk=submission_id).values_list("image_id", flat=True).first()
            image = image_on_this_host(submission_id, image_id or "")
            for number, report in enumerate(models):
                model_dir = _copy_out(
                    {p: e for p, e in entries.items() if p.startswith(report.path)}, report.path, folder / f"m{number}"
                )
                job = disclosure_job_for(
                    submission_id,
                    image=image,
                    model_dir=model_dir,
                    model_path=report.path,
                    work_dir=folder / f"w{number}",
                )
                disclosure_record_model(report=report, assessment=assess_model(job))
    except Exception as exc:  # the platform's: the reports say so, and their release takes two admins
        log.exception("the disclosure job of submission %s failed", submission_id)
        disclosure_record_fault(submission_id=submission_id, fault=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        _clear(folder)
        # The run left the image to this job (runner.pipeline); serving builds it again when needed.
        if reports and any(r.kind == r.Kind.MODEL for r in reports) and not settings.M2D_KEEP_IMAGES:
            _remove_image(submission_id)


def _check_tables(reports, entries: dict[str, ExportFile], folder: Path) -> None:
    started = time.monotonic()
    acro = set(acro_folders(entries))
    plain, of_acro = [], {}
    for report in reports:
        if report.path not in entries:  # rejected before the job came: its bytes are gone
            gone = TableCheck(report.path, is_table=False, fault=f"{report.path} was deleted before it was checked")
            disclosure_record_table(report=report, check=gone)
        elif parent_folder(report.path) in acro:
            of_acro.setdefault(parent_folder(report.path), []).append(report)
        else:
            plain.append(report)
    checks: dict[str, TableCheck] = {}
    floor = set()  # ACRO's tables, checked again as finished tables: its results were the run's to write
    for number, (acro_folder, found) in enumerate(sorted(of_acro.items())):
        acro_checks = _acro_checks(acro_folder, found, entries, folder / f"acro{number}")
        checks.update(acro_checks)
        for report in found:
            tabular = report.path.lower().endswith(TABLE_SUFFIXES)
            if report.path in acro_checks:
                if tabular and acro_checks[report.path].cells:  # a table ACRO checked cell by cell
                    floor.add(report.path)
                    plain.append(report)
                continue
            if tabular:
                plain.append(report)
            else:
                checks[report.path] = TableCheck(
                    report.path,
                    is_table=False,
                    detail="ACRO's results list no output of this file: ACRO did not check it",
                )
    files = []
    for number, report in enumerate(plain):
        target = folder / "tables" / f"{number}{PurePosixPath(report.path).suffix.lower()}"
        _copy(entries[report.path], target)
        files.append((report.path, target))
    if files:
        for check in check_tables(
            files,
            disclosure_image=settings.M2D_DISCLOSURE_IMAGE,
            work_dir=folder / "tables-work",
            min_count=settings.M2D_DISCLOSURE_MIN_CELL_COUNT,
            timeout=settings.M2D_DISCLOSURE_TABLE_TIMEOUT,
        ):
            checks[check.path] = _under_floor(checks[check.path], check) if check.path in floor else check
    seconds = round(time.monotonic() - started, 2)
    for report in reports:
        if report.path in entries:
            check = checks.get(report.path) or TableCheck(report.path, False, fault="the check reported nothing of it")
            disclosure_record_table(report=report, check=check, seconds=seconds)


def _acro_checks(acro_folder: str, reports, entries: dict[str, ExportFile], work: Path) -> dict[str, TableCheck]:
    """ACRO's results for the files of one of its folders, each checked against the checksum ACRO
    wrote of it: a file changed after ACRO checked it is not what ACRO passed."""
    copies = {}
    for name in ACRO_BOOKKEEPING:
        entry = entries.get(f"{acro_folder}{name}")
        if entry is not None and entry.size <= ACRO_RESULTS_MAX_BYTES:
            copies[name] = work / "given" / name
            _copy(entry, copies[name])
    names = [r.path.removeprefix(acro_folder) for r in reports]
    checks = check_acro_results(
        acro_folder,
        names,
        copies.get(ACRO_RESULTS),
        copies.get("config.json"),
        disclosure_image=settings.M2D_DISCLOSURE_IMAGE,
        work_dir=work / "check",
        min_count=settings.M2D_DISCLOSURE_MIN_CELL_COUNT,
        timeout=settings.M2D_DISCLOSURE_TABLE_TIMEOUT,
    )
    for name, check in list(checks.items()):
        if check.fault:
            continue
        written = _acro_checksum(entries.get(f"{acro_folder}checksums/{name}.txt"))
        if written != entries[check.path].sha256:
            checks[name] = replace(
                check,
                doubt="the file is not the one ACRO checked: its sha256 differs from the checksum ACRO wrote "
                "of it, or ACRO wrote none",
            )
    _clear(work)
    return {check.path: check for check in checks.values()}


def _under_floor(acro: TableCheck, own: TableCheck) -> TableCheck:
    """ACRO's check of a table, unless the platform's own threshold check of the finished table
    finds more small cells than ACRO's results flag."""
    if own.fault or not own.is_table or own.small_cells <= acro.small_cells:
        return acro
    return replace(
        acro,
        small_cells=own.small_cells,
        doubt=f"the platform's own check of the finished table finds {own.small_cells} of {own.cells} count "
        f"cells under {own.min_count}, more than ACRO's results flag",
    )


def _acro_checksum(entry: ExportFile | None) -> str:
    if entry is None or entry.size > 1024:
        return ""
    with storage.open_file(entry.storage_key) as source:
        return source.read(1024).decode("ascii", errors="replace").strip()


def _copy_out(entries: dict[str, ExportFile], prefix: str, target: Path) -> Path:
    """The model's folder on this host, read-only, as the run wrote it (checked against its hashes)."""
    for path, entry in entries.items():
        relative = PurePosixPath(path.removeprefix(prefix))
        if relative.is_absolute() or ".." in relative.parts:
            raise _Damaged(f"the export holds a file named {path!r}")
        _copy(entry, target.joinpath(*relative.parts))
    for root, _dirs, names in os.walk(target):
        for name in names:
            os.chmod(os.path.join(root, name), 0o444)
        os.chmod(root, 0o555)
    return target


def _copy(entry: ExportFile, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with storage.open_file(entry.storage_key) as source, open(target, "wb") as out:
        for block in iter(lambda: source.read(CHUNK), b""):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != entry.sha256:
        raise _Damaged(f"{entry.path} in export storage does not match the sha256 recorded after the run")
    target.chmod(0o444)


def _clear(folder: Path) -> None:
    if not folder.exists():
        return
    for root, dirs, _ in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    shutil.rmtree(folder, ignore_errors=True)


def _remove_image(submission_id: int) -> None:
    try:
        docker_api.remove_image(image_tag(submission_id))
    except docker_api.PlatformFault:
        log.warning("could not remove the image of submission %s; the reconciler will", submission_id)
