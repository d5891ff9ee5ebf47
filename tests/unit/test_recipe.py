"""The platform's build recipe is the researchers' Dockerfile minus its unpack stage: the same
steps in the same order, the files read from the build context, the labels in one step; and the
context holds the checked zip's files, nothing else."""

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from runner.recipe import RecipeError, platform_recipe, write_context

DOCKER_SCRIPTS = Path(__file__).resolve().parents[2] / "docker_scripts"


def steps(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("name", ["execute_code", "execute_code-without-gpu"])
def test_the_recipe_is_the_second_stage_reading_the_context(name):
    shared = (DOCKER_SCRIPTS / name).read_text()
    recipe = platform_recipe(shared, {"org.m2d.submission": "42", "org.m2d.owner": 'o"dd name'})

    image_stage = shared[shared.rindex("\nFROM ") :]
    expected = steps(image_stage.replace("--from=unpack /src/", "src/"))
    assert steps(recipe)[1:-1] == expected  # after the runtime image's ARG, before the labels
    assert steps(recipe)[0].startswith("ARG RUNTIME_IMAGE=")
    assert not any("unpack" in s for s in steps(recipe))
    assert [s for s in steps(recipe) if s.startswith("RUN")] == [
        s for s in expected if s.startswith("RUN")
    ]  # pip alone: no container runs to unpack
    assert steps(recipe)[-1] == 'LABEL org.m2d.owner="o\\"dd name" org.m2d.submission="42"'


def test_a_dockerfile_of_another_shape_is_refused():
    with pytest.raises(RecipeError, match="no 'unpack' stage"):
        platform_recipe("FROM base\nCOPY . /opt/submission/\n", {})
    with pytest.raises(RecipeError, match="does not read the submission"):
        platform_recipe("FROM base AS unpack\nRUN true\nFROM base\nCOPY . /opt/submission/\n", {})


def test_the_context_holds_the_recipe_and_the_files_under_src(tmp_path):
    archive = tmp_path / "submission.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("main.py", "print('hi')\n")
        zf.writestr("requirements.txt", "numpy==1.26.4\n")
        zf.writestr("lib/util.py", "X = 1\n")
        zf.writestr("lib/", "")  # a folder entry
        zf.writestr("../escape.py", "no")  # never stored by intake; refused here all the same
        zf.writestr("/abs.py", "no")
        link = zipfile.ZipInfo("link")
        link.external_attr = 0o120777 << 16  # a symbolic link
        zf.writestr(link, "/etc/passwd")
    out = io.BytesIO()
    write_context(out, "FROM x\n", archive)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["Dockerfile", "src/lib/util.py", "src/main.py", "src/requirements.txt"]
        assert all(m.isfile() and m.mode == 0o644 and m.uid == 0 for m in members.values())
        assert tar.extractfile("src/lib/util.py").read() == b"X = 1\n"
        assert tar.extractfile("Dockerfile").read() == b"FROM x\n"


def test_requirements_that_only_reorder_or_repeat_lines_build_the_same_layer(tmp_path):
    """The installed layer is keyed on requirements.txt: one set of requirements, one file."""
    from runner.recipe import normal_requirements

    first = b"# for the model\npandas==2.2.3\nnumpy==2.1.0  # pinned\n\n"
    second = b"numpy==2.1.0\r\npandas==2.2.3\npandas==2.2.3\n"
    continued = b"numpy==2.1.0 \\\n    --hash=sha256:abc\npkg @ https://example.org/pkg.whl#sha256=def\n"
    assert normal_requirements(first) == normal_requirements(second) == b"numpy==2.1.0\npandas==2.2.3\n"
    assert normal_requirements(continued) == (
        b"numpy==2.1.0 --hash=sha256:abc\npkg @ https://example.org/pkg.whl#sha256=def\n"
    )
    assert normal_requirements(b"numpy==2.1.0\n") != normal_requirements(b"numpy==2.1.1\n")
