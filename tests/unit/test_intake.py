"""submissions/intake.py: every hostile archive is built here, in memory, byte by byte.

No Django: runs with `-p no:django` as well as under pytest-django.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import stat
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from submissions.intake import (  # noqa: E402
    IntakeError,
    IntakeLimits,
    IntakeReport,
    inspect_zip,
    main,
    write_normalised_zip,
)

MAIN_PY = b"print('training')\n"
REQUIREMENTS = b"numpy==1.26.4\n"


# -- builders ---------------------------------------------------------------


def make_zip(files: dict[str, bytes], compression=zipfile.ZIP_DEFLATED, date=(2024, 5, 1, 12, 0, 0)) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=date)
            info.compress_type = compression
            info.external_attr = (stat.S_IFDIR | 0o755 if name.endswith("/") else stat.S_IFREG | 0o644) << 16
            zf.writestr(info, data)
    return buf.getvalue()


def good_files(**extra: bytes) -> dict[str, bytes]:
    return {"main.py": MAIN_PY, "requirements.txt": REQUIREMENTS, **extra}


@dataclass
class Raw:
    """One member written by hand, for what zipfile refuses to write."""

    name: str | bytes
    data: bytes = b""  # bytes as stored: already deflated when method == 8
    method: int = 0
    size: int | None = None  # declared uncompressed size; default: the truth
    crc: int | None = None
    flags: int = 0
    mode: int = stat.S_IFREG | 0o644
    offset: int | None = None  # central-directory offset; default: its own local header
    local: bool = True  # False: a central-directory entry only


def deflate(data: bytes) -> bytes:
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    return co.compress(data) + co.flush()


def zeros_deflated(mib: int) -> bytes:
    """Deflate of `mib` MiB of zeros without ever holding them: one full-flushed
    segment is self-contained, so it can simply be repeated."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = co.compress(bytes(1024**2)) + co.flush(zlib.Z_FULL_FLUSH)
    return segment * mib + co.flush()


def local_header(m: Raw) -> bytes:
    name = m.name.encode() if isinstance(m.name, str) else m.name
    return (
        struct.pack(
            "<4s5H3I2H", b"PK\x03\x04", 20, m.flags, m.method, 0, 0x21, _crc(m), len(m.data), _size(m), len(name), 0
        )
        + name
    )


def _size(m: Raw) -> int:
    if m.size is not None:
        return m.size
    return len(zlib.decompress(m.data, -15)) if m.method == 8 else len(m.data)


def _crc(m: Raw) -> int:
    if m.crc is not None:
        return m.crc
    return zlib.crc32(zlib.decompress(m.data, -15) if m.method == 8 else m.data)


def raw_zip(members: list[Raw]) -> bytes:
    body, central = bytearray(), bytearray()
    for m in members:
        name = m.name.encode() if isinstance(m.name, str) else m.name
        offset = len(body)
        if m.local:
            body += local_header(m) + m.data
        central += (
            struct.pack(
                "<4s6H3I5H2I",
                b"PK\x01\x02",
                (3 << 8) | 20,
                20,
                m.flags,
                m.method,
                0,
                0x21,
                _crc(m),
                len(m.data),
                _size(m),
                len(name),
                0,
                0,
                0,
                0,
                m.mode << 16,
                offset if m.offset is None else m.offset,
            )
            + name
        )
    eocd = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(body), 0)
    return bytes(body + central + eocd)


def good_raw(*extra: Raw) -> bytes:
    return raw_zip([Raw("main.py", MAIN_PY), Raw("requirements.txt", REQUIREMENTS), *extra])


def refused(data: bytes, code: str, *needles: str, limits: IntakeLimits | None = None) -> IntakeError:
    with pytest.raises(IntakeError) as caught:
        inspect_zip(io.BytesIO(data), limits or IntakeLimits())
    err = caught.value
    assert err.code == code, f"{err.code}: {err}"
    for needle in needles:
        assert needle in str(err), f"{needle!r} not in {err}"
    return err


# -- not a zip ----------------------------------------------------------------


