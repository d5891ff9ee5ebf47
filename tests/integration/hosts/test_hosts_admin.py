"""What an admin sees of the hosts and does to them: the dashboard's panel (slots, what runs where,
heartbeat age, health, drain), the admin's drain action and the drain command."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from hosts.facts import HostFacts
from hosts.models import Host
from hosts.services import host_drain, host_report, host_serves
from submissions.models import Submission
from tests.helpers import sign_in_with_second_factor


def report(name, *, free=100 * 1024**3, gpus=(), cpu=2):
    return host_report(
        facts=HostFacts(
            name=name,
            cpu_slots=cpu,
            gpu_ids=tuple(gpus),
            engine_ok=True,
            engine_problem="",
            disk_free_bytes=free,
            disk_path="/srv/m2d/export-volumes",
        )
    )


@pytest.fixture
def steward(db):
    user = get_user_model().objects.create_superuser("steward", "steward@hospital.example", "Staff-pass-1-xyz")
    user.first_name, user.last_name = "Anna", "de Vries"
    user.save()
    return user


@pytest.fixture
def staff(steward):
    client = Client()
    sign_in_with_second_factor(client, steward)
    return client


def running_on(slot: str) -> Submission:
    owner = get_user_model().objects.create_user(f"r-{slot.replace('/', '-')}", f"{slot.replace('/', '.')}@example.org")
    return Submission.objects.create(
        owner=owner, status="running", slot=slot, archive="x.zip", archive_sha256="0" * 64, heartbeat_at=timezone.now()
    )


def serve_on(host: str, submission: Submission) -> None:
    from modelstore.models import ModelVersion, RegisteredModel
    from serving.models import Deployment, ServeWorker

    model = RegisteredModel.objects.create(name="pcam-classification", owner=submission.owner, dataset="pcam", task="c")
    version = ModelVersion.objects.create(model=model, number=3, submission=submission, created_by=submission.owner)
    deployment = Deployment.objects.create(version=version, min_workers=1, max_workers=1)
    ServeWorker.objects.create(deployment=deployment, host=host, state="ready")
    ServeWorker.objects.create(deployment=deployment, host=host, state="failed")


def test_the_dashboard_shows_each_host_its_slots_runs_heartbeat_and_health(staff, steward, settings):
    settings.M2D_HOST_MIN_FREE_BYTES = 1024**3
    report("gpu-1", gpus=("0", "1"))
    report("cpu-full", free=5 * 1024**2)
    report("cpu-gone")
    Host.objects.filter(name="cpu-gone").update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    host_drain(by=steward, host=report("cpu-drained"), note="new disks")
    run = running_on("gpu-1/gpu1")
    serve_on("cpu-drained", run)
    host_serves(name="cpu-drained", relay="http://10.0.0.3:8790")

    page = staff.get("/submissions/dashboard/").content.decode()
    rows = {
        name: page.split(f'id="host-{name}"', 1)[1].split("</tr>", 1)[0]
        for name in ["gpu-1", "cpu-full", "cpu-gone", "cpu-drained"]
    }

    assert "2 GPU (0, 1)" in rows["gpu-1"] and "healthy" in rows["gpu-1"]
    assert 'gpu-1/gpu0: <span class="muted">free' in rows["gpu-1"]
    assert f'gpu-1/gpu1: <a href="/submissions/{run.pk}/">#{run.pk}</a>' in rows["gpu-1"]
    assert "0 s ago" in rows["gpu-1"] or "1 s ago" in rows["gpu-1"]
    assert (
        "unhealthy" in rows["cpu-full"]
        and "5.0 MiB free, under the 1.0 GiB of M2D_HOST_MIN_FREE_BYTES" in rows["cpu-full"]
    )
    assert "silent" in rows["cpu-gone"] and "5 min" in rows["cpu-gone"]
    assert "draining" in rows["cpu-drained"] and "Anna de Vries" in rows["cpu-drained"]
    assert "2 CPU" in rows["cpu-drained"] and "Lift the drain" in rows["cpu-drained"]
    assert "serving: pcam-classification 3</div>" in rows["cpu-drained"]  # the live worker, not the failed one
    assert "serving:" not in rows["gpu-1"]
    assert "reached through its relay http://10.0.0.3:8790" in rows["cpu-drained"]
    assert "relay" not in rows["gpu-1"]


def test_the_admin_drains_a_host_and_lifts_the_drain(staff, steward):
    host = report("gpu-2", gpus=("0",))
    drain = {"action": "drain", "_selected_action": [host.pk]}
    page = staff.post("/admin/hosts/host/", drain, follow=True).content.decode()
    assert "Draining gpu-2." in page
    host.refresh_from_db()
    assert host.draining and host.drain_requested_by == steward
    assert "Those hosts were draining already." in staff.post("/admin/hosts/host/", drain, follow=True).content.decode()
    page = staff.post("/admin/hosts/host/", {**drain, "action": "undrain"}, follow=True).content.decode()
    assert "Drain lifted: gpu-2 takes work again." in page
    host.refresh_from_db()
    assert not host.draining
    assert list(host.events.values_list("note", "by__username"))[1:] == [
        ("drained", "steward"),
        ("drain lifted", "steward"),
    ]
    assert staff.get("/admin/hosts/host/add/").status_code == 403  # hosts register themselves


def test_the_drain_command_drains_reports_what_still_runs_and_undoes(steward, capsys):
    report("gpu-3", gpus=("0", "1"))
    run = running_on("gpu-3/gpu0")
    call_command("drain_host", "gpu-3", "--by", "steward@hospital.example", "--note", "driver update")
    out = capsys.readouterr().out
    assert "gpu-3 takes no new work." in out and f"Still running there: submissions {run.pk}" in out
    with pytest.raises(CommandError, match=f"gpu-3 still runs submissions {run.pk} after 1 s"):
        call_command("drain_host", "gpu-3", "--wait", "--timeout", "1")
    Submission.objects.filter(pk=run.pk).update(status="succeeded")
    call_command("drain_host", "gpu-3", "--wait", "--timeout", "10")
    out = capsys.readouterr().out
    assert "gpu-3 was draining already." in out and "Nothing runs on gpu-3: it can be stopped." in out
    call_command("drain_host", "gpu-3", "--undo")
    assert "gpu-3 takes new work again." in capsys.readouterr().out
    notes = list(Host.objects.get(name="gpu-3").events.values_list("note", "by__username"))
    assert notes[1:] == [("drained: driver update", "steward"), ("drain lifted", None)]
    with pytest.raises(CommandError, match="No host is called 'gpu-9'; the hosts are: gpu-3."):
        call_command("drain_host", "gpu-9")


def test_metrics_count_hosts_by_state_and_give_each_ones_health(client, settings, steward):
    from prometheus_client.parser import text_string_to_metric_families

    settings.M2D_METRICS_TOKEN = token = "scrape-token-for-tests-0123456789"
    settings.M2D_HOST_MIN_FREE_BYTES = 1024**3
    report("ok-1")
    report("full-1", free=1024)
    report("gone-1")
    Host.objects.filter(name="gone-1").update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    host_drain(by=steward, host=report("drained-1"))
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }
    states = {labels[0][1]: value for (name, labels), value in samples.items() if name == "m2d_hosts"}
    assert states == {"healthy": 1, "unhealthy": 1, "silent": 1, "draining": 1}
    assert samples[("m2d_host_healthy", (("host", "full-1"),))] == 0
    assert samples[("m2d_host_disk_free_bytes", (("host", "full-1"),))] == 1024
    assert samples[("m2d_host_heartbeat_age_seconds", (("host", "gone-1"),))] >= 300
