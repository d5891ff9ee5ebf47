"""Prometheus metrics, computed from the database at scrape time.

Web, workers and beat are separate processes (and hosts); counters kept in one process's memory
would disagree with each other and reset at every restart. The database already records every
state change (SubmissionEvent), so every figure here is derived from it, and whichever web
process answers the scrape gives the same numbers.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from hosts.models import Host
from hosts.selectors import silent_before
from serving import selectors as serving_selectors
from serving.models import Deployment, Prediction, ServeWorker
from submissions.models import Submission, SubmissionEvent

from .health import redis_client
from .models import MailFailure, OutgoingMail

S = Submission.Status
INF = float("inf")

BUILD_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, INF)
WAIT_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400, INF)
RUN_BUCKETS = (10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, INF)
PREDICT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, INF)


def state_durations(events: Iterable[tuple[int, str, object]]) -> dict[str, list[float]]:
    """Seconds spent in each state, from (submission_id, to_status, at) rows ordered by submission
    and time. A state's stay ends at the submission's next event; stays not yet over are left out."""
    durations: dict[str, list[float]] = defaultdict(list)
    previous = None
    for submission_id, to_status, at in events:
        if previous is not None and previous[0] == submission_id:
            durations[previous[1]].append((at - previous[2]).total_seconds())
        previous = (submission_id, to_status, at)
    return durations


def histogram(name: str, doc: str, values: list[float], buckets: tuple[float, ...]) -> HistogramMetricFamily:
    values = sorted(values)
    cumulative = [(str(float(b)) if b != INF else "+Inf", bisect.bisect_right(values, b)) for b in buckets]
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=sum(values))


class PlatformCollector:
    def collect(self) -> Iterator[Metric]:
        yield from self._submissions()
        yield from self._durations()
        yield from self._slots()
        yield from self._hosts()
        yield from self._tracking()
        yield from self._mail()
        yield from self._broker()
        yield from self._serving()

    def _submissions(self) -> Iterator[Metric]:
        by_status = dict(Submission.objects.values_list("status").annotate(n=Count("id")).order_by())
        gauge = GaugeMetricFamily("m2d_submissions", "Submissions by current state.", labels=["status"])
        for status in S.values:
            gauge.add_metric([status], by_status.get(status, 0))
        yield gauge
        total = CounterMetricFamily("m2d_submissions_received", "Submissions accepted since the platform began.")
        total.add_metric([], sum(by_status.values()))
        yield total

        failures = CounterMetricFamily(
            "m2d_submission_failures", "Submissions that ended badly, by stage and outcome.", labels=["stage", "status"]
        )
        rows = (
            Submission.objects.filter(status__in=[S.FAILED, S.TIMED_OUT])
            .values_list("failure_stage", "status")
            .annotate(n=Count("id"))
            .order_by()
        )
        found = {(stage or "unknown", status): n for stage, status, n in rows}
        for stage in Submission.Stage.values:
            found.setdefault((stage, S.FAILED), 0)
        for (stage, status), n in sorted(found.items()):
            failures.add_metric([stage, status], n)
        yield failures

        queue = GaugeMetricFamily("m2d_queue_length", "Submissions built and waiting for a run slot.")
        queue.add_metric([], by_status.get(S.QUEUED, 0))
        yield queue
        oldest = (
            SubmissionEvent.objects.filter(submission__status=S.QUEUED, to_status=S.QUEUED)
            .values("submission")
            .annotate(since=Max("at"))
            .order_by("since")
            .values_list("since", flat=True)
            .first()
        )
        age = GaugeMetricFamily(
            "m2d_queue_oldest_wait_seconds", "How long the longest-waiting queued submission has waited."
        )
        age.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
        yield age

    def _durations(self) -> Iterator[Metric]:
        events = (
            SubmissionEvent.objects.order_by("submission_id", "at", "id")
            .values_list("submission_id", "to_status", "at")
            .iterator(chunk_size=5000)
        )
        durations = state_durations(events)
        yield histogram(
            "m2d_build_duration_seconds", "Time from build start to its end.", durations[S.BUILDING], BUILD_BUCKETS
        )
        yield histogram(
            "m2d_queue_wait_seconds", "Time from built to a run slot taking it.", durations[S.QUEUED], WAIT_BUCKETS
        )
        yield histogram(
            "m2d_run_duration_seconds", "Time from run start to its end.", durations[S.RUNNING], RUN_BUCKETS
        )

    def _slots(self) -> Iterator[Metric]:
        runs = Counter(
            dict(
                SubmissionEvent.objects.filter(to_status=S.RUNNING)
                .exclude(submission__slot="")
                .values_list("submission__slot")
                .annotate(n=Count("id"))
                .order_by()
            )
        )
        busy = dict(Submission.objects.filter(status=S.RUNNING).values_list("slot").annotate(n=Count("id")).order_by())
        started = CounterMetricFamily("m2d_runs", "Runs started, by run slot (one slot per GPU).", labels=["slot"])
        running = GaugeMetricFamily("m2d_slot_busy", "Runs in progress, by run slot.", labels=["slot"])
        for slot in sorted(set(runs) | set(busy)):
            started.add_metric([slot], runs.get(slot, 0))
            running.add_metric([slot], busy.get(slot, 0))
        yield started
        yield running

    def _hosts(self) -> Iterator[Metric]:
        now, silent = timezone.now(), silent_before()
        states = GaugeMetricFamily(
            "m2d_hosts",
            "Hosts by state: draining (an admin's choice), silent (no heartbeat for three periods), "
            "unhealthy (engine or disk), healthy.",
            labels=["state"],
        )
        age = GaugeMetricFamily(
            "m2d_host_heartbeat_age_seconds", "Seconds since the host's last heartbeat.", labels=["host"]
        )
        healthy = GaugeMetricFamily(
            "m2d_host_healthy", "1 when the host's last heartbeat found it healthy.", labels=["host"]
        )
        free = GaugeMetricFamily(
            "m2d_host_disk_free_bytes", "The least free space of the folders the host writes to.", labels=["host"]
        )
        counts = Counter({"draining": 0, "silent": 0, "unhealthy": 0, "healthy": 0})
        for host in Host.objects.order_by("name"):
            stale = host.heartbeat_at is None or host.heartbeat_at < silent
            if host.draining:
                counts["draining"] += 1
            elif stale:
                counts["silent"] += 1
            else:
                counts["unhealthy" if host.problem else "healthy"] += 1
            if host.heartbeat_at:
                age.add_metric([host.name], (now - host.heartbeat_at).total_seconds())
            healthy.add_metric([host.name], 0 if host.problem else 1)
            if host.disk_free_bytes is not None:
                free.add_metric([host.name], host.disk_free_bytes)
        for state, n in counts.items():
            states.add_metric([state], n)
        yield from (states, age, healthy, free)

    def _tracking(self) -> Iterator[Metric]:
        sums = Submission.objects.aggregate(calls=Sum("tracking_calls"), bytes=Sum("tracking_bytes"))
        traffic = CounterMetricFamily(
            "m2d_tracking_gateway_bytes", "Bytes runs exchanged with MLflow through the gateway."
        )
        traffic.add_metric([], sums["bytes"] or 0)
        yield traffic
        calls = CounterMetricFamily("m2d_tracking_gateway_calls", "Calls runs made to MLflow through the gateway.")
        calls.add_metric([], sums["calls"] or 0)
        yield calls

    def _mail(self) -> Iterator[Metric]:
        failures = CounterMetricFamily("m2d_email_failures", "E-mails the mail server did not take.")
        failures.add_metric([], MailFailure.objects.count())
        yield failures
        waiting = GaugeMetricFamily("m2d_email_outbox", "E-mails stored and not yet taken by the mail server.")
        waiting.add_metric([], OutgoingMail.objects.count())
        yield waiting

    def _broker(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("m2d_broker_up", "Whether Redis, the task broker, answered this scrape.")
        waiting = GaugeMetricFamily("m2d_broker_messages", "Task messages waiting in a Celery queue.", labels=["queue"])
        try:
            client = redis_client()
            for queue in settings.CELERY_TASK_QUEUES:
                waiting.add_metric([queue.name], client.llen(queue.name))
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield waiting

    def _serving(self) -> Iterator[Metric]:
        """Predictions from their audit rows (refusals included), workers from theirs."""
        requests = CounterMetricFamily(
            "m2d_serving_requests",
            "Prediction requests, by model, version and HTTP status (interrupted: the gateway stopped mid-request).",
            labels=["model", "version", "code"],
        )
        # A request in flight is counted once it is answered, under the status it gets.
        cutoff = serving_selectors.interrupted_before()
        rows = (
            Prediction.objects.exclude(status=serving_selectors.NO_ANSWER_YET, at__gte=cutoff)
            .values_list("model_name", "version__number", "status")
            .annotate(n=Count("id"))
        )
        for model, version, code, n in rows.order_by():
            label = "interrupted" if code == serving_selectors.NO_ANSWER_YET else str(code)
            requests.add_metric([model, str(version or ""), label], n)
        yield requests

        latency = HistogramMetricFamily(
            "m2d_serving_request_seconds",
            "Time to answer a prediction, refusals included.",
            labels=["model", "version"],
        )
        buckets = {f"le{i}": Count("id", filter=Q(total_seconds__lte=b)) for i, b in enumerate(PREDICT_BUCKETS[:-1])}
        timed = Prediction.objects.exclude(total_seconds=None).values_list("model_name", "version__number")
        for row in timed.annotate(n=Count("id"), total=Sum("total_seconds"), **buckets).order_by():
            model, version, n, total, *counts = row
            cumulative = [(str(float(b)), c) for b, c in zip(PREDICT_BUCKETS[:-1], counts, strict=True)]
            latency.add_metric([model, str(version or "")], cumulative + [("+Inf", n)], total or 0.0)
        yield latency

        workers = GaugeMetricFamily(
            "m2d_serving_workers",
            "Serving workers now, by model, version and state.",
            labels=["model", "version", "state"],
        )
        restarts = CounterMetricFamily(
            "m2d_serving_worker_failures",
            "Serving workers that failed (each one replaced).",
            labels=["model", "version"],
        )
        cold = GaugeMetricFamily(
            "m2d_serving_cold_start_seconds", "The last worker's time from start to ready.", labels=["model", "version"]
        )
        degraded = GaugeMetricFamily(
            "m2d_serving_degraded", "1 when a deployment's workers keep failing to start.", labels=["model", "version"]
        )
        counts = Counter(
            {
                (d, state): n
                for d, state, n in ServeWorker.objects.values_list("deployment_id", "state")
                .annotate(n=Count("id"))
                .order_by()
            }
        )
        for deployment in Deployment.objects.select_related("version__model").order_by("pk"):
            labels = [deployment.version.model.name, str(deployment.version.number)]
            for state in (ServeWorker.State.STARTING, ServeWorker.State.READY):
                workers.add_metric([*labels, state], counts[(deployment.pk, state)])
            restarts.add_metric(labels, counts[(deployment.pk, ServeWorker.State.FAILED)])
            if deployment.last_cold_start_seconds is not None:
                cold.add_metric(labels, deployment.last_cold_start_seconds)
            degraded.add_metric(labels, int(deployment.state == Deployment.State.DEGRADED))
        yield workers
        yield restarts
        yield cold
        yield degraded


def render() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector())
    return generate_latest(registry)
