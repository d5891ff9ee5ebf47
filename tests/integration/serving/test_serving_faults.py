"""Serving under abuse and faults, on the real engine: a model that runs out of memory, exits,
floods its log, answers what its card does not declare, fills its socket folder, loads too slowly
or not at all; callers that send 2 GB, a decompression bomb, too few views, or more requests than
the workers take; a worker container killed or restarted behind the platform's back. Each test
prints what it measured (`make test PYTEST_ARGS="... -s"` shows them)."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone

from accounts.people import person
from modelstore.blobs import model_storage
from modelstore.services import model_register
from ops.metrics import render
from runner import serving as agent
from serving.models import Deployment, Prediction, ServeWorker
from serving.services import deployment_scale

from .conftest import FILES, npy, png, ready, with_archive

pytestmark = [pytest.mark.docker, pytest.mark.services]

# what the toy model (conftest.PREDICT) does when the first value of its view is one of these
OOM, EXIT, FLOOD, UNDECLARED, NAN, FILL, SLOW = range(201, 208)


@pytest.fixture
def serve_settings(settings):
    settings.M2D_SERVE_MEMORY = "256m"
    settings.M2D_SERVE_IN_FLIGHT = 1
    settings.M2D_SERVE_QUEUE_SECONDS = 0.5


def ask(caller, mode: int, **extra):
    return caller.post(
        "/predictions/toy-scoring", data=npy(np.full((2, 2), mode, np.uint8)), content_type="application/x-npy", **extra
    )


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def containers(deployment) -> list[str]:
    labels = [f"label=org.m2d.instance={django_settings.M2D_INSTANCE}", f"label=org.m2d.deployment={deployment.pk}"]
    listed = subprocess.run(  # deployments of test runs beside this one have the same numbers
        ["docker", "ps", "-a", "--filter", labels[0], "--filter", labels[1], "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def replaced(deployment, old: ServeWorker) -> tuple[ServeWorker, float]:
    _, took = timed(agent.reconcile)
    workers = ready(deployment)
    assert len(workers) == 1 and workers[0].pk != old.pk, list(deployment.workers.values("state", "reason"))
    assert containers(deployment) == [agent.worker_name(workers[0].pk)]
    return workers[0], took


def test_a_predict_that_runs_out_of_memory_gets_502_and_its_worker_is_replaced(deployed, api, settings):
    version, deployment, owner = deployed
    settings.M2D_SERVE_RESPONSE_TIMEOUT = 60  # filling 256 MB takes a few seconds on a busy host
    first = ready(deployment)[0]
    answer, took = timed(lambda: ask(api(owner, scopes=["predict"]), OOM))
    assert answer.status_code == 502, answer.content
    assert "ran out of memory or exited" in answer.json()["message"]
    new, restart = replaced(deployment, first)
    first.refresh_from_db()
    assert first.state == "failed" and "ran out of memory (the limit is 256m" in first.reason
    audit = Prediction.objects.get(worker=first)  # the request's audit row outlives its worker
    assert audit.status == 502 and "ran out of memory or exited" in audit.error
    print(f"\nOOM: 502 after {took:.1f} s; replacement ready in {restart:.1f} s")


def test_a_predict_that_exits_gets_502_and_its_worker_is_replaced(deployed, api):
    version, deployment, owner = deployed
    first = ready(deployment)[0]
    answer, took = timed(lambda: ask(api(owner, scopes=["predict"]), EXIT))
    assert answer.status_code == 502 and "it is being replaced" in answer.json()["message"]
    new, restart = replaced(deployment, first)
    first.refresh_from_db()
    assert "exit 3" in first.reason
    print(f"\nos._exit: 502 after {took:.1f} s; replacement ready in {restart:.1f} s")


def test_a_gigabyte_printed_leaves_a_capped_log_and_a_worker_that_still_answers(deployed, api, settings):
    version, deployment, owner = deployed
    settings.M2D_SERVE_RESPONSE_TIMEOUT = 240
    caller = api(owner, scopes=["predict"])
    worker = ready(deployment)[0]
    answer, took = timed(lambda: ask(caller, FLOOD))
    assert answer.status_code == 200, answer.content
    logged = subprocess.run(["docker", "logs", agent.worker_name(worker.pk)], capture_output=True, check=True)
    assert len(logged.stdout) <= 10 * 1024**2  # max-size 10m, max-file 1
    assert ask(caller, 0).status_code == 200 and ready(deployment) == [worker]
    print(f"\n1 GiB to stdout: answered in {took:.1f} s; the engine kept {len(logged.stdout) / 1024**2:.1f} MiB")


def test_outputs_the_card_does_not_declare_or_not_finite_get_502(deployed, api):
    version, deployment, owner = deployed
    caller = api(owner, scopes=["predict"])
    worker = ready(deployment)[0]
    extra = ask(caller, UNDECLARED)
    assert extra.status_code == 502
    assert "predict returned probability, which the card does not declare" in extra.json()["message"]
    nan = ask(caller, NAN)
    assert nan.status_code == 502 and "output score is not a finite number (nan)" in nan.json()["message"]
    assert ready(deployment) == [worker]  # the model answered badly; its worker stays


def test_a_filled_socket_folder_holds_a_few_kilobytes_and_the_worker_keeps_answering(deployed, api):
    version, deployment, owner = deployed
    caller = api(owner, scopes=["predict"])
    worker = ready(deployment)[0]
    answer = ask(caller, FILL)
    assert answer.status_code == 200, answer.content
    filled = json.loads(answer.json()["sandbox"])
    folder = os.statvfs(agent.socket_folder(worker.pk))
    assert filled["error"] in ("No space left on device", "Disk quota exceeded")
    assert filled["bytes"] <= 64 * 1024 and filled["entries"] <= 16
    assert folder.f_blocks * folder.f_frsize <= 64 * 1024  # a tmpfs of its own, not the host's disk
    assert ask(caller, 0).status_code == 200 and ready(deployment) == [worker]
    print(
        f"\nsocket folder: the model made {filled['made']} entries ({filled['bytes']} bytes) before {filled['error']}"
    )


def test_a_start_the_platform_cuts_short_is_not_counted_against_the_model(released, settings, tmp_path):
    """The store's bytes no longer those registered: the worker fails as the platform's fault, the
    deployment is neither counted down nor degraded, and it starts once the store is mended."""
    settings.M2D_QUEUE_OPS = "serving-tests-reconcile-by-hand"
    serve_dir = f"/tmp/m2d-serve-{os.getpid()}"
    settings.M2D_SERVE_DIR = type(tmp_path)(serve_dir)
    settings.M2D_SERVE_RESTART_BACKOFF = 1
    settings.M2D_SERVE_DEGRADED_AFTER = 1
    submission = released(FILES, held=())
    with_archive(submission, settings)
    version = model_register(by=submission.owner, submission=submission, paths=["model/"], name="toy-damaged")
    entry = version.files.get(path="weight.txt")
    blob = model_storage().path(entry.storage_key)
    good = Path(blob).read_bytes()
    Path(blob).write_bytes(b"9.0\n")
    deployment = deployment_scale(by=submission.owner, version=version, min_workers=1)
    try:
        agent.reconcile()
        deployment.refresh_from_db()
        failed = deployment.workers.get()
        assert failed.state == "failed" and failed.reason.startswith("the platform failed, not the model:")
        assert "weight.txt" in failed.reason
        assert deployment.failures_in_a_row == 0 and deployment.state == "ok"
        assert 0 < (deployment.next_start_at - timezone.now()).total_seconds() <= 1

        Path(blob).write_bytes(good)
        _wait_until(deployment.next_start_at)
        agent.reconcile()
        deployment.refresh_from_db()
        assert len(ready(deployment)) == 1 and deployment.state == "ok"
    finally:
        deployment_scale(by=submission.owner, version=version, min_workers=0, max_workers=0)
        agent.reconcile()


def test_a_load_slower_than_the_startup_timeout_fails_backs_off_degrades_once_and_recovers(
    released, settings, mailbox, users, tmp_path, api
):
    settings.M2D_QUEUE_OPS = "serving-tests-reconcile-by-hand"
    serve_dir = f"/tmp/m2d-serve-{os.getpid()}"
    settings.M2D_SERVE_DIR = type(tmp_path)(serve_dir)
    settings.M2D_SERVE_STARTUP_TIMEOUT = 2
    settings.M2D_SERVE_RESTART_BACKOFF = 1
    settings.M2D_SERVE_DEGRADED_AFTER = 2
    submission = released(FILES, held=())
    with_archive(submission, settings)
    version = model_register(by=submission.owner, submission=submission, paths=["slow/"], name="toy-slow")
    deployment = deployment_scale(by=submission.owner, version=version, min_workers=1)
    try:
        _, took = timed(agent.reconcile)
        deployment.refresh_from_db()
        failed = deployment.workers.get()
        assert failed.state == "failed" and "not ready within 2 s" in failed.reason
        assert deployment.failures_in_a_row == 1 and deployment.state == "ok"
        pause = (deployment.next_start_at - timezone.now()).total_seconds()
        assert 0 < pause <= 1

        agent.reconcile()  # before the pause is over: no new start, no storm
        assert deployment.workers.count() == 1

        _wait_until(deployment.next_start_at)
        agent.reconcile()
        deployment.refresh_from_db()
        assert deployment.workers.count() == 2 and deployment.failures_in_a_row == 2
        assert deployment.state == "degraded"
        assert 1 < (deployment.next_start_at - timezone.now()).total_seconds() <= 2  # the pause doubled
        mails = degraded_mails(mailbox, submission.owner.email, 1)
        for admin in (users["admin1"], users["admin2"]):  # each their own mail, greeted by name
            [to_admin] = degraded_mails(mailbox, admin.email, 1)
            assert f"Hello {person(admin)}," in to_admin.get_payload()[0].get_payload(decode=True).decode()
        assert "its last 2 workers failed to start" in mails[0].get_payload()[0].get_payload(decode=True).decode()
        refused = api(submission.owner, scopes=["predict"]).post(
            "/predictions/toy-slow", data=png([[1]]), content_type="image/png"
        )
        assert refused.status_code == 503 and refused["Retry-After"] == "5"
        assert "toy-slow version 1 is degraded: its workers fail to start" in refused.json()["message"]

        _wait_until(deployment.next_start_at)
        agent.reconcile()  # a third failure: still degraded, and no second mail
        deployment.refresh_from_db()
        assert deployment.failures_in_a_row == 3 and deployment.state == "degraded"

        settings.M2D_SERVE_STARTUP_TIMEOUT = 30  # the load now fits its time
        _wait_until(deployment.next_start_at)
        _, cold = timed(agent.reconcile)
        deployment.refresh_from_db()
        assert deployment.state == "ok" and deployment.failures_in_a_row == 0 and deployment.next_start_at is None
        assert len(ready(deployment)) == 1
        assert len(degraded_mails(mailbox, submission.owner.email, 1)) == 1
        assert "recovered" in deployment.events.last().comment
        print(f"\nslow load: failed after {took:.1f} s; pauses 1 s then 2 s; one mail; recovered in {cold:.1f} s")
    finally:
        deployment_scale(by=submission.owner, version=version, min_workers=0, max_workers=0)
        agent.reconcile()


def test_a_load_that_raises_fails_at_once_with_its_reason(released, settings, tmp_path):
    settings.M2D_QUEUE_OPS = "serving-tests-reconcile-by-hand"
    settings.M2D_SERVE_DIR = type(tmp_path)(f"/tmp/m2d-serve-{os.getpid()}")
    submission = released(FILES, held=())
    with_archive(submission, settings)
    version = model_register(by=submission.owner, submission=submission, paths=["broken/"], name="toy-broken")
    deployment = deployment_scale(by=submission.owner, version=version, min_workers=1)
    try:
        _, took = timed(agent.reconcile)
        failed = deployment.workers.get()
        assert failed.state == "failed" and "stopped while the model loaded" in failed.reason
        assert "the weights file is missing" in failed.reason  # the end of its log
        assert containers(deployment) == []
        print(f"\ncrash in load(): failed after {took:.1f} s")
    finally:
        deployment_scale(by=submission.owner, version=version, min_workers=0, max_workers=0)
        agent.reconcile()


def test_a_2_gb_body_is_refused_before_it_is_read(portal, deployed, api, settings):
    version, deployment, owner = deployed
    caller = api(owner, scopes=["predict"])
    declared = str(2 * 1024**3)
    raw = caller.post("/predictions/toy-scoring", data=png([[1]]), content_type="image/png", CONTENT_LENGTH=declared)
    assert raw.status_code == 413 and "M2D_SERVE_MAX_BODY" in raw.json()["message"]
    multipart = caller.post(
        "/predictions/toy-scoring", data={"view": b"x"}, format="multipart", CONTENT_LENGTH=declared
    )
    assert multipart.status_code == 413
    assert (
        caller.post("/predictions/toy-scoring", data=b"x", content_type="image/png", CONTENT_LENGTH="a lot").status_code
        == 400
    )

    # over a real connection: the answer comes while the client is still sending
    token = caller._credentials["HTTP_AUTHORIZATION"]
    host, port = portal.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(
            f"POST /predictions/toy-scoring HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
            f"Content-Type: image/png\r\nContent-Length: {declared}\r\n\r\n".encode()
        )
        sent = 0
        conn.setblocking(False)
        answer = b""
        while sent < 64 * 1024**2 and b"\r\n\r\n" not in answer:
            try:
                sent += conn.send(b"\0" * 65536)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.01)
            try:
                received = conn.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                break
            answer += received
            if not received:
                break
    took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    print(f"\n2 GiB declared: 413 after {took:.2f} s and {sent / 1024**2:.1f} MiB sent")


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height pixels, with hardly any data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_and_a_missing_view_get_400(deployed, api):
    version, deployment, owner = deployed
    caller = api(owner, scopes=["predict"])
    worker = ready(deployment)[0]
    bomb = caller.post("/predictions/toy-scoring", data=bomb_png(100_000, 100_000), content_type="image/png")
    assert bomb.status_code == 400 and "100000×100000 pixels, over the limit" in bomb.json()["message"]
    missing = caller.post(
        "/predictions/toy-scoring", data={"side": SimpleUploadedFile("side.png", png([[1]]))}, format="multipart"
    )
    assert missing.status_code == 400 and "missing view; unknown side" in missing.json()["message"]
    assert ready(deployment) == [worker]


def test_all_workers_busy_get_503_with_retry_after_then_one_more_worker_then_back(deployed, api, settings):
    version, deployment, owner = deployed
    settings.M2D_SERVE_IDLE_SECONDS = 2
    settings.M2D_SERVE_RESPONSE_TIMEOUT = 30  # the long request takes 3 s
    deployment_scale(by=owner, version=version, min_workers=1, max_workers=2)
    caller = api(owner, scopes=["predict"])
    slow = {}

    def long_request():
        slow["answer"] = ask(caller, SLOW)
        connection.close()

    thread = threading.Thread(target=long_request)
    thread.start()
    time.sleep(1)
    busy, took = timed(lambda: ask(caller, 0))
    thread.join()
    assert slow["answer"].status_code == 200
    assert busy.status_code == 503 and busy["Retry-After"] == "5"
    assert (
        busy.json()["type"] == "workers_busy"
        and "is busy (1 worker, 1 prediction at a time each)" in busy.json()["message"]
    )

    agent.reconcile()  # requests were refused as busy: one more worker, up to max_worker
    assert len(ready(deployment)) == 2
    agent.reconcile()  # the refusals were before it: no third
    assert len(ready(deployment)) == 2
    time.sleep(2.5)
    agent.reconcile()  # idle: back to min_worker
    assert len(ready(deployment)) == 1
    print(f"\nall busy: 503 after {took:.2f} s")


def test_a_worker_killed_or_restarted_behind_the_platform_s_back_is_replaced_once(deployed, api):
    version, deployment, owner = deployed
    first = ready(deployment)[0]
    subprocess.run(["docker", "kill", "-s", "KILL", agent.worker_name(first.pk)], check=True, capture_output=True)
    reconcilers = [threading.Thread(target=_reconcile_and_close) for _ in range(2)]
    started = time.monotonic()
    for thread in reconcilers:
        thread.start()
    for thread in reconcilers:
        thread.join()
    killed = time.monotonic() - started
    agent.reconcile()
    second = ready(deployment)
    assert len(second) == 1 and containers(deployment) == [agent.worker_name(second[0].pk)]
    first.refresh_from_db()
    assert first.state == "failed" and "exit 137" in first.reason

    subprocess.run(["docker", "restart", "-t", "1", agent.worker_name(second[0].pk)], check=True, capture_output=True)
    third, restarted = replaced(deployment, second[0])
    second[0].refresh_from_db()
    assert "restarted outside the platform" in second[0].reason
    assert ask(api(owner, scopes=["predict"]), 0).status_code == 200
    print(
        f"\nkill -9: restored in {killed:.1f} s (two reconcilers, one container); "
        f"docker restart: replaced in {restarted:.1f} s"
    )


def test_the_metrics_count_requests_workers_failures_and_cold_starts(deployed, api):
    version, deployment, owner = deployed
    caller = api(owner, scopes=["predict"])
    assert ask(caller, 0).status_code == 200
    assert ask(caller, UNDECLARED).status_code == 502
    assert ask(caller, EXIT).status_code == 502
    agent.reconcile()
    text = render().decode()
    assert 'm2d_serving_requests_total{code="200",model="toy-scoring",version="1"} 1.0' in text
    assert 'm2d_serving_requests_total{code="502",model="toy-scoring",version="1"} 2.0' in text
    assert 'm2d_serving_request_seconds_count{model="toy-scoring",version="1"} 3.0' in text
    assert 'm2d_serving_workers{model="toy-scoring",state="ready",version="1"} 1.0' in text
    assert 'm2d_serving_worker_failures_total{model="toy-scoring",version="1"} 1.0' in text
    assert 'm2d_serving_degraded{model="toy-scoring",version="1"} 0.0' in text
    cold = Deployment.objects.get(pk=deployment.pk).last_cold_start_seconds
    assert f'm2d_serving_cold_start_seconds{{model="toy-scoring",version="1"}} {cold}' in text


def degraded_mails(mailbox, address: str, count: int) -> list:
    deadline = time.monotonic() + 30
    while True:
        mails = [m for m in mailbox.for_address(address) if "is degraded" in m["Subject"]]
        if len(mails) >= count or time.monotonic() > deadline:
            return mails
        time.sleep(0.1)


def _reconcile_and_close():
    try:
        agent.reconcile()
    finally:
        connection.close()


def _wait_until(moment) -> None:
    time.sleep(max(0.0, (moment - timezone.now()).total_seconds()) + 0.05)
