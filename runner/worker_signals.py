"""How a run worker process learns its slot, how a restarted run worker picks up the runs its
predecessor left running, and how a host's run and maintenance workers keep its heartbeat."""

import logging
import os

from billiard.process import current_process
from celery import signals
from django.conf import settings

from submissions.queue import slots

from . import host_health, pipeline
from .dispatch import take_runs_again, wake_run_slots

log = logging.getLogger(__name__)


@signals.worker_process_init.connect
def take_slot_of_pool_index(**kwargs):
    # Pool processes keep their index when replaced, so a restarted process gets the same slot.
    index = getattr(current_process(), "index", None)
    if index is not None:
        os.environ["M2D_SLOT_INDEX"] = str(index)


@signals.worker_ready.connect
def adopt_orphans_on_start(sender=None, **kwargs):
    consumed = set(sender.app.amqp.queues.consume_from or {}) if sender is not None else set()
    if consumed & {settings.M2D_QUEUE_RUN, settings.M2D_QUEUE_OPS}:
        # Run slots and serving workers go only to hosts heard of lately.
        listen = _listen_again_once_it_takes_work(sender) if settings.M2D_QUEUE_RUN in consumed else None
        host_health.start_heartbeat(on_beat=listen)
    if settings.M2D_QUEUE_RUN in consumed:
        # Runs queued again elsewhere while this worker was away stop here now, whichever worker
        # the wakes below reach.
        pipeline.clear_leftovers(*slots())
        # One wake per slot: each slot first waits for its own orphaned run, then takes work.
        for _ in range(max(len(settings.M2D_GPU_IDS), settings.M2D_CPU_SLOTS)):
            wake_run_slots()


def _listen_again_once_it_takes_work(consumer):
    """A run worker stops listening for wake-ups while its host takes no new work (pipeline.wake);
    its heartbeat has it listen again once the host may take work."""

    def on_beat(takes_work: bool) -> None:
        if takes_work and settings.M2D_QUEUE_RUN not in (consumer.app.amqp.queues.consume_from or {}):
            log.info("this host takes work again: listening for wake-ups")
            take_runs_again(consumer.hostname)

    return on_beat
