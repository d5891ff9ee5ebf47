"""What a build worker and a run slot are handed: a frozen job, read once from the database and the
settings when they take a submission, so that the build (runner.builds) and the run
(runner.pipeline) read no model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from accounts.selectors import MlflowCredentials, mlflow_credentials
from submissions.facts import TrackingTotals
from submissions.models import Submission

from . import docker_api
from .disclosure import DisclosureJob, SplitSpec
from .export_volume import ExportLimits, ExportVolume
from .naming import image_tag, log_dir, run_labels


@dataclass(frozen=True)
class RunLimits:
    memory: str
    cpus: float
    pids: int
    shm_size: str
    tmp_size: str
    timeout: int  # wall clock, seconds
    silence_timeout: int  # seconds without output
    stop_grace: int
    log_max_bytes: int
    log_tail_lines: int
    export: ExportLimits
    tracking_max_bytes_in: int
    tracking_max_answer_bytes: int


@dataclass(frozen=True)
class RunJob:
    submission_id: int
    owner_id: int
    owner_username: str
    image: str
    slot: str
    gpu_id: str | None
    credentials: MlflowCredentials
    tracking_used: TrackingTotals  # by the submission's earlier attempts: an adopted or requeued run goes on
    dataset_dir: Path
    export_volume: ExportVolume
    export_folder: Path  # where what the run wrote is collected to, for review
    gateway_dir: Path
    log_path: Path
    forwarder_image: str
    run_uid: int
    forwarder_uid: int
    limits: RunLimits


def export_volume(submission_id: int) -> ExportVolume:
    return ExportVolume(
        image=settings.M2D_EXPORT_VOLUME_DIR / f"{submission_id}.img",
        mountpoint=settings.M2D_EXPORT_VOLUME_DIR / str(submission_id),
        size_bytes=settings.M2D_EXPORT_MAX_BYTES,
        uid=settings.M2D_RUN_UID,
    )


def export_limits() -> ExportLimits:
    return ExportLimits(
        max_bytes=settings.M2D_EXPORT_MAX_BYTES,
        max_files=settings.M2D_EXPORT_MAX_FILES,
        max_path_chars=settings.M2D_EXPORT_MAX_PATH_CHARS,
        name_characters=settings.M2D_EXPORT_NAME_CHARACTERS,
    )


def run_limits() -> RunLimits:
    return RunLimits(
        memory=settings.M2D_RUN_MEMORY,
        cpus=settings.M2D_RUN_CPUS,
        pids=settings.M2D_RUN_PIDS,
        shm_size=settings.M2D_RUN_SHM,
        tmp_size=settings.M2D_RUN_TMP,
        timeout=settings.M2D_RUN_TIMEOUT,
        silence_timeout=settings.M2D_RUN_SILENCE_TIMEOUT,
        stop_grace=settings.M2D_STOP_GRACE_SECONDS,
        log_max_bytes=settings.M2D_LOG_MAX_BYTES,
        log_tail_lines=settings.M2D_LOG_TAIL_LINES,
        export=export_limits(),
        tracking_max_bytes_in=settings.M2D_TRACKING_MAX_BYTES_IN,
        tracking_max_answer_bytes=settings.M2D_TRACKING_MAX_ANSWER_BYTES,
    )


def run_job_for(submission_id: int) -> RunJob:
    """The job of a submission a slot has claimed (it is running, on that slot)."""
    submission = Submission.objects.select_related("owner").get(pk=submission_id)
    return RunJob(
        submission_id=submission.pk,
        owner_id=submission.owner_id,
        owner_username=submission.owner.username,
        image=submission.image_id,
        slot=submission.slot,
        gpu_id=submission.gpu_id or None,
        credentials=mlflow_credentials(submission.owner_id),
        tracking_used=TrackingTotals(
            calls=submission.tracking_calls,
            bytes_sent=submission.tracking_bytes,
            bytes_received=submission.tracking_bytes_received,
        ),
        dataset_dir=settings.M2D_DATASET_DIR,
        export_volume=export_volume(submission.pk),
        export_folder=settings.M2D_EXPORT_ROOT / str(submission.pk),
        gateway_dir=settings.M2D_GATEWAY_DIR / str(submission.pk),
        log_path=log_dir(submission.pk) / "run.log",
        forwarder_image=settings.M2D_FORWARDER_IMAGE,
        run_uid=settings.M2D_RUN_UID,
        forwarder_uid=settings.M2D_FORWARDER_UID,
        limits=run_limits(),
    )


@dataclass(frozen=True)
class BuildJob:
    submission_id: int
    image_id: str  # what an earlier build of the submission made, if any
    spec: docker_api.BuildSpec
    log_tail_lines: int


def build_job_for(submission_id: int, log_name: str = "build.log") -> BuildJob:
    submission = Submission.objects.select_related("owner").get(pk=submission_id)
    dockerfile = "execute_code" if settings.M2D_USE_GPU else "execute_code-without-gpu"
    spec = docker_api.BuildSpec(
        submission_id=submission.pk,
        archive=Path(submission.archive.path),
        dockerfile=settings.M2D_DOCKER_SCRIPTS_DIR / dockerfile,
        runtime_image=settings.M2D_RUNTIME_IMAGE,
        tag=image_tag(submission.pk),
        labels={  # the slot is a run's, set when one takes the image
            k: v for k, v in run_labels(submission.pk, submission.owner.username).items() if k != docker_api.LABEL_SLOT
        },
        log_path=log_dir(submission.pk) / log_name,
        timeout=settings.M2D_BUILD_TIMEOUT,
        log_max_bytes=settings.M2D_LOG_MAX_BYTES,
        memory=settings.M2D_BUILD_MEMORY,
        cpus=settings.M2D_BUILD_CPUS,
        max_bytes=settings.M2D_BUILD_MAX_BYTES,
        build_args={
            "M2D_BUILD_PIDS": str(settings.M2D_BUILD_PIDS),
            "M2D_BUILD_FILE_BYTES": str(settings.M2D_BUILD_MAX_BYTES),
        },
    )
    return BuildJob(submission.pk, submission.image_id, spec, settings.M2D_LOG_TAIL_LINES)


def disclosure_job_for(
    submission_id: int, *, image: str, model_dir: Path, model_path: str, work_dir: Path
) -> DisclosureJob:
    """The disclosure-risk job of one exported model, its files copied to `model_dir` on this host."""
    return DisclosureJob(
        submission_id=submission_id,
        image=image,
        model_dir=model_dir,
        dataset_dir=settings.M2D_DATASET_DIR,
        split=SplitSpec(
            csv=settings.M2D_DISCLOSURE_SPLIT_CSV,
            case_column=settings.M2D_DISCLOSURE_CASE_COLUMN,
            label_column=settings.M2D_DISCLOSURE_LABEL_COLUMN,
            positive_label=settings.M2D_DISCLOSURE_POSITIVE_LABEL,
            split_column=settings.M2D_DISCLOSURE_SPLIT_COLUMN,
            train_values=tuple(settings.M2D_DISCLOSURE_TRAIN_VALUES),
            held_out_values=tuple(settings.M2D_DISCLOSURE_HELD_OUT_VALUES),
        ),
        work_dir=work_dir,
        disclosure_image=settings.M2D_DISCLOSURE_IMAGE,
        run_uid=settings.M2D_RUN_UID,
        timeout=settings.M2D_DISCLOSURE_TIMEOUT,
        memory=settings.M2D_DISCLOSURE_MEMORY,
        cpus=settings.M2D_DISCLOSURE_CPUS,
        max_cases=settings.M2D_DISCLOSURE_MAX_CASES,
        model_path=model_path,
        labels={docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE, docker_api.LABEL_ROLE: "disclosure"},
        attack_timeout=settings.M2D_DISCLOSURE_ATTACK_TIMEOUT,
        min_cases=settings.M2D_DISCLOSURE_MIN_CASES,
    )
