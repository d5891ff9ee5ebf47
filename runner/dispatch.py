"""Sending work to the workers. Messages only wake workers up: the database is the record, so a
message lost to a broker outage delays work by at most one reconciler period, and never fails
the request that sent it. Tasks are sent by name: the rest of the platform never imports the
runner's workers, only this module."""

import logging

from django.conf import settings

from m2d.celery import app
from submissions.queue import serving_queue

log = logging.getLogger(__name__)


def _send(task: str, args: tuple, queue: str) -> None:
    try:
        app.send_task(task, args, queue=queue, retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2})
    except Exception as exc:  # the broker is down: the reconciler sends it again later
        log.warning("could not send %s%s to queue %s (%s); the reconciler will", task, args, queue, exc)


def queue_length(queue: str) -> int | None:
    """Messages waiting in a queue, or None when the broker cannot say."""
    try:
        with app.connection_for_write() as conn:
            return conn.default_channel.client.llen(queue)
    except Exception:
        return None


def request_build(submission_id: int) -> None:
    _send("runner.tasks.build_submission", (submission_id,), settings.M2D_QUEUE_BUILD)


def wake_run_slots(passed_on: bool = False) -> None:
    """Wake one free run slot, of whichever run worker takes the message first. A host that may
    take no new work hands on a wake-up it took, once (`passed_on`)."""
    _send("runner.tasks.wake_run_slots", (True,) if passed_on else (), settings.M2D_QUEUE_RUN)


def stop_taking_runs(worker: str) -> bool:
    """Ask a run worker (by its node name) to take no more messages from the run queue; whether
    it said it stopped."""
    try:
        replies = app.control.cancel_consumer(settings.M2D_QUEUE_RUN, destination=[worker], reply=True, timeout=2)
    except Exception as exc:
        log.warning("could not ask %s to stop taking runs (%s)", worker, exc)
        return False
    return bool(replies)


def take_runs_again(worker: str) -> None:
    try:
        app.control.add_consumer(settings.M2D_QUEUE_RUN, destination=[worker])
    except Exception as exc:  # the next heartbeat asks again
        log.warning("could not ask %s to take runs again (%s)", worker, exc)


def stop_run(submission_id: int) -> None:
    """Ask a maintenance worker to stop a cancelled run's container (the run worker is busy
    waiting on it)."""
    _send("runner.tasks.stop_cancelled_run", (submission_id,), settings.M2D_QUEUE_OPS)


def reconcile_serving() -> None:
    """Ask the serving agents to make the serving containers follow the deployments: the first
    host's maintenance worker, and each further serving host's agent on its own queue."""
    from hosts.models import Host  # hosts' models know their relays; the hosts app sends this too

    _send("runner.tasks.reconcile_serving", (), settings.M2D_QUEUE_OPS)
    for host in Host.objects.exclude(serve_relay="").values_list("name", flat=True):
        _send("runner.tasks.reconcile_serving", (), serving_queue(host))


def assess_disclosure(submission_id: int) -> None:
    """Ask a run worker (next to the data) to assess the disclosure risk of a run's exports."""
    _send("runner.tasks.assess_disclosure", (submission_id,), settings.M2D_QUEUE_RUN)
