"""The container specs the runner hands the engine: every run gets the whole sandbox profile,
and a GPU slot's run sees its one GPU and no other."""

from pathlib import Path

import pytest
from docker.types import DeviceRequest

from runner.docker_api import RunSpec, forwarder_kwargs, run_kwargs


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
