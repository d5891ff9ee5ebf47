"""The researcher's local dry run: docker-compose builds the submission with the platform's own
Dockerfiles, runs it sealed beside a local MLflow server (the platform's auth app), and the metrics
can be read back from that server afterwards."""

import csv
import json
import os
import re
import shutil
import subprocess
import time

import pytest
import requests
import yaml

from tests.conftest import REPO, free_port

CPU_FILE = REPO / "docker-compose-without-gpu.yaml"
GPU_FILE = REPO / "docker-compose.yaml"
ADMIN = ("dry-run-admin", "dry-run-admin-password")  # the compose files' documented local defaults


def has_compose_v2() -> bool:
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except FileNotFoundError:
        return False


COMPOSE_CLIENTS = [
    pytest.param(["docker-compose"], id="docker-compose"),
    pytest.param(["docker", "compose"], id="docker-compose-v2"),
]


def defaults_env() -> dict[str, str]:
    """This process's environment without DRY_RUN_* settings: the tests check the files' defaults."""
    return {key: value for key, value in os.environ.items() if not key.startswith("DRY_RUN_")}


def compose_config(path) -> dict:
    client = ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]
    result = subprocess.run(
        [*client, "-f", str(path), "config"], cwd=REPO, capture_output=True, text=True, timeout=60, env=defaults_env()
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_gpu_file_is_the_cpu_file_plus_one_nvidia_gpu():
    gpu, cpu = compose_config(GPU_FILE), compose_config(CPU_FILE)

    run = gpu["services"]["submission"]
    assert run["build"]["dockerfile"] == "docker_scripts/execute_code"
    assert run["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    assert cpu["services"]["submission"]["build"]["dockerfile"] == "docker_scripts/execute_code-without-gpu"
    assert "deploy" not in cpu["services"]["submission"]

    # Everything else is the same in both files, so a dry run on a laptop is the one on a GPU box.
    del run["deploy"]
    run["build"]["dockerfile"] = cpu["services"]["submission"]["build"]["dockerfile"]
    assert gpu == cpu


def test_dry_run_images_never_replace_the_platforms():
    config = compose_config(CPU_FILE)
    images = {name: service["image"] for name, service in config["services"].items()}
    platform_images = {"m2d-runtime:latest", "m2d-runtime-gpu:latest", "m2d-mlflow:latest", "m2d-forwarder:latest"}
    assert not platform_images & set(images.values())
    assert config["services"]["submission"]["build"]["args"]["RUNTIME_IMAGE"] == images["runtime"]
    # The runtime image is built by the dry run itself, from the platform's recipe.
    assert config["services"]["runtime"]["build"]["context"] == str(REPO / "docker_scripts" / "runtime")
    assert config["services"]["mlflow-server"]["build"]["context"] == str(REPO / "docker_scripts" / "mlflow")


def _wait_for_mlflow(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the dry run's MLflow did not answer on {url}")


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize("client", COMPOSE_CLIENTS)
@pytest.mark.parametrize("owner", [0, 1001], ids=["clone-of-root", "clone-of-uid-1001"])
def test_cpu_dry_run_logs_the_toy_sample_to_its_own_mlflow(client, owner, tmp_path):
    if client == ["docker-compose"] and not shutil.which("docker-compose"):
        pytest.fail("docker-compose is not installed; scripts/docker-engine.sh installs it")
    if client == ["docker", "compose"] and not has_compose_v2():
        pytest.skip("the docker compose v2 plugin is not installed on this machine")
    if not (REPO / "dataset" / "clam-details-case-extrainfo.csv").is_file():
        pytest.fail("the CLaM sample is not generated; run python3 dataset/generate.py")

    project = f"m2ddryrun{os.getpid()}{client[-1].replace('-', '')}{owner}"
    port = free_port()
    export = tmp_path / "export"
    export.mkdir()
    # As a fresh clone's ./export: its owner's, writable by nobody else. No extra step either way.
    os.chown(export, owner, owner)
    env = {
        **defaults_env(),
        # The classic builder builds in dependency order (the runtime first), as the platform does.
        "DOCKER_BUILDKIT": "0",
        "COMPOSE_DOCKER_CLI_BUILD": "0",
        "DRY_RUN_MLFLOW_PORT": str(port),
        "DRY_RUN_EXPORT": str(export),
        "DRY_RUN_EXPERIMENT": "toy-dry-run",
    }
    compose = [*client, "-p", project, "-f", str(CPU_FILE)]
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        up = subprocess.run(
            [*compose, "up", "--build", "--abort-on-container-exit", "--exit-code-from", "submission"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        seconds = time.monotonic() - started
        output = up.stdout + up.stderr
        assert up.returncode == 0, output[-6000:]
        assert "accuracy: 1.000" in output, output[-6000:]
        print(f"dry run ({' '.join(client)}): {seconds:.1f} s")
        # The link MLflow prints is the one a browser on this machine opens.
        links = re.findall(r"View run \S+ at: (\S+)", output)

        # The run was sealed like a platform run: only the internal network, read-only, no privileges.
        (container,) = subprocess.run(
            [
                "docker",
                "ps",
                "-aq",
                "--filter",
                f"label=com.docker.compose.project={project}",
                "--filter",
                "label=com.docker.compose.service=submission",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        inspected = json.loads(
            subprocess.run(["docker", "inspect", container], capture_output=True, check=True).stdout
        )[0]
        (network,) = inspected["NetworkSettings"]["Networks"]
        network_info = json.loads(
            subprocess.run(["docker", "network", "inspect", network], capture_output=True, check=True).stdout
        )[0]
        assert network_info["Internal"] is True
        assert inspected["HostConfig"]["ReadonlyRootfs"] is True
        assert inspected["HostConfig"]["CapDrop"] == ["ALL"]
        mounts = {m["Destination"]: m for m in inspected["Mounts"]}
        assert mounts["/mnt/dataset"]["RW"] is False and mounts["/mnt/export"]["RW"] is True

        # What the run wrote to /mnt/export is in the local folder.
        # ... and belongs to whoever owns that folder, not to a uid of the container.
        assert {(path.stat().st_uid, path.stat().st_gid) for path in export.iterdir()} == {(owner, owner)}
        with open(export / "results.csv", newline="") as handle:
            results = dict(csv.reader(handle))
        cases = len((REPO / "dataset" / "clam-details-case-extrainfo.csv").read_text().splitlines()) - 1
        assert results == {"metric": "value", "accuracy": "1.0", "dataset_cases": str(cases)}

        # MLflow stopped with the run; started again, it still holds the run (its data is a volume).
        subprocess.run(
            [*compose, "start", "mlflow-server"], cwd=REPO, env=env, capture_output=True, check=True, timeout=120
        )
        _wait_for_mlflow(url)
        experiment = requests.get(
            f"{url}/api/2.0/mlflow/experiments/get-by-name",
            params={"experiment_name": "toy-dry-run"},
            auth=ADMIN,
            timeout=10,
        )
        assert experiment.status_code == 200, experiment.text
        runs = requests.post(
            f"{url}/api/2.0/mlflow/runs/search",
            json={"experiment_ids": [experiment.json()["experiment"]["experiment_id"]], "max_results": 10},
            auth=ADMIN,
            timeout=10,
        ).json()["runs"]
        assert len(runs) == 1
        metrics = {m["key"]: m["value"] for m in runs[0]["data"]["metrics"]}
        assert metrics == {"accuracy": 1.0, "dataset-exists": 1.0}
        assert runs[0]["info"]["status"] == "FINISHED"
        experiment_id, run_id = runs[0]["info"]["experiment_id"], runs[0]["info"]["run_id"]
        assert links == [f"http://localhost:{port}/#/experiments/{experiment_id}/runs/{run_id}"]
        # Its auth app is on: without the credentials nothing is shown.
        assert (
            requests.get(
                f"{url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "toy-dry-run"}, timeout=10
            ).status_code
            == 401
        )
    finally:
        subprocess.run(
            [*compose, "down", "-v", "--remove-orphans"], cwd=REPO, env=env, capture_output=True, timeout=300
        )
