"""A resubmission with the same requirements.txt reuses the installed layer, even after the
previous submission's image was removed at the end of its run."""

import re
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
        runtime_image=settings.M2D_RUNTIME_IMAGE,
        tag=f"m2d-build-cache-test:{name}",
        labels={docker_api.LABEL_INSTANCE: settings.M2D_INSTANCE},
        log_path=tmp_path / f"{name}.log",
        timeout=600,
        log_max_bytes=1024**2,
    )
    docker_api.build_image(spec)
    return spec.tag, spec.log_path.read_text()


def steps_from_cache(log: str) -> dict[str, bool]:
    """Each step of a build log, and whether the engine took it from its cache."""
    steps = re.split(r"^Step \d+/\d+ : ", log, flags=re.M)[1:]
    return {step.splitlines()[0]: "---> Using cache" in step for step in steps}


def test_removing_an_image_keeps_the_requirements_layer_for_the_next_build(settings, tmp_path):
    requirements = REQUIREMENTS.format(uuid.uuid4())
    first, _ = build(settings, tmp_path, requirements, "first")
    docker_api.remove_image(first)
    second, log = build(settings, tmp_path, requirements, "second")
    try:
        cached = steps_from_cache(log)
        # Everything up to the code comes from the cache: the installed requirements, and the image
        # settings on top of them, which a build running while an image is removed may stand on.
        code = next(step for step in cached if step.startswith("COPY src/ "))
        before_code = list(cached)[: list(cached).index(code)]
        assert any(step.startswith("RUN /opt/m2d/install-requirements") for step in before_code)
        assert all(cached[step] for step in before_code if not step.startswith(("FROM", "ARG"))), log
        assert not cached[code]  # new code, new layer
        assert not any("unpack" in step for step in cached)  # the platform unpacked the zip itself
    finally:
        docker_api.remove_image(second)


def test_the_image_holds_the_zip_files_and_its_labels(settings, tmp_path):
    tag, _ = build(settings, tmp_path, "", "files")
    try:
        out = (
            docker_api.client()
            .containers.run(
                tag, ["sh", "-c", "cat main.py; stat -c '%U %a' main.py requirements.txt; id -u"], remove=True
            )
            .decode()
        )
        # The code as zipped, root's and read-only to the run's user (1000), who runs it.
        assert out.splitlines() == ["print('files')", "root 644", "root 644", "1000"]
        image = docker_api.client().images.get(tag)
        assert image.labels[docker_api.LABEL_INSTANCE] == settings.M2D_INSTANCE
    finally:
        docker_api.remove_image(tag)
