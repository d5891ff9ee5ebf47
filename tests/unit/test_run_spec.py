"""The container specs the runner hands the engine: every run gets the whole sandbox profile,
and a GPU slot's run sees its one GPU and no other; the settings shape every run's spec, whose
environment carries its owner's MLflow login and nothing of the platform's secrets."""

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from docker.types import DeviceRequest

from accounts import crypto
from accounts.models import Researcher
from runner.docker_api import LABEL_SUBMISSION, RunSpec, forwarder_kwargs, run_kwargs
from runner.jobs import run_job_for
from runner.pipeline import run_spec
from submissions.models import Submission


def spec(gpu_id=None) -> RunSpec:
    return RunSpec(
        submission_id=7,
        name="m2d-x-run-7",
        image="sha256:abc",
        forwarder_image="m2d-forwarder:latest",
        slot="host/gpu1",
        labels={"org.m2d.submission": "7"},
        dataset_dir=Path("/data/clam"),
        export_dir=Path("/var/m2d/export-volumes/7"),
        gateway_dir=Path("/var/m2d/gateway/7"),
        environment={"MLFLOW_TRACKING_URI": "http://mlflow-server:3001"},
        run_user="1000:1000",
        forwarder_user="65534:65534",
        memory="4g",
        cpus=2.0,
        pids=512,
        shm_size="1g",
        tmp_size="1g",
        timeout=3600,
        log_path=Path("/tmp/run.log"),
        log_max_bytes=1024,
        silence_timeout=600,
        gpu_id=gpu_id,
    )


def test_a_gpu_slot_passes_exactly_its_gpu():
    kwargs = run_kwargs(spec(gpu_id="1"), forwarder_id="fwd")
    assert kwargs["device_requests"] == [DeviceRequest(device_ids=["1"], capabilities=[["gpu"]])]
    assert kwargs["device_requests"][0]["Count"] == 0  # no "all": only the listed device


def test_a_cpu_slot_passes_no_device():
    assert "device_requests" not in run_kwargs(spec(), forwarder_id="fwd")


@pytest.mark.parametrize("gpu_id", [None, "0"])
def test_every_run_gets_the_whole_sandbox(gpu_id):
    kwargs = run_kwargs(spec(gpu_id), forwarder_id="fwd")
    assert kwargs["network_mode"] == "container:fwd"
    assert kwargs["user"] == "1000:1000"
    assert kwargs["cap_drop"] == ["ALL"] and "cap_add" not in kwargs
    assert kwargs["security_opt"] == ["no-new-privileges"]
    assert kwargs["read_only"] is True and "privileged" not in kwargs
    assert kwargs["volumes"] == {
        "/data/clam": {"bind": "/mnt/dataset", "mode": "ro"},
        "/var/m2d/export-volumes/7": {"bind": "/mnt/export", "mode": "rw"},
    }
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == "4g"  # no swap on top of the memory limit
    assert (kwargs["nano_cpus"], kwargs["pids_limit"], kwargs["shm_size"]) == (2_000_000_000, 512, "1g")
    assert kwargs["tmpfs"]["/tmp"].startswith("rw,nosuid,nodev")
    assert "size=1g" in kwargs["tmpfs"]["/tmp"]
    assert kwargs["log_config"]["Config"]["max-size"] == "10m"


def test_the_forwarder_has_no_network_and_only_the_gateway_folder():
    kwargs = forwarder_kwargs(spec())
    assert kwargs["network_mode"] == "none"
    assert kwargs["extra_hosts"] == {"mlflow-server": "127.0.0.1"}
    assert kwargs["volumes"] == {"/var/m2d/gateway/7": {"bind": "/gateway", "mode": "ro"}}
    assert kwargs["cap_drop"] == ["ALL"] and kwargs["read_only"] is True and kwargs["user"] == "65534:65534"


# --- settings -> the run's job (runner.jobs) -> its spec (runner.pipeline.run_spec) ----------------

PLATFORM_SECRETS = {
    "DJANGO_SECRET_KEY": "platform-django-secret-key-0123456789",
    "MLFLOW_ADMIN_USERNAME": "platform-mlflow-admin",
    "MLFLOW_ADMIN_PASSWORD": "platform-mlflow-admin-password",
    "M2D_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    "M2D_METRICS_TOKEN": "platform-metrics-token",
    "EMAIL_HOST_PASSWORD": "platform-mail-password",
    "DATABASE_URL": "postgres://m2d:platform-db-password@db/m2d",
    "REDIS_URL": "redis://:platform-redis-password@redis:6379/0",
    "M2D_EXPORT_S3_SECRET_ACCESS_KEY": "platform-s3-secret",
}


