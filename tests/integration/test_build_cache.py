"""A resubmission with the same requirements.txt reuses the installed layer, even after the
previous submission's image was removed at the end of its run."""

import uuid
import zipfile

import pytest

from runner import docker_api

pytestmark = pytest.mark.docker

REQUIREMENTS = "numpy\n# build-cache test {}\n"


def build(settings, tmp_path, requirements: str, name: str) -> tuple[str, str]:
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("main.py", f"print({name!r})\n")
        zf.writestr("requirements.txt", requirements)
    spec = docker_api.BuildSpec(
        submission_id=0,
        archive=archive,
        dockerfile=settings.M2D_DOCKER_SCRIPTS_DIR / "execute_code-without-gpu",
        unpack_script=settings.M2D_DOCKER_SCRIPTS_DIR / "unpack_submission.py",
        runtime_image=settings.M2D_RUNTIME_IMAGE,
        tag=f"m2d-build-cache-test:{name}",
        labels={docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE},
        log_path=tmp_path / f"{name}.log",
        timeout=600,
        log_max_bytes=1024**2,
    )
    docker_api.build_image(spec)
    return spec.tag, spec.log_path.read_text()


def test_removing_an_image_keeps_the_requirements_layer_for_the_next_build(settings, tmp_path):
    requirements = REQUIREMENTS.format(uuid.uuid4())
    first, _ = build(settings, tmp_path, requirements, "first")
    docker_api.remove_image(first)
    second, log = build(settings, tmp_path, requirements, "second")
    try:
        pip_step = log[log.index("RUN pip install") :]
        assert pip_step.splitlines()[1].strip() == "---> Using cache", log
    finally:
        docker_api.remove_image(second)
