"""What ran, read by the runner for the provenance record (exports.provenance keeps it).

What ran (pip freeze, digests, layers, the images it grew from) is read from the image right after
its build, before any run: a build has no data set and no export folder mounted, so nothing a run
writes can be in it. The end of the run adds only what the platform knows itself (the GPUs the
engine handed the run, the data set's fingerprint): the file system of a container that ran the
researcher's code is theirs, and is never read for the record. Never raises: a fact that cannot
be read is recorded as missing, with why, and the build or run goes on.
"""

from __future__ import annotations

from django.conf import settings

from exports.provenance import provenance_store_image

from . import docker_api

SUBMISSION_FREEZE = "/opt/m2d/submission-freeze.txt"
RUNTIME_FREEZE = "/opt/m2d/runtime-freeze.txt"
FREEZES = (SUBMISSION_FREEZE, RUNTIME_FREEZE)


def capture_image(*, submission_id: int, labels: dict[str, str], image: str):
    """Record what a freshly built image is and holds."""
    problems: list[str] = []
    described = _attempt(problems, "image", lambda: docker_api.describe_image(image)) or {}
    base, runtime = (
        {"name": name, **(_attempt(problems, key, lambda n=name: docker_api.describe_image(n)) or {})}
        for key, name in (("base_image", settings.M2D_BASE_IMAGE), ("runtime_image", settings.M2D_RUNTIME_IMAGE))
    )
    runtime_layers = runtime.pop("layers", None)
    base.pop("layers", None)
    layers = described.pop("layers", [])
    if runtime_layers is not None and layers:
        # The runtime image may have been rebuilt since: say whether it is the one this image grew from.
        runtime["is_parent"] = layers[: len(runtime_layers)] == runtime_layers
    files = _attempt(
        problems,
        "pip freeze",
        lambda: docker_api.read_image_files(image, list(FREEZES), labels),
    )
    freezes = {path: _freeze_text(path, files[path], problems) if files else "" for path in FREEZES}
    facts = {
        "image": described | {"layers": len(layers)},
        "base_image": base,
        "runtime_image": runtime,
        "submission_freeze": freezes[SUBMISSION_FREEZE],
        "runtime_freeze": freezes[RUNTIME_FREEZE],
    }
    return provenance_store_image(submission_id=submission_id, facts=facts, problems=problems)


def run_gpus(container: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The GPUs the engine handed the run's container, and what could not be read of them (the
    data set's fingerprint is added where the record is kept: exports.provenance)."""
    problems: list[str] = []
    gpus = _attempt(problems, "GPUs", lambda: docker_api.container_gpus(container)) or []
    return tuple(gpus), tuple(problems)


def _attempt(problems: list[str], what: str, fn):
    try:
        return fn()
    except Exception as exc:
        problems.append(f"{what}: {type(exc).__name__}: {exc}"[:500])
        return None


def _freeze_text(path: str, found: docker_api.ImageFile, problems: list[str]) -> str:
    if found.refused:
        problems.append(f"{path} is {found.refused}")
        return ""
    text = found.data.decode("utf-8", "replace")
    if found.truncated:
        problems.append(f"{path} is {found.size} bytes: only its first {len(found.data)} were recorded")
        text += f"\n# cut here: the file is {found.size} bytes\n"
    return text
