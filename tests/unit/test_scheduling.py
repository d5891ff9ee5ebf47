"""The queue of record: fair order, per-researcher limits, and claims that never double up.
Runs on SQLite and, in `make test`, on PostgreSQL too."""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from runner import scheduling
from submissions.models import Submission
from submissions.progress import QueueView

S = Submission.Status


@pytest.fixture
def owners(db):
    User = get_user_model()
    return [User.objects.create_user(f"r{i}", f"r{i}@example.org") for i in range(3)]


def queued(owner, n=1):
    return [
        Submission.objects.create(owner=owner, status=S.QUEUED, archive="x.zip", archive_sha256="0" * 64)
        for _ in range(n)
    ]


SLOT = scheduling.Slot("host-a", "cpu0", None)


def test_oldest_first_for_one_researcher(owners, settings):
    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 0
    jobs = queued(owners[0], 3)
    claimed = [scheduling.claim_next(SLOT).pk for _ in range(3)]
    assert claimed == [j.pk for j in jobs]
    assert scheduling.claim_next(SLOT) is None


def test_researcher_with_fewer_running_jobs_goes_first(owners, settings):
    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 0
    a, b = owners[0], owners[1]
    a_jobs = queued(a, 10)
    b_job = queued(b)[0]  # submitted after all of A's
    first = scheduling.claim_next(SLOT)
    assert first.pk == a_jobs[0].pk  # nobody runs yet: the oldest
    second = scheduling.claim_next(SLOT)
    assert second.pk == b_job.pk  # A has one running, B none: B next, though newer
    assert scheduling.claim_next(SLOT).pk == a_jobs[1].pk


def test_running_limit_per_researcher(owners, settings):
    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 1
    queued(owners[0], 3)
    assert scheduling.claim_next(SLOT) is not None
    assert scheduling.claim_next(SLOT) is None  # A already runs one; the rest wait
    other = queued(owners[1])[0]
    assert scheduling.claim_next(SLOT).pk == other.pk


def test_claim_records_slot_and_gpu(owners):
    job = queued(owners[0])[0]
    gpu_slot = scheduling.Slot("gpu-host", "gpu3", "3")
    claimed = scheduling.claim_next(gpu_slot)
    assert (claimed.pk, claimed.status, claimed.slot, claimed.gpu_id) == (job.pk, "running", "gpu-host/gpu3", "3")
    assert claimed.heartbeat_at is not None


def test_shown_queue_position_follows_the_fair_order(owners, settings):
    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 0
    a_jobs = queued(owners[0], 3)
    b_job = queued(owners[1])[0]
    scheduling.claim_next(SLOT)  # A's first runs
    queue = QueueView()
    positions = {j.pk: queue.position(Submission.objects.get(pk=j.pk)) for j in [*a_jobs, b_job]}
    assert positions == {a_jobs[0].pk: None, b_job.pk: 1, a_jobs[1].pk: 2, a_jobs[2].pk: 3}


def test_slots_come_from_settings(settings):
    settings.M2D_HOST_NAME, settings.M2D_GPU_IDS = "h", ["0", "2"]
    assert [s.label for s in scheduling.slots()] == ["h/gpu0", "h/gpu2"]
    assert scheduling.slot_for_process(1).gpu_id == "2"
    settings.M2D_GPU_IDS, settings.M2D_CPU_SLOTS = [], 3
    assert [s.label for s in scheduling.slots()] == ["h/cpu0", "h/cpu1", "h/cpu2"]


@pytest.mark.django_db(transaction=True)
def test_many_slots_hammering_the_queue_never_share_a_job(settings):
    """Twelve slots claim from one queue at once, on the real database: every job is taken by
    exactly one slot, and every event is written once."""
    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 0
    owner = get_user_model().objects.create_user("hammer", "hammer@example.org")
    jobs = {j.pk for j in queued(owner, 60)}
    taken: dict[str, list[int]] = {}
    errors = []

    def slot_loop(n: int) -> None:
        slot = scheduling.Slot("host", f"cpu{n}", None)
        mine = taken.setdefault(slot.label, [])
        try:
            while (claimed := scheduling.claim_next(slot)) is not None:
                mine.append(claimed.pk)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=slot_loop, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    claimed = [pk for pks in taken.values() for pk in pks]
    assert sorted(claimed) == sorted(jobs)  # all taken, none twice
    assert Submission.objects.filter(status=S.RUNNING).count() == 60
    for job in Submission.objects.all():
        assert job.events.filter(to_status=S.RUNNING).count() == 1
        assert job.slot in taken and job.pk in taken[job.slot]


def test_a_thousand_queued_jobs_drain_in_order(owners, settings):
    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 0
    jobs = [j.pk for j in queued(owners[0], 1000)]
    drained = []
    while (claimed := scheduling.claim_next(SLOT)) is not None:
        drained.append(claimed.pk)
        Submission.objects.filter(pk=claimed.pk).update(status=S.SUCCEEDED)  # the slot finished it
    assert drained == jobs