def test_empty_file_is_not_a_zip():
    refused(b"", "not_zip", "empty", "zip submission.zip main.py requirements.txt")


def test_tar_is_not_a_zip():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("main.py")
        info.size = len(MAIN_PY)
        tar.addfile(info, io.BytesIO(MAIN_PY))
    refused(buf.getvalue(), "not_zip", "tar archive", "not a zip archive")


def test_text_file_is_not_a_zip():
    refused(b"print('hello')\n" * 10, "not_zip", "This file is not a zip archive")


def test_truncated_zip():
    data = make_zip(good_files(**{"big.txt": bytes(range(256)) * 200}))
    refused(data[: len(data) // 2], "not_zip", "incomplete")


def test_compressed_size_limit():
    refused(make_zip(good_files()), "too_large", "limit", limits=IntakeLimits(max_compressed_bytes=100))


# -- unsafe members -------------------------------------------------------------


def test_error_survives_pickling():
    err = pickle.loads(pickle.dumps(IntakeError("symlink", "'x' is a symbolic link")))
    assert (err.code, str(err)) == ("symlink", "'x' is a symbolic link")


def test_encrypted_member():
    refused(good_raw(Raw("secret.py", b"x = 1\n", flags=0x1)), "encrypted", "secret.py", "password")


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("/etc/cron.d/evil", "absolute"),
        ("../evil.py", ".."),
        ("src/../../evil.py", ".."),
        ("src\\evil.py", "backslash"),
        ("C:/evil.py", "drive letter"),
        ("C:evil.py", "drive letter"),
        ("evil.py\x00.txt", "NUL"),
    ],
)
def test_unsafe_paths(name, needle):
    err = refused(good_raw(Raw(name, b"x")), "unsafe_path", needle)
    assert repr(name) in str(err)


def test_path_too_long():
    refused(good_raw(Raw("d/" * 130 + "x.py", b"x")), "path_too_long", "255")


def test_symlink():
    refused(good_raw(Raw("data", b"/etc/passwd", mode=stat.S_IFLNK | 0o777)), "symlink", "'data'", "symbolic link")


@pytest.mark.parametrize("kind", [stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK])
def test_special_files(kind):
    refused(good_raw(Raw("dev0", b"", mode=kind | 0o600)), "special_file", "'dev0'", "remove it from the zip")


def test_exact_duplicate():
    refused(good_raw(Raw("lib/a.py", b"1"), Raw("lib/a.py", b"2")), "duplicate", "lib/a.py", "twice")


def test_duplicate_after_normalisation():
    refused(good_raw(Raw("lib/a.py", b"1"), Raw("lib//./a.py", b"2")), "duplicate", "'lib/a.py'", "twice")


def test_file_and_folder_with_the_same_name():
    refused(good_raw(Raw("lib", b"1"), Raw("lib/a.py", b"2")), "duplicate", "'lib'", "both a file and a folder")


def test_too_many_files():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("main.py", MAIN_PY)
        zf.writestr("requirements.txt", REQUIREMENTS)
        for i in range(10_000):
            zf.writestr(f"data/{i}.txt", b"")
    refused(buf.getvalue(), "too_many_files", "10,000")


# -- bombs ------------------------------------------------------------------------


def test_ratio_bomb_a_gigabyte_of_zeros():
    kernel = zeros_deflated(1024)
    assert len(kernel) < 2 * 1024**2  # a "1 GiB" file, about 1 MiB on disk
    err = refused(good_raw(Raw("zeros.bin", kernel, method=8, size=1024**3, crc=0)), "ratio", "zeros.bin")
    assert "200:1" in str(err)


def test_overall_ratio_of_many_small_members():
    members = [Raw(f"pad/{i}.bin", zeros_deflated(1), method=8, size=1024**2, crc=0) for i in range(30)]
    refused(good_raw(*members), "ratio", "The zip unpacks")


def test_declared_total_too_large():
    refused(
        make_zip(good_files(**{"data.csv": b"1,2,3\n" * 2000})),
        "too_large",
        "data.csv",
        limits=IntakeLimits(max_uncompressed_bytes=5000),
    )


