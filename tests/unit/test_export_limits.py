"""The export limits checked before anything of /mnt/export is copied (runner/export_volume.py)."""

from __future__ import annotations

import os

import pytest

from runner.export_volume import ExportLimitExceeded, ExportLimits, check_export

LIMITS = ExportLimits(max_bytes=10 * 1024**2, max_files=5, max_path_chars=30, name_characters="A-Za-z0-9._-")


def test_files_within_the_limits_are_listed_and_links_left_behind(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.pt").write_bytes(b"w" * 1000)
    (tmp_path / "results.csv").write_text("a,b\n")
    os.symlink("/etc/passwd", tmp_path / "link")
    assert sorted(p.as_posix() for p in check_export(tmp_path, LIMITS)) == ["model/weights.pt", "results.csv"]


def test_the_walk_stops_past_the_file_count(tmp_path):
    for i in range(50):
        (tmp_path / f"f{i}").touch()
    with pytest.raises(ExportLimitExceeded, match="more than 5 files"):
        check_export(tmp_path, LIMITS)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("a" * 31, "a path of 31 characters; at most 30"),
        ("caf\u00e9.txt", "characters other than A-Za-z0-9._-"),
        ("new\nline", "characters other than"),
        (".hidden", "starting with '.'"),
    ],
)
def test_names_are_plain_and_short_and_never_echoed(tmp_path, name, words):
    (tmp_path / name).write_text("x")
    with pytest.raises(ExportLimitExceeded, match=words) as refused:
        check_export(tmp_path, LIMITS)
    assert name not in str(refused.value)


def test_sparse_files_count_with_the_size_they_claim(tmp_path):
    for i in range(3):
        with open(tmp_path / f"huge{i}", "wb") as handle:
            handle.truncate(8 * 1024**3)
    with pytest.raises(ExportLimitExceeded) as refused:
        check_export(tmp_path, LIMITS)
    message = str(refused.value)
    assert "add up to 24.0 GiB, more than the export limit of 10.0 MiB" in message
    assert "3 of them are sparse files: they claim 24.0 GiB but hold 0 bytes" in message
