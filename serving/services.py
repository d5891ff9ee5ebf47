"""Writes of serving: scaling a deployment, the workers' lifecycle as the runner reports it, and
the audit row of every prediction."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hosts.selectors import free_gpu_slots, gpu_hosts, lock_slots_of, slots_held
from modelstore.models import ModelVersion
from runner.dispatch import reconcile_serving, wake_run_slots

from . import notifications, selectors
from .errors import InvalidScale, NoGpuHost, NoSlotFree, NotServable, ScaleInProgress
from .models import Deployment, DeploymentEvent, Prediction, ServeWorker


def deployment_scale(
    *, by, version: ModelVersion, min_workers: int, max_workers: int | None = None, gpu: bool | None = None
) -> Deployment:
    """Ask for between `min_workers` and `max_workers` workers of a version; the reconciler starts
    and stops containers to follow. While an earlier scale to other counts is still on its way
    (serving.selectors.scale_in_progress), a new one is refused (409, as in TorchServe's API),
    except a stop (0 and 0), which ends any scale. `gpu` asks for a GPU per worker (None keeps
    what the deployment had): refused while no host offers GPU slots."""
    max_workers = min_workers if max_workers is None else max_workers
    if min_workers < 0 or max_workers < 0:
        raise InvalidScale("min_worker and max_worker are counts: 0 or more.")
    if max_workers < min_workers:
        raise InvalidScale("max_worker cannot be less than min_worker.")
    if max_workers > settings.M2D_SERVE_MAX_WORKERS:
        raise InvalidScale(
            f"max_worker is at most {settings.M2D_SERVE_MAX_WORKERS} on this platform (M2D_SERVE_MAX_WORKERS)."
        )
    if version.state != ModelVersion.State.REGISTERED and min_workers:
        raise NotServable(f"{version.model.name} version {version.number} is retired; it cannot be served.")
    with transaction.atomic():
        deployment, _ = Deployment.objects.select_for_update().get_or_create(version=version)
        gpu = deployment.gpu if gpu is None else gpu
        if gpu and max_workers and not gpu_hosts():
            raise NoGpuHost(
                f"No host of this platform has GPU slots, so {version.model.name} version {version.number} "
                "cannot be served on a GPU. A host offers its GPUs with M2D_GPU_IDS; scale without gpu=true "
                "to serve on CPUs."
            )
        if gpu and min_workers:
            _refuse_without_free_gpus(deployment, version, min_workers)
        if (deployment.min_workers, deployment.max_workers, deployment.gpu) == (min_workers, max_workers, gpu):
            if selectors.scale_in_progress(deployment):
                return deployment  # the same scale asked again: the caller waits for the one in progress
        elif max_workers and (doing := selectors.scale_in_progress(deployment)):  # stopping is never refused
            seconds = (timezone.now() - deployment.updated_at).total_seconds()
            raise ScaleInProgress(
                f"Another scale of {version.model.name} version {version.number} is in progress "
                f"(to {deployment.min_workers}–{deployment.max_workers} workers, asked {seconds:.0f} s ago; {doing}). "
                "Try again when it is done, or ask for the same counts to wait for it."
            )
        deployment.min_workers, deployment.max_workers, deployment.updated_by = min_workers, max_workers, by
        deployment.gpu = gpu
        deployment.save()
        DeploymentEvent.objects.create(
            deployment=deployment,
            by=by,
            comment=f"scaled to {min_workers}–{max_workers} workers" + (", a GPU each" if gpu else ""),
        )
        transaction.on_commit(reconcile_serving)
    return deployment


def _refuse_without_free_gpus(deployment: Deployment, version: ModelVersion, wanted: int) -> None:
    held = deployment.workers.filter(state__in=selectors.LIVE).exclude(slot="").count()
    free = free_gpu_slots()
    if wanted - held > len(free):
        raise NoSlotFree(
            f"{version.model.name} version {version.number} needs {wanted - held} more GPU slot(s) and "
            f"{len(free)} {'is' if len(free) == 1 else 'are'} free now: runs and other serving workers hold the "
            "rest. Try again later, or ask for fewer workers."
        )


def worker_begin(
    *, deployment: Deployment, host: str = "", gpu_slots: dict[str, str] | None = None
) -> ServeWorker | None:
    """Record a worker about to start. A GPU deployment's worker takes the first of the host's GPU
    slots (label -> GPU id) that no run and no other serving worker holds, under the host's lock
    that runs claim under too; None when every one is taken."""
    relay = settings.M2D_SERVE_RELAY_URL
    if not deployment.gpu:
        return ServeWorker.objects.create(deployment=deployment, host=host, relay=relay)
    with transaction.atomic():
        lock_slots_of(host)
        held = slots_held(list(gpu_slots or {}))
        free = [label for label in gpu_slots or {} if label not in held]
        if not free:
            return None
        return ServeWorker.objects.create(
            deployment=deployment, host=host, relay=relay, slot=free[0], gpu_id=gpu_slots[free[0]]
        )


def worker_ready(*, worker: ServeWorker, container: str, seconds: float) -> None:
    """A worker answers: the failures in a row are over, and a degraded deployment recovers."""
    with transaction.atomic():
        ServeWorker.objects.filter(pk=worker.pk, state=ServeWorker.State.STARTING).update(
            state=ServeWorker.State.READY, container=container, ready_at=timezone.now()
        )
        deployment = Deployment.objects.select_for_update().get(pk=worker.deployment_id)
        if deployment.state == Deployment.State.DEGRADED:
            DeploymentEvent.objects.create(
                deployment=deployment,
                comment=f"recovered: worker {worker.pk} is ready after {deployment.failures_in_a_row} failed starts",
            )
        Deployment.objects.filter(pk=deployment.pk).update(
            last_cold_start_seconds=seconds, failures_in_a_row=0, next_start_at=None, state=Deployment.State.OK
        )


def worker_start_failed(*, worker: ServeWorker, reason: str) -> Deployment:
    """A worker that never became ready. The next start waits a pause that doubles with each
    failure in a row (no restart storm); after M2D_SERVE_DEGRADED_AFTER of them the deployment is
    degraded, and its owner and the admins get one mail until it recovers."""
    worker_end(worker=worker, failed=True, reason=reason)
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=worker.deployment_id)
        deployment.failures_in_a_row += 1
        pause = min(
            settings.M2D_SERVE_RESTART_BACKOFF * 2 ** (deployment.failures_in_a_row - 1),
            settings.M2D_SERVE_RESTART_BACKOFF_MAX,
        )
        deployment.next_start_at = timezone.now() + timedelta(seconds=pause)
        DeploymentEvent.objects.create(
            deployment=deployment,
            comment=f"{deployment.failures_in_a_row} failed start(s) in a row; the next try in {pause:g} s",
        )
        newly_degraded = (
            deployment.state == Deployment.State.OK
            and deployment.failures_in_a_row >= settings.M2D_SERVE_DEGRADED_AFTER
        )
        if newly_degraded:
            deployment.state = Deployment.State.DEGRADED
            DeploymentEvent.objects.create(
                deployment=deployment, comment=f"degraded after {deployment.failures_in_a_row} failed starts in a row"
            )
            transaction.on_commit(lambda: notifications.deployment_degraded(deployment.pk, reason))
        deployment.save(update_fields=["failures_in_a_row", "next_start_at", "state"])
    return deployment


def worker_start_fault(*, worker: ServeWorker, reason: str) -> Deployment:
    """A worker whose start the platform cut short (the engine went away, the store's bytes are not
    those registered, the image could not be made again): not the model's failure. It does not count
    toward the failures in a row nor degrade the deployment; the next start waits the first pause."""
    worker_end(worker=worker, failed=True, reason=f"the platform failed, not the model: {reason}")
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=worker.deployment_id)
        deployment.next_start_at = timezone.now() + timedelta(seconds=settings.M2D_SERVE_RESTART_BACKOFF)
        deployment.save(update_fields=["next_start_at"])
    return deployment


def worker_post_mortem(*, worker_id: int, cause: str) -> None:
    """What the engine says ended a failed worker's container (out of memory, its exit code)."""
    worker = ServeWorker.objects.filter(pk=worker_id, state=ServeWorker.State.FAILED).first()
    if worker is not None and cause not in worker.reason:
        ServeWorker.objects.filter(pk=worker_id).update(reason=f"{worker.reason} ({cause})"[:2000])


def worker_end(*, worker: ServeWorker, failed: bool, reason: str) -> None:
    state = ServeWorker.State.FAILED if failed else ServeWorker.State.STOPPED
    ended = (
        ServeWorker.objects.filter(pk=worker.pk)
        .exclude(state__in=(ServeWorker.State.FAILED, ServeWorker.State.STOPPED))
        .update(state=state, ended_at=timezone.now(), reason=reason[:2000])
    )
    if ended and worker.slot:
        transaction.on_commit(wake_run_slots)  # its GPU slot may take a queued run now
    if failed:
        DeploymentEvent.objects.create(
            deployment_id=worker.deployment_id, comment=f"worker {worker.pk} failed: {reason[:500]}"
        )


def prediction_record(**fields) -> Prediction:
    """The audit row of a request refused or failed before a worker was asked."""
    return Prediction.objects.create(**fields)


def prediction_begin(**fields) -> Prediction:
    """The audit row of a request about to be handed to a worker, in flight until prediction_end."""
    return Prediction.objects.create(status=selectors.NO_ANSWER_YET, **fields)


def prediction_end(*, prediction: Prediction, **fields) -> None:
    """The answer (or refusal) of a request in flight: its status, outputs or error, and times."""
    Prediction.objects.filter(pk=prediction.pk).update(**fields)
