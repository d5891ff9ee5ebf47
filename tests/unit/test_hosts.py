"""The host registry: a host's heartbeat records its health, and a host that is unhealthy or
draining claims no new work while the others go on. Runs on SQLite and, in `make test`, on
PostgreSQL too."""

import pytest
from django.contrib.auth import get_user_model

from hosts import selectors
from hosts.facts import HostFacts
from hosts.models import Host
from hosts.services import host_drain, host_report, host_undrain
from runner import host_health, scheduling
from submissions.models import Submission

S = Submission.Status
A = scheduling.Slot("host-a", "cpu0", None)
B = scheduling.Slot("host-b", "cpu0", None)


def facts(name, *, engine_ok=True, free=100 * 1024**3, gpus=()):
    return HostFacts(
        name=name,
        cpu_slots=2,
        gpu_ids=tuple(gpus),
        engine_ok=engine_ok,
        engine_problem="" if engine_ok else "connection refused",
        disk_free_bytes=free,
        disk_path="/srv/m2d/export-volumes",
    )


@pytest.fixture
def queued(db):
    owner = get_user_model().objects.create_user("r", "r@example.org")
    return [
        Submission.objects.create(owner=owner, status=S.QUEUED, archive="x.zip", archive_sha256="0" * 64)
        for _ in range(2)
    ]


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_user("admin", "admin@example.org", is_staff=True)


def test_a_draining_host_claims_nothing_and_the_others_go_on(queued, admin_user, settings):
    settings.M2D_MAX_RUNNING_PER_RESEARCHER = 0
    host_report(facts=facts("host-b"))
    assert host_drain(by=admin_user, host=Host.objects.get(name="host-b"))
    assert scheduling.claim_next(B) is None
    assert scheduling.claim_next(A).pk == queued[0].pk
    host_undrain(by=admin_user, host=Host.objects.get(name="host-b"))
    assert scheduling.claim_next(B).pk == queued[1].pk


def test_an_unhealthy_host_claims_nothing_until_it_is_healthy_again(queued, settings):
    settings.M2D_HOST_MIN_FREE_BYTES = 1024**3
    host = host_report(facts=facts("host-b", free=10 * 1024**2))
    assert "/srv/m2d/export-volumes has 10.0 MiB free, under the 1.0 GiB of M2D_HOST_MIN_FREE_BYTES" in host.problem
    assert scheduling.claim_next(B) is None
    host = host_report(facts=facts("host-b", engine_ok=False))
    assert host.problem == "its Docker engine does not answer (connection refused)"
    assert scheduling.claim_next(B) is None
    host_report(facts=facts("host-b"))
    assert scheduling.claim_next(B).pk == queued[0].pk
    notes = list(Host.objects.get(name="host-b").events.values_list("note", flat=True))
    assert notes[0] == "first heartbeat"
    assert notes[1].startswith("unhealthy: /srv/m2d/export-volumes has 10.0 MiB free")
    assert notes[2:] == ["unhealthy: its Docker engine does not answer (connection refused)", "healthy again"]


def test_drain_and_undrain_are_audited_and_said_once(admin_user):
    host = host_report(facts=facts("host-b"))
    assert host_drain(by=admin_user, host=host, note="disk swap")
    assert not host_drain(by=admin_user, host=host)
    assert (host.draining, host.drain_requested_by) == (True, admin_user)
    assert host_undrain(by=admin_user, host=host)
    assert not host_undrain(by=admin_user, host=host)
    events = list(host.events.values_list("note", "by__username"))
    assert events[1:] == [("drained: disk swap", "admin"), ("drain lifted", "admin")]


def test_serving_workers_go_to_healthy_hosts_with_the_slot_kind(admin_user):
    Host.objects.all().delete()  # hosts the suite's live workers reported: only these four here
    host_report(facts=facts("cpu-1"))
    host_report(facts=facts("cpu-2", free=0))
    host_report(facts=facts("gpu-1", gpus=("0", "1")))
    host_report(facts=facts("gpu-2", gpus=("0",)))
    host_drain(by=admin_user, host=Host.objects.get(name="gpu-2"))
    assert selectors.placeable_hosts("cpu") == ["cpu-1", "gpu-1"]
    assert selectors.placeable_hosts("gpu") == ["gpu-1"]
    assert Host.objects.get(name="gpu-1").slot_count == 2


def test_this_hosts_facts_name_the_fullest_folder_and_a_silent_engine(db, settings, tmp_path, monkeypatch):
    settings.M2D_HOST_NAME, settings.M2D_CPU_SLOTS, settings.M2D_GPU_IDS = "host-here", 3, []
    settings.M2D_EXPORT_VOLUME_DIR = tmp_path / "volumes"  # not made yet: its parent's disk counts
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    here = host_health.facts_now()
    assert (here.name, here.cpu_slots, here.gpu_ids, here.engine_ok) == ("host-here", 3, (), False)
    assert "no-engine.sock is not reachable" in here.engine_problem
    assert here.disk_free_bytes > 0 and here.disk_path
    settings.M2D_HOST_MIN_FREE_BYTES = here.disk_free_bytes * 1000
    problem = host_health.report()
    assert problem.startswith("its Docker engine does not answer")
    assert f"{here.disk_path} has " in problem and "M2D_HOST_MIN_FREE_BYTES" in problem
    assert not selectors.may_claim("host-here")
