"""Batch jobs: a zip of cases, checked on upload like a submission's zip (no link, no `..`, no
bomb, real sizes), then sent case by case through the inference gateway by the serve-batch
worker: the same input checks, the same audit rows, the same serving workers as /predictions.

Layout: one folder per case with one file per input, named after it (`case1/LCC.png`,
`case1/LMLO.png`, …); for a one-input model also one file per case at the top (`a.png`). A zip
whose cases all sit in one top folder (`cases/case1/LCC.png`) is read from inside it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.http import Http404
from django.utils import timezone

from m2d.celery import app
from submissions import intake

from . import gateway, inputs, selectors
from .batch_models import BatchCase, BatchJob
from .errors import NoWorker, ServingError, WorkersBusy

log = logging.getLogger(__name__)
TASK = "serving.tasks.run_batch_job"
HOW_TO = (
    "Put each case in a folder of its own with one file per input, named after it "
    "(case1/LCC.png, case1/LMLO.png, …); a one-input model also takes one file per case at the top of the zip."
)
REZIP = "Zip the case folders again, e.g. `cd cases && zip -r ../cases.zip .`."
FEWER = "Send fewer cases per job."
MOVES = {
    BatchJob.Status.QUEUED: {BatchJob.Status.RUNNING, BatchJob.Status.FAILED},
    BatchJob.Status.RUNNING: {BatchJob.Status.RUNNING, BatchJob.Status.SUCCEEDED, BatchJob.Status.FAILED},
    BatchJob.Status.SUCCEEDED: set(),
    BatchJob.Status.FAILED: set(),
}


class BatchRefused(ServingError):
    code, type = 400, "invalid_batch"


class BatchTooLarge(ServingError):
    code, type = 413, "batch_too_large"


class NotDeployed(ServingError):
    code, type = 409, "not_deployed"


class IllegalMove(Exception):
    pass


@dataclass(frozen=True)
class Case:
    name: str
    members: dict[str, str]  # input name -> member name in the zip


# --- reading the zip ---------------------------------------------------------------------------


def _limits() -> intake.IntakeLimits:
    return intake.IntakeLimits(
        max_compressed_bytes=settings.M2D_BATCH_MAX_ZIP_BYTES,
        max_uncompressed_bytes=settings.M2D_BATCH_MAX_UNPACKED_BYTES,
        max_files=2**62,  # counted as cases below, with a message about cases
    )


def _reworded(err: intake.IntakeError) -> ServingError:
    """The submission checks' refusal, with advice for a zip of cases instead of training code."""
    message = err.message.replace(intake.RECREATE, REZIP).replace(intake.RATIO_HINT, "Zip bombs are refused.")
    message = message.replace(intake.LEAVE_OUT, FEWER).replace(intake.HOW_TO_ZIP, REZIP)
    if err.code == "too_large":
        message += " (M2D_BATCH_MAX_UNPACKED_BYTES)"
        return BatchTooLarge(message)
    return BatchRefused(message)


@contextlib.contextmanager
def _entries(fp, size: int):
    """The zip's files (not folders, not __MACOSX or .DS_Store), structurally checked."""
    try:
        zf = intake._open_zip(fp)
        with zf:
            entries = intake._structure(zf, fp, size, _limits(), intake._Budget(_limits()), "", strict=True)
            yield {e.name: e for e in entries if not e.is_dir and not e.ignored}
    except intake.IntakeError as err:
        raise _reworded(err) from None