def test_header_that_lies_about_its_size():
    lying = Raw("weights.bin", zeros_deflated(8), method=8, size=1000, crc=0)
    refused(good_raw(lying), "too_large", "weights.bin", "header lies")


def test_overlapping_entries_quoted_overlap():
    inner = Raw("b.bin", b"B" * 100)
    outer = Raw("a.bin", local_header(inner) + inner.data)
    inner.local, inner.offset = False, 30 + len("a.bin")  # b.bin's header sits inside a.bin's data
    data = raw_zip([outer, inner, Raw("main.py", MAIN_PY), Raw("requirements.txt", REQUIREMENTS)])
    refused(data, "overlap", "'a.bin' and 'b.bin' overlap")


def test_overlapping_entries_sharing_one_kernel():
    kernel = Raw("k0.bin", b"K" * 1000)
    copies = [Raw(f"k{i}.bin", kernel.data, local=False, offset=0) for i in range(1, 4)]
    data = raw_zip([kernel, *copies, Raw("main.py", MAIN_PY), Raw("requirements.txt", REQUIREMENTS)])
    refused(data, "overlap", "k0.bin")


def test_nested_zip_bomb():
    inner = raw_zip([Raw("zeros.bin", zeros_deflated(512), method=8, size=512 * 1024**2, crc=0)])
    refused(
        make_zip(good_files(**{"assets/inner.zip": inner}), zipfile.ZIP_STORED), "ratio", "assets/inner.zip > zeros.bin"
    )


def test_nested_zip_contents_count_toward_the_total():
    inner = make_zip({"table.csv": b"x" * 4000}, zipfile.ZIP_STORED)
    outer = make_zip(good_files(**{"inner.zip": inner}), zipfile.ZIP_STORED)
    inspect_zip(io.BytesIO(outer), IntakeLimits(max_uncompressed_bytes=len(inner) + 4100))
    # The outer zip alone fits in the limit below; what inner.zip holds does not.
    refused(outer, "too_large", "inner.zip > table.csv", limits=IntakeLimits(max_uncompressed_bytes=len(inner) + 1000))


def nest(levels: int, payload: bytes) -> bytes:
    data = payload
    for depth in range(levels, 0, -1):
        data = make_zip({f"level{depth}.zip": data})
    return data


def test_zips_nested_three_deep_are_accepted():
    report = inspect_zip(io.BytesIO(make_zip(good_files(**{"n.zip": nest(2, make_zip({"a.txt": b"ok"}))}))))
    assert "n.zip" in report.files


def test_zips_nested_four_deep_are_refused():
    outer = make_zip(good_files(**{"n.zip": nest(3, make_zip({"a.txt": b"ok"}))}))
    refused(outer, "nested_too_deep", "level3.zip", "another zip")


def test_bomb_below_the_inspected_depth():
    bomb = raw_zip([Raw("zeros.bin", zeros_deflated(64), method=8, size=64 * 1024**2, crc=0)])
    outer = make_zip(good_files(**{"n.zip": nest(2, bomb)}))
    refused(outer, "nested_too_deep", "zeros.bin")


def test_zip_bytes_that_are_not_a_zip_are_just_data():
    report = inspect_zip(io.BytesIO(make_zip(good_files(**{"blob.bin": b"PK\x03\x04" + b"junk" * 50}))))
    assert "blob.bin" in report.files


# -- layout -----------------------------------------------------------------------


def test_main_py_that_is_a_folder():
    refused(make_zip({"main.py/": b"", "main.py/x.py": b"", "requirements.txt": b""}), "main_is_dir", "main.py")


def test_missing_main_py():
    err = refused(make_zip({"requirements.txt": REQUIREMENTS, "train.py": MAIN_PY}), "missing_main")
    assert "main.py is missing at the top of the zip" in str(err)
    assert "zip submission.zip main.py requirements.txt" in str(err)


def test_main_py_too_deep_names_where_it_is():
    data = make_zip({"src/project/main.py": MAIN_PY, "src/project/requirements.txt": REQUIREMENTS})
    err = refused(data, "missing_main")
    assert str(err) == (
        "main.py is missing at the top of the zip (found: src/project/main.py). "
        "Zip the contents of src/project, not the folder."
    )


