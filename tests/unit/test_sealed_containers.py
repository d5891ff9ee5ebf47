"""A serving worker and a disclosure-risk job are sealed alike: their own user, no capabilities,
no new privileges, a read-only root with a /tmp nothing runs from, memory = memory + swap, CPU,
process and shared-memory caps, an init, capped logs, and the role the platform finds them by."""

from pathlib import Path

import pytest

from runner.docker_api.disclosure import Mount, SealedJobSpec, sealed_job_kwargs
from runner.docker_api.serving import ServeSpec, serve_kwargs

LIMITS = dict(user="2001:2001", memory="512m", cpus=1.5, pids=64, shm_size="16m", tmp_size="32m")
LABELS = {"org.m2d.instance": "unit"}


def serve():
    return serve_kwargs(
        ServeSpec(
            name="w",
            image="m2d-submission:1",
            model_dir=Path("/m"),
            server_dir=Path("/s"),
            socket_dir=Path("/w"),
            labels=LABELS,
            **LIMITS,
        )
    )


def disclosure():
    return sealed_job_kwargs(
        SealedJobSpec(
            name="d",
            image="m2d-disclosure:1",
            command=("python3", "attack.py"),
            mounts=(Mount(Path("/model"), "/opt/model"),),
            timeout=60,
            labels=LABELS,
            **LIMITS,
        )
    )


@pytest.mark.parametrize(("kwargs", "role"), [(serve, "serve"), (disclosure, "disclosure")])
def test_serving_workers_and_disclosure_jobs_are_sealed_alike(kwargs, role):
    container = kwargs()
    assert container["user"] == "2001:2001"
    assert container["cap_drop"] == ["ALL"] and container["security_opt"] == ["no-new-privileges"]
    assert container["read_only"] is True and container["network_mode"] == "none"
    assert container["tmpfs"] == {
        "/tmp": "rw,nosuid,nodev,size=32m,mode=1777"
    }  # no "exec": the engine mounts it noexec
    assert container["mem_limit"] == container["memswap_limit"] == "512m"
    assert (container["nano_cpus"], container["pids_limit"], container["shm_size"]) == (1_500_000_000, 64, "16m")
    assert container["init"] is True and container["detach"] is True
    assert container["log_config"].config == {"max-size": "10m", "max-file": "1"}
    assert container["labels"] == {**LABELS, "org.m2d.role": role}