def read_cases(fp, size: int, card: dict) -> tuple[list[Case], str]:
    """The cases of an uploaded zip, and its sha256; refuses an unsafe zip or one not laid out in
    cases. Every member is unpacked once here (in bounded chunks), so sizes that lie, damaged data
    and bombs are refused now, not half-way through the job."""
    names = [spec["name"] for spec in card.get("inputs", [])]
    if not names:
        raise BatchRefused("This model's card declares no inputs, so its cases cannot be read from a zip.")
    if size > settings.M2D_BATCH_MAX_ZIP_BYTES:
        raise BatchTooLarge(f"The zip is {size:,} bytes; the limit is {settings.M2D_BATCH_MAX_ZIP_BYTES:,} bytes.")
    digest = hashlib.sha256()
    fp.seek(0)
    for block in iter(lambda: fp.read(1024**2), b""):
        digest.update(block)
    with _entries(fp, size) as files:
        if len(files) > settings.M2D_BATCH_MAX_CASES * len(names):
            raise BatchTooLarge(_too_many(len(files) // len(names)))
        cases = _layout(sorted(files), names)
        per_file = settings.M2D_SERVE_MAX_BODY
        budget = intake._Budget(_limits())
        try:
            for member in (m for case in cases for m in case.members.values()):
                if files[member].info.file_size > per_file:
                    raise BatchTooLarge(f"'{member}' is over {per_file:,} bytes, the limit of one input.")
                for chunk in intake._member_chunks(fp, files[member], ""):
                    budget.add_bytes(len(chunk), member)
        except intake.IntakeError as err:
            raise _reworded(err) from None
    if len(cases) > settings.M2D_BATCH_MAX_CASES:
        raise BatchTooLarge(_too_many(len(cases)))
    return cases, digest.hexdigest()


def _too_many(count: int) -> str:
    return f"The zip holds {count:,} cases; a job takes at most {settings.M2D_BATCH_MAX_CASES:,} (M2D_BATCH_MAX_CASES)."


def _layout(files: list[str], names: list[str]) -> list[Case]:
    if not files:
        raise BatchRefused(f"The zip holds no files. {HOW_TO}")
    tops = {f.split("/", 1)[0] for f in files}
    try:
        return _cases(files, names)
    except BatchRefused:
        if len(tops) != 1 or not all("/" in f for f in files):
            raise
        top = f"{next(iter(tops))}/"
        with contextlib.suppress(BatchRefused):
            cases = _cases([f[len(top) :] for f in files], names)
            return [Case(c.name, {k: top + v for k, v in c.members.items()}) for c in cases]
        raise


def _cases(files: list[str], names: list[str]) -> list[Case]:
    cases: dict[str, dict[str, str]] = {}
    for member in files:
        parts = member.split("/")
        if len(parts) == 1:
            if len(names) != 1:
                where = f"'{member}' is at the top of the zip, but this model takes {len(names)} inputs."
                raise BatchRefused(f"{where} {HOW_TO}")
            cases[member] = {names[0]: member}
            continue
        if len(parts) > 2:
            raise BatchRefused(f"'{member}' is nested too deep: a case is one folder of files. {HOW_TO}")
        case, file = parts
        stem = file.rsplit(".", 1)[0] if "." in file[1:] else file
        if stem not in names:
            raise BatchRefused(
                f"'{member}' names no input of this model (it takes {', '.join(names)}): "
                "name each file after its input."
            )
        given = cases.setdefault(case + "/", {})
        if stem in given:
            raise BatchRefused(f"Case '{case}' has two files for input {stem}: '{given[stem]}' and '{member}'.")
        given[stem] = member
    return [Case(name.rstrip("/"), members) for name, members in sorted(cases.items())]


def _case_inputs(fp, files: dict, case: BatchCase) -> dict[str, tuple[str, bytes]]:
    given = {}
    for name, member in case.members.items():
        data = b"".join(intake._member_chunks(fp, files[member], ""))
        given[name] = (inputs.sniff(data), data)
    return given


# --- services ----------------------------------------------------------------------------------


def check_deployed(version) -> None:
    deployment = selectors.deployment_of(version)
    if deployment is None or deployment.max_workers == 0:
        raise NotDeployed(f"{version.model.name} version {version.number} is not deployed; ask its owner to scale it.")


def batch_job_create(*, by, version, upload) -> BatchJob:
    """Check the zip, keep it and its cases, and wake the serve-batch worker once committed."""
    check_deployed(version)
    upload.seek(0)
    cases, sha256 = read_cases(upload, upload.size, version.card)
    with transaction.atomic():
        job = BatchJob(user=by, version=version, total=len(cases), archive_sha256=sha256)
        upload.seek(0)
        job.archive.save(f"{job.uuid}.zip", upload, save=False)
        job.save()
        BatchCase.objects.bulk_create(
            BatchCase(job=job, index=i, name=c.name, members=c.members) for i, c in enumerate(cases)
        )
        transaction.on_commit(lambda: _wake(job.pk))
    return job


def _wake(job_id: int) -> None:
    try:
        app.send_task(
            TASK,
            (job_id,),
            queue=settings.M2D_QUEUE_SERVE_BATCH,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2},
        )
    except Exception as exc:  # the broker is down; the job stays queued and is sent again
        log.warning("could not send batch job %s to queue %s (%s)", job_id, settings.M2D_QUEUE_SERVE_BATCH, exc)


def batch_jobs_wake(*, older_than: float) -> int:
    """Send again the jobs queued for over `older_than` seconds while the batch queue is empty:
    their message was lost (the broker was down when they were made). A message sent twice finds
    its job no longer queued the second time and does nothing."""
    if _queue_length(settings.M2D_QUEUE_SERVE_BATCH) != 0:
        return 0
    since = timezone.now() - timedelta(seconds=older_than)
    stuck = list(
        BatchJob.objects.filter(status=BatchJob.Status.QUEUED, created_at__lt=since).values_list("pk", flat=True)
    )
    for job_id in stuck:
        _wake(job_id)
    return len(stuck)


def _queue_length(queue: str) -> int | None:
    try:
        with app.connection_for_write() as conn:
            return conn.default_channel.client.llen(queue)
    except Exception:  # the broker cannot say; try again next time
        return None


def _move(job: BatchJob, to: str, **fields) -> bool:
    """The one place a job changes status: a conditional update from the status it was read in."""
    if to not in MOVES[job.status]:
        raise IllegalMove(f"batch job {job.uuid}: {job.status} -> {to}")
    moved = BatchJob.objects.filter(pk=job.pk, status=job.status).update(status=to, **fields)
    if moved:
        job.status = to
        for key, value in fields.items():
            setattr(job, key, value)
    return bool(moved)


def batch_job_run(job_id: int) -> None:
    """Ask every case not yet answered (a job taken over after a crash goes on where it was)."""
    job = BatchJob.objects.select_related("version__model", "user").filter(pk=job_id).first()
    if job is None or job.status in (BatchJob.Status.SUCCEEDED, BatchJob.Status.FAILED):
        return  # a message sent twice
    if not _move(job, BatchJob.Status.RUNNING, started_at=job.started_at or timezone.now()):
        return
    try:
        with job.archive.open("rb") as fp, _entries(fp, job.archive.size) as files:
            for case in job.cases.filter(status__isnull=True):
                _ask(job, case, _case_inputs(fp, files, case))
    except _Stop as stop:
        _end(job, BatchJob.Status.FAILED, str(stop))
        return
    except (OSError, ServingError, intake.IntakeError) as exc:
        _end(job, BatchJob.Status.FAILED, f"The stored zip of this job could not be read ({exc}); send it again.")
        return
    _end(job, BatchJob.Status.SUCCEEDED, "")


class _Stop(Exception):
    pass


def _ask(job: BatchJob, case: BatchCase, given: dict) -> None:
    """One case, asked like /predictions would be. While the version has no worker free (none
    ready, or all busy with other callers) the case waits, up to M2D_BATCH_WORKER_WAIT_SECONDS."""
    version = job.version
    deadline = time.monotonic() + settings.M2D_BATCH_WORKER_WAIT_SECONDS
    pause = 1.0
    while True:
        _wait_for_worker(job, deadline)
        try:
            answer = gateway.predict(
                user=job.user, name=version.model.name, version_ref=str(version.number), given=given, endpoint="batch"
            )
        except Http404:
            raise _Stop(f"{version.model.name} version {version.number} is no longer one you may use.") from None
        except (NoWorker, WorkersBusy):
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 10.0)
            continue
        except ServingError as exc:
            fields = {"status": exc.code, "error": str(exc)}
        else:
            fields = _answered(answer)
        BatchCase.objects.filter(pk=case.pk, status__isnull=True).update(**fields)
        return