@pytest.fixture
def run_settings(settings, tmp_path):
    settings.M2D_RUN_MEMORY = "3g"
    settings.M2D_RUN_CPUS = 1.5
    settings.M2D_RUN_PIDS = 321
    settings.M2D_RUN_SHM = "256m"
    settings.M2D_RUN_TMP = "384m"
    settings.M2D_RUN_TIMEOUT = 5400
    settings.M2D_RUN_SILENCE_TIMEOUT = 900
    settings.M2D_STOP_GRACE_SECONDS = 17
    settings.M2D_LOG_MAX_BYTES = 123_456
    settings.M2D_RUN_UID = 2001
    settings.M2D_FORWARDER_UID = 2002
    settings.M2D_DATASET_DIR = Path("/srv/clam")
    settings.M2D_FORWARDER_IMAGE = "m2d-forwarder:test"
    settings.M2D_GATEWAY_DIR = Path("/gw")
    settings.VAR_DIR = tmp_path
    for name in ("MLFLOW_ADMIN_USERNAME", "MLFLOW_ADMIN_PASSWORD", "M2D_ENCRYPTION_KEY", "M2D_METRICS_TOKEN"):
        setattr(settings, name, PLATFORM_SECRETS[name])
    settings.SECRET_KEY = PLATFORM_SECRETS["DJANGO_SECRET_KEY"]
    settings.EMAIL_HOST_PASSWORD = PLATFORM_SECRETS["EMAIL_HOST_PASSWORD"]
    settings.REDIS_URL = PLATFORM_SECRETS["REDIS_URL"]
    return settings


def _researcher(name: str, password: str) -> Researcher:
    user = get_user_model().objects.create_user(name, f"{name}@example.org")
    return Researcher.objects.create(
        user=user,
        status=Researcher.Status.APPROVED,
        mlflow_username=f"mlflow-{name}",
        mlflow_password_encrypted=crypto.encrypt(password),
    )


def _running(owner, gpu_id: str) -> Submission:
    slot = f"host-a/gpu{gpu_id}" if gpu_id else "host-a/cpu0"
    return Submission.objects.create(
        owner=owner,
        status=Submission.Status.RUNNING,
        archive="submissions/x.zip",
        archive_sha256="0" * 64,
        slot=slot,
        gpu_id=gpu_id,
    )


@pytest.mark.parametrize(("gpu_id", "expected_gpu"), [("3", "3"), ("", None)])
def test_run_settings_land_in_the_spec(db, run_settings, gpu_id, expected_gpu):
    owner = _researcher("alice", "alice-mlflow-password")
    submission = _running(owner.user, gpu_id)
    spec = run_spec(run_job_for(submission.pk), "sha256:img", Path("/exp/9"))
    assert (spec.submission_id, spec.image, spec.export_dir, spec.gateway_dir) == (
        submission.pk,
        "sha256:img",
        Path("/exp/9"),
        Path(f"/gw/{submission.pk}"),
    )
    assert (spec.dataset_dir, spec.forwarder_image, spec.slot) == (
        Path("/srv/clam"),
        "m2d-forwarder:test",
        submission.slot,
    )
    assert (spec.memory, spec.cpus, spec.pids, spec.shm_size, spec.tmp_size) == ("3g", 1.5, 321, "256m", "384m")
    assert (spec.timeout, spec.silence_timeout, spec.stop_grace) == (5400, 900, 17)
    assert spec.log_max_bytes == 123_456
    assert spec.log_path == run_settings.VAR_DIR / "logs" / str(submission.pk) / "run.log"
    assert (spec.run_user, spec.forwarder_user) == ("2001:2001", "2002:2002")
    assert spec.gpu_id == expected_gpu
    assert spec.labels[LABEL_SUBMISSION] == str(submission.pk)
    # ... and what the engine is asked for follows from them.
    kwargs = run_kwargs(spec, forwarder_id="fwd")
    assert (kwargs["mem_limit"], kwargs["nano_cpus"], kwargs["pids_limit"]) == ("3g", 1_500_000_000, 321)
    assert kwargs["user"] == "2001:2001" and "size=384m" in kwargs["tmpfs"]["/tmp"]
    assert ("device_requests" in kwargs) == bool(expected_gpu)


def test_the_run_environment_holds_the_owners_mlflow_login_and_no_platform_secret(db, run_settings, monkeypatch):
    for name, value in PLATFORM_SECRETS.items():
        monkeypatch.setenv(name, value)  # as in a worker's own environment
    owner = _researcher("alice", "alice-mlflow-password")
    other = _researcher("bob", "bob-mlflow-password")
    submission = _running(owner.user, "")
    spec = run_spec(run_job_for(submission.pk), "sha256:img", Path("/exp/9"))
    environment = spec.environment

    assert environment["MLFLOW_TRACKING_URI"] == "http://mlflow-server:3001"  # the forwarder, not MLflow itself
    assert environment["MLFLOW_TRACKING_USERNAME"] == "mlflow-alice"
    assert environment["MLFLOW_TRACKING_PASSWORD"] == "alice-mlflow-password"
    assert environment["MLFLOW_EXPERIMENT_NAME"] == "mlflow-alice"
    assert environment["M2D_SUBMISSION_ID"] == str(submission.pk)
    assert not set(environment) & set(PLATFORM_SECRETS)
    everything = "\n".join(f"{key}={value}" for key, value in environment.items())
    secrets = [
        *PLATFORM_SECRETS.values(),
        "platform-db-password",
        "platform-redis-password",
        owner.mlflow_password_encrypted,
        other.mlflow_username,
        "bob-mlflow-password",
    ]
    assert [secret for secret in secrets if secret in everything] == []
    assert run_kwargs(spec, forwarder_id="fwd")["environment"] == environment  # what the container gets