def test_missing_requirements():
    refused(make_zip({"main.py": MAIN_PY}), "missing_requirements", "requirements.txt is missing next to main.py")
    refused(
        make_zip({"main.py": MAIN_PY, "conf/requirements.txt": b""}),
        "missing_requirements",
        "found: conf/requirements.txt",
    )


def test_requirements_must_be_utf8():
    refused(
        make_zip({"main.py": MAIN_PY, "requirements.txt": "numpy==1.26.4\n".encode("utf-16")}),
        "requirements_encoding",
        "UTF-16",
        "Out-File",
    )


def test_root_layout():
    report = inspect_zip(io.BytesIO(make_zip(good_files(**{"lib/": b"", "lib/util.py": b"x = 1\n"}))))
    assert report.prefix == ""
    assert report.files == ("lib/util.py", "main.py", "requirements.txt")
    assert report.uncompressed_bytes == len(MAIN_PY) + len(REQUIREMENTS) + 6
    assert report.requirements == REQUIREMENTS.decode()
    assert report.warnings == ()


def test_root_layout_with_other_top_folders():
    report = inspect_zip(io.BytesIO(make_zip(good_files(**{"data/a.csv": b"1", "src/b.py": b"2"}))))
    assert report.prefix == ""
    assert report.files == ("data/a.csv", "main.py", "requirements.txt", "src/b.py")


def github_layout() -> dict[str, bytes]:
    return {
        "proj-main/": b"",
        "proj-main/main.py": MAIN_PY,
        "proj-main/requirements.txt": b"\xef\xbb\xbf" + REQUIREMENTS,  # BOM from Notepad
        "proj-main/lib/util.py": b"x = 1\n",
        "proj-main/.DS_Store": b"\0\0\0\1Bud1",
        "__MACOSX/proj-main/._main.py": b"\0\5\26\7",
    }


def test_single_top_folder_is_stripped_and_mac_litter_dropped(tmp_path):
    path = tmp_path / "submission.zip"
    path.write_bytes(make_zip(github_layout()))
    report = inspect_zip(path)
    assert report.prefix == "proj-main/"
    assert report.files == ("lib/util.py", "main.py", "requirements.txt")
    assert report.requirements == REQUIREMENTS.decode()  # BOM stripped
    inspect_zip(str(path))


# -- normalised zip ---------------------------------------------------------------------


def test_normalised_zip_is_deterministic(tmp_path):
    files = github_layout()
    first = make_zip(files, zipfile.ZIP_DEFLATED, date=(2024, 1, 2, 3, 4, 6))
    second = make_zip(dict(reversed(list(files.items()))), zipfile.ZIP_STORED, date=(2025, 7, 8, 9, 10, 12))
    outputs = []
    for data in (first, second):
        report = inspect_zip(io.BytesIO(data))
        dest = io.BytesIO()
        outputs.append((write_normalised_zip(io.BytesIO(data), report, dest), dest.getvalue()))
    (sha_a, bytes_a), (sha_b, bytes_b) = outputs
    assert sha_a == sha_b == hashlib.sha256(bytes_a).hexdigest()
    assert bytes_a == bytes_b

    on_disk = tmp_path / "clean.zip"
    src = tmp_path / "src.zip"
    src.write_bytes(first)
    assert write_normalised_zip(src, inspect_zip(src), on_disk) == sha_a
    with zipfile.ZipFile(on_disk) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == ["lib/util.py", "main.py", "requirements.txt"]
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}
        assert zf.read("main.py") == MAIN_PY
        assert zf.read("lib/util.py") == b"x = 1\n"
        assert zf.read("requirements.txt") == files["proj-main/requirements.txt"]
    assert inspect_zip(on_disk).prefix == ""


def test_normalised_zip_rechecks_real_sizes():
    lying = good_raw(Raw("weights.bin", zeros_deflated(4), method=8, size=1000, crc=0))
    report = IntakeReport(prefix="", files=("weights.bin",), uncompressed_bytes=1000, requirements="", warnings=())
    dest = io.BytesIO()
    with pytest.raises(IntakeError) as caught:
        write_normalised_zip(io.BytesIO(lying), report, dest)
    assert caught.value.code == "too_large"
    assert dest.getvalue() == b""  # nothing half-written