def _answered(answer) -> dict:
    size = len(json.dumps(answer.outputs))
    if size > settings.M2D_BATCH_MAX_OUTPUT_BYTES:
        return {
            "status": 502,
            "error": f"The outputs are {size:,} bytes, over the batch limit of "
            f"{settings.M2D_BATCH_MAX_OUTPUT_BYTES:,} (M2D_BATCH_MAX_OUTPUT_BYTES); "
            "ask this case through /predictions.",
            "prediction": answer.prediction,
        }
    return {"status": 200, "outputs": answer.outputs, "prediction": answer.prediction}


def _wait_for_worker(job: BatchJob, deadline: float) -> None:
    """A worker replaced mid-job (the model timed out) is back within a reconcile; a version
    scaled to zero is not: the job stops at the deadline."""
    while not selectors.ready_workers(job.version) or time.monotonic() >= deadline:
        if time.monotonic() >= deadline:
            wait = settings.M2D_BATCH_WORKER_WAIT_SECONDS
            raise _Stop(
                f"{job.version.model.name} version {job.version.number} had no ready worker free for {wait:g} s; "
                "the cases not asked are marked not run. Send them again once it is scaled."
            )
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _end(job: BatchJob, status: str, reason: str) -> None:
    _move(job, status, reason=reason, ended_at=timezone.now())
    if job.archive:
        job.archive.delete(save=False)  # the cases are the caller's data: kept only while needed
        BatchJob.objects.filter(pk=job.pk).update(archive="")


# --- selectors ---------------------------------------------------------------------------------


def job_for(user, version, job_id: str) -> BatchJob:
    """A job of this version that `user` started; staff see every job. Others: 404."""
    jobs = BatchJob.objects.select_related("version__model", "user").filter(version=version)
    if not user.is_staff:
        jobs = jobs.filter(user=user)
    try:
        found = jobs.filter(uuid=uuid.UUID(job_id)).first()
    except ValueError:
        found = None
    if found is None:
        raise Http404(f"No batch job {job_id} of {version.model.name} version {version.number}.")
    return found


def counts(job: BatchJob) -> dict[str, int]:
    found = job.cases.aggregate(
        done=Count("pk", filter=Q(status=200)),
        failed=Count("pk", filter=Q(status__isnull=False) & ~Q(status=200)),
    )
    return {"total": job.total, **found, "pending": job.total - found["done"] - found["failed"]}


def results(job: BatchJob):
    """Each case in zip order: its outputs, or the error (`not run` for a case a failed job left)."""
    for case in job.cases.iterator():
        yield {
            "case": case.name,
            "status": case.status,
            "outputs": case.outputs,
            "error": case.error if case.status is not None else "not run",
            "prediction": str(case.prediction) if case.prediction else None,
        }