def test_normalised_zip_refuses_a_changed_source():
    report = inspect_zip(io.BytesIO(make_zip(good_files())))
    with pytest.raises(IntakeError) as caught:
        write_normalised_zip(io.BytesIO(make_zip({"main.py": MAIN_PY})), report, io.BytesIO())
    assert caught.value.code == "mismatch"


# -- requirements.txt: only packages by name, from the platform's index -------------------------


def requirements_zip(text: str) -> bytes:
    return make_zip({"main.py": MAIN_PY, "requirements.txt": text.encode()})


FROM_THE_INDEX = (
    "list packages by name and version (e.g. numpy==2.1.0); the platform installs them from its own package index"
)
INDEX_OPTIONS = [
    "--extra-index-url http://example.org/simple",
    "-i http://example.org/simple",
    "--index-url=http://example.org/simple",
    "-ihttp://example.org/simple",
    "-f ./wheels",
    "--find-links http://example.org/wheels/",
    "--trusted-host example.org",
]
OTHER_OPTIONS = ["--pre", "--no-binary :all:", "--only-binary=:all:", "--prefer-binary", "--no-index"]
REFERENCES = {
    "git+https://example.org/lab/tools.git@v1#egg=tools": "a version-control link",
    "hg+https://example.org/lab/tools": "a version-control link",
    "svn+https://example.org/lab/tools/trunk": "a version-control link",
    "bzr+https://example.org/lab/tools": "a version-control link",
    "tools @ git+ssh://git@example.org/lab/tools.git": "a version-control link",
    "tools @ https://example.org/tools-1.0-py3-none-any.whl": "a URL",
    "tools[cli]@file:///tmp/tools-1.0.tar.gz": "a URL",
    "https://example.org/tools-1.0-py3-none-any.whl": "a URL",
    "./tools": "a local file or folder",
    "/opt/tools": "a local file or folder",
    "vendor/tools": "a local file or folder",
    "tools-1.0.tar.gz": "a local file or folder",
    "tools-1.0-py3-none-any.whl[cli]": "a local file or folder",
}


@pytest.mark.parametrize("line", INDEX_OPTIONS + OTHER_OPTIONS)
def test_pip_options_are_refused_naming_the_line(line):
    err = refused(requirements_zip(f"numpy==2.1.0\n\n{line}\n"), "requirements_option")
    assert str(err) == f'requirements.txt line 3: "{line}" — pip options are not allowed; {FROM_THE_INDEX}.'


@pytest.mark.parametrize("line", INDEX_OPTIONS)
def test_index_options_are_refused_even_where_urls_are_allowed(line):
    refused(requirements_zip(f"{line}\n"), "requirements_option", limits=IntakeLimits(allow_requirement_urls=True))


@pytest.mark.parametrize("line", ["-r other.txt", "--requirement=other.txt", "-c constraints.txt"])
def test_including_other_files_is_refused(line):
    for limits in (IntakeLimits(), IntakeLimits(allow_requirement_urls=True)):
        refused(
            requirements_zip(f"{line}\n"), "requirements_option", "files the platform does not check", limits=limits
        )


@pytest.mark.parametrize("line", ["-e .", "--editable=./tools", "-e git+https://example.org/lab/tools.git#egg=tools"])
def test_editable_installs_are_refused_unless_urls_are_allowed(line):
    refused(requirements_zip(f"{line}\n"), "requirements_option", "code of your own goes in the zip next to main.py")
    assert inspect_zip(io.BytesIO(requirements_zip(f"{line}\n")), IntakeLimits(allow_requirement_urls=True))
    # ... but only on its own: an index option beside it is still an index option
    refused(
        requirements_zip(f"{line} -i http://example.org/simple\n"),
        "requirements_option",
        limits=IntakeLimits(allow_requirement_urls=True),
    )


@pytest.mark.parametrize("line", REFERENCES)
def test_direct_references_are_refused_unless_urls_are_allowed(line):
    err = refused(requirements_zip(f"{line}\n"), "requirements_url")
    assert str(err).startswith(f'requirements.txt line 1: "{line}" — installing from {REFERENCES[line]} is not allowed')
    report = inspect_zip(io.BytesIO(requirements_zip(f"{line}\n")), IntakeLimits(allow_requirement_urls=True))
    assert report.warnings == ()  # pinning is not a question for a direct reference


@pytest.mark.parametrize(
    "line",
    [
        "numpy==2.1.0 --index-url http://example.org/simple",
        "numpy==2.1.0 --global-option=--verbose",
        "numpy==2.1.0 --config-settings=editable_mode=compat",
        "numpy==2.1.0 --hash=md5",
        "numpy==2.1.0 --hash=sha256:0a1b extra-word",
    ],
)
def test_only_hashes_may_follow_a_requirement(line):
    refused(requirements_zip(f"{line}\n"), "requirements_option", "--hash=sha256:… after a requirement is the one")


def test_a_hash_on_a_line_of_its_own_is_refused():
    refused(
        requirements_zip("numpy==2.1.0\n--hash=sha256:0a1b\n"), "requirements_option", "line 2", "belongs on the line"
    )


def test_environment_variables_are_refused():
    refused(requirements_zip("numpy==${NUMPY_VERSION}\n"), "requirements_option", "${NUMPY_VERSION}", "write the value")


def test_what_pip_reads_from_the_index_is_accepted():
    text = (
        "# pinned for the paper\n"
        "numpy==2.1.0 \\\n"
        "    --hash=sha256:0a1b2c3d \\\n"
        "    --hash sha256:4E5F6A7B\n"
        "    # via pandas\n"
        "pandas[excel,performance] == 2.2.3  # a comment may say -i or https://example.org\n"
        'tomli==2.0.1; python_version < "3.11"\n'
        "requests[socks]==2.32.3 ; sys_platform == 'linux' and platform_release >= '5/0'\n"
        "scikit-learn>=1.5,<1.6 \\\n"
        "  ; python_version >= '3.9'\n"
        "\n"
        "   \n"
        "zope.interface===6.4.post2\n"
    )
    report = inspect_zip(io.BytesIO(requirements_zip(text)))
    assert report.requirements == text
    assert [w.split(":")[0] for w in report.warnings] == ["requirements.txt line 9"]  # scikit-learn is a range


def test_continued_lines_are_read_as_one_and_named_by_their_first_line():
    err = refused(
        requirements_zip("numpy==2.1.0\nscipy==1.14.1 \\\n  --index-url http://example.org/simple\n"),
        "requirements_option",
    )
    assert str(err).startswith('requirements.txt line 2: "scipy==1.14.1   --index-url http://example.org/simple"')


def test_every_refused_line_is_listed():
    text = "numpy==2.1.0\n--extra-index-url http://example.org/simple\ngit+https://example.org/a.git\n-e .\n"
    err = refused(requirements_zip(text), "requirements_option", 'line 2: "--extra-index-url')
    assert str(err).endswith("Also refused: lines 3, 4.")


def test_a_long_line_is_shortened_in_the_message():
    line = "tools @ https://example.org/" + "x" * 200 + ".whl"
    err = refused(requirements_zip(line + "\n"), "requirements_url")
    assert '"tools @ https://example.org/xxx' in str(err) and 'xxx…" —' in str(err)


# -- warnings ------------------------------------------------------------------------------


def warnings_for(requirements: bytes = REQUIREMENTS, main_py: bytes = MAIN_PY) -> tuple[str, ...]:
    return inspect_zip(io.BytesIO(make_zip({"main.py": main_py, "requirements.txt": requirements}))).warnings


def test_requirement_warnings():
    warnings = warnings_for(
        b"# comment\nnumpy\npandas>=2\nscikit-learn==1.5.2  # pinned\ntorch>=2.0\ntorchvision==0.20.0\n\n"
    )
    text = "\n".join(warnings)
    assert len(warnings) == 4, text
    assert "line 2: 'numpy' has no pinned version" in text
    assert "line 3: 'pandas>=2' has no pinned version" in text
    assert "the platform provides torch 2.13.0; other versions download gigabytes" in text
    assert "line 6: torchvision" in text
    assert "scikit-learn" not in text


def test_torch_pinned_to_the_platform_version_is_quiet():
    assert warnings_for(b"torch==2.13.0\nnumpy == 2.1.0\n") == ()


def test_main_py_warnings():
    source = b'''"""Reads /home/alice/notes in the docstring: not a finding."""
import os
from pathlib import Path
import mlflow
mlflow.set_tracking_uri("https://mlflow.example.org")
mlflow.set_tracking_uri("http://mlflow-server:3001")
os.environ["MLFLOW_TRACKING_URI"] = "http://10.0.0.5:5000"
train = Path("/mnt/dataset/train.csv")
model = Path("/mnt/export/model.pt")
raw = open("/home/alice/data/train.csv")
open("/results/out.txt", "w")
open("/mnt/dataset/cache.bin", "wb")
scratch = "/tmp/work"
route = "/api/v1/items"
'''
    text = "\n".join(warnings_for(main_py=source))
    assert "line 5: hard-coded MLflow tracking URI 'https://mlflow.example.org'" in text
    assert "'http://10.0.0.5:5000'" in text
    assert "mlflow-server:3001'" not in text
    assert "line 10: absolute path '/home/alice/data/train.csv'" in text
    assert "line 11: absolute path '/results/out.txt'" in text
    assert "'/mnt/dataset/cache.bin' writes into the read-only data set" in text
    for quiet in ("/mnt/dataset/train.csv", "/mnt/export/model.pt", "/tmp/work", "/api/v1", "notes"):
        assert quiet not in text


def test_syntax_error_is_a_warning():
    (warning,) = warnings_for(main_py=b"import os\ndef train(:\n    pass\n")
    assert warning.startswith("main.py has a syntax error at line 2")


# -- command line ------------------------------------------------------------------------


def test_cli(tmp_path, capsys):
    good = tmp_path / "good.zip"
    good.write_bytes(make_zip({"main.py": MAIN_PY, "requirements.txt": b"numpy\n"}))
    bad = tmp_path / "bad.zip"
    bad.write_bytes(make_zip({"train.py": MAIN_PY}))

    assert main([str(good)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"OK: {good}: 2 files")
    assert re.fullmatch(r"sha256 of its contents: [0-9a-f]{64} \(the portal shows the same\)", out[1])
    assert out[2].startswith("warning: requirements.txt line 1: 'numpy' has no pinned version")

    assert main([str(bad)]) == 1
    assert capsys.readouterr().out.startswith("REFUSED: main.py is missing at the top of the zip")

    assert main([]) == 2
    assert "usage" in capsys.readouterr().err
    assert main([str(tmp_path / "nope.zip")]) == 2
    assert main(["--help"]) == 0
    assert "--allow-requirement-urls" in capsys.readouterr().out


def test_cli_allows_requirement_urls_when_asked(tmp_path, capsys):
    archive = tmp_path / "vcs.zip"
    archive.write_bytes(requirements_zip("tools @ git+https://example.org/lab/tools.git\n"))
    assert main([str(archive)]) == 1
    assert capsys.readouterr().out.startswith('REFUSED: requirements.txt line 1: "tools @ git+https://')
    assert main(["--allow-requirement-urls", str(archive)]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {archive}")
    archive.write_bytes(requirements_zip("--index-url http://example.org/simple\n"))
    assert main([str(archive), "--allow-requirement-urls"]) == 1


def test_cli_runs_standalone_without_site_packages(tmp_path):
    good = tmp_path / "good.zip"
    good.write_bytes(make_zip(github_layout()))
    script = ROOT / "submissions" / "intake.py"
    # -I -S: no site-packages, so the script can only be using the standard library.
    run = subprocess.run(
        [sys.executable, "-I", "-S", str(script), str(good)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert "OK:" in run.stdout and "'proj-main/' will be stripped" in run.stdout
