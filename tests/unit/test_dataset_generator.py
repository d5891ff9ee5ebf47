"""Tests for dataset/generate.py, the synthetic CLaM sample generator.

No Django needed: run with or without pytest-django
(``python -m pytest tests/unit/test_dataset_generator.py -p no:django``).

The reference CSVs of the public CLaM sample live in ``shared/seeds/`` beside the
repository; tests that compare against them are skipped when it is absent.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import re
import struct
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "dataset" / "generate.py"
SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"
IMAGE_CSV = "clam-details-image.csv"
CASE_CSV = "clam-details-case-extrainfo.csv"

STANDARD = ("LCC", "LMLO", "RCC", "RMLO")
EXTRA = ("LXCCL", "RXCCL", "LLM", "RLM", "LML", "RML")
BIRADS = {"0", "1", "2", "3", "4", "4a", "4b", "4c", "5", "6", "NULL"}
SUSPICIOUS = {"4", "4a", "4b", "4c", "5", "6"}
DENSITY = {"A", "B", "C", "D", "NULL"}
SMALL = (64, 52)  # image size for tests that do not look at pixels


def _load_generator():
    spec = importlib.util.spec_from_file_location("clam_generate_under_test", GENERATOR)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look the module up by name
    spec.loader.exec_module(mod)
    return mod


gen = _load_generator()


def _reference_dir() -> Path:
    if not (SEEDS / IMAGE_CSV).is_file() or not (SEEDS / CASE_CSV).is_file():
        pytest.skip(f"reference CLaM CSVs not found at {SEEDS} (shared/ is not checked out beside the repo)")
    return SEEDS


def _read(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="ascii"), newline=""), delimiter=";"))


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _case_num(name: str) -> int:
    m = re.fullmatch(r"S(\d+)-A(\d+)", name)
    assert m and m.group(1) == m.group(2), name
    return int(m.group(1))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """40 cases at the default image size, seed 0 (about half a minute)."""
    out = gen.generate(tmp_path_factory.mktemp("clam") / "dataset", cases=40, seed=0)
    assert isinstance(out, Path)
    return out


@pytest.fixture(scope="module")
def rows(sample):
    return _read(sample / IMAGE_CSV), _read(sample / CASE_CSV)


# --------------------------------------------------------------------------- schema


def check_schema(image_rows: list[dict], case_rows: list[dict]) -> None:
    """Conventions shared by the real CLaM sample and ours. Applied to the
    reference too, so every rule here is one the real files follow."""
    assert case_rows and image_rows
    # Cases: one per patient, numbered 1..n, in numeric (not string) order.
    nums = [_case_num(r["CaseName"]) for r in case_rows]
    assert nums == list(range(1, len(case_rows) + 1))
    by_case = {}
    for r in case_rows:
        n = _case_num(r["CaseName"])
        assert r["Patient_Id"] == f"P{n}"
        assert r["CasePath"] == f"CLaM-sample/{r['CaseName']}"
        assert r["Study_Description"] and ";" not in r["Study_Description"]
        views = r["Views"].split("+")
        assert views == sorted(views), "Views are joined in sorted order"
        assert len(set(views)) == len(views)
        assert set(views) <= set(STANDARD + EXTRA)
        assert r["Views_4"] == "+".join(v for v in views if v in STANDARD)
        assert r["BIRADS_combined_casebased"] in BIRADS
        assert r["BIRADS_combined_pathwaybased"] in BIRADS
        assert r["BreastDensity_standardized"] in DENSITY
        age = float(r["Age"])
        assert 18.0 <= age <= 110.0
        assert r["Groundtruth"] in ("malignant", "benign")
        assert r["Split"] in ("train", "test")
        by_case[r["CaseName"]] = r

    # Images: grouped by case, cases in the same order as the case CSV.
    order = []
    seen_views = defaultdict(list)
    for r in image_rows:
        c = by_case[r["CaseName"]]
        if not order or order[-1] != r["CaseName"]:
            assert r["CaseName"] not in order, "rows of one case are contiguous"
            order.append(r["CaseName"])
        assert r["Patient_Id"] == c["Patient_Id"]
        assert r["CasePath"] == c["CasePath"]
        assert r["ImagePath"] == f"{c['CasePath']}/{r['Views']}/1.png"
        assert r["Study_Description"] == c["Study_Description"]
        assert r["CaseLabel"] == c["Groundtruth"]
        assert r["Split"] == c["Split"], "all images of a case share its split"
        seen_views[r["CaseName"]].append(r["Views"])
    assert order == [r["CaseName"] for r in case_rows]
    for name, views in seen_views.items():
        assert sorted(views) == by_case[name]["Views"].split("+")


def test_reference_follows_the_rules_we_check():
    ref = _reference_dir()
    check_schema(_read(ref / IMAGE_CSV), _read(ref / CASE_CSV))


def test_schema_matches_the_rules(rows):
    check_schema(*rows)


@pytest.mark.parametrize("name", [IMAGE_CSV, CASE_CSV])
def test_header_separator_and_line_endings_match_reference(sample, name):
    ref = (_reference_dir() / name).read_bytes()
    ours = (sample / name).read_bytes()
    assert ours.split(b"\n", 1)[0] == ref.split(b"\n", 1)[0]
    assert (b"\r" in ours) == (b"\r" in ref)
    assert ours.endswith(b"\n") == ref.endswith(b"\n")
    # Same number of fields on every line, no quoting.
    n = ref.split(b"\n", 1)[0].count(b";")
    for line in ours.rstrip(b"\n").split(b"\n"):
        assert line.count(b";") == n
        assert b'"' not in line


def _documented_columns(name: str) -> list[str]:
    """The column table under ``### `<name>``` in dataset/dataset.md, in order."""
    doc = (REPO / "dataset" / "dataset.md").read_text(encoding="utf-8")
    section = doc.split(f"### `{name}`", 1)[1].split("\n#", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("name", "first_row"),
    [
        (IMAGE_CSV, {"Patient_Id": "P1", "CaseName": "S1-A1", "CasePath": "CLaM-sample/S1-A1"}),
        (CASE_CSV, {"Patient_Id": "P1", "CaseName": "S1-A1", "Views_4": "LCC+LMLO+RCC+RMLO"}),
    ],
)
def test_csv_has_the_documented_columns_on_every_line(sample, name, first_row):
    documented = _documented_columns(name)
    assert len(documented) >= 8, documented
    lines = (sample / name).read_bytes().decode("ascii").split("\n")
    assert lines[-1] == "", "the file ends with a newline"
    header, *data = lines[:-1]
    assert header.split(";") == documented
    assert data
    for line in data:
        fields = line.split(";")
        assert len(fields) == len(documented), line
        assert all(f and f == f.strip() and '"' not in f and "\r" not in f for f in fields), line
    first = dict(zip(documented, data[0].split(";"), strict=True))
    assert {k: first[k] for k in first_row} == first_row


def test_study_descriptions_come_from_the_reference(rows):
    ref = {r["Study_Description"] for r in _read(_reference_dir() / CASE_CSV)}
    ours = {r["Study_Description"] for r in rows[1]}
    assert ours <= ref
    assert len(ours) >= 2


def test_headers_equal_module_constants(rows):
    image_rows, case_rows = rows
    assert tuple(image_rows[0].keys()) == gen.IMAGE_COLUMNS
    assert tuple(case_rows[0].keys()) == gen.CASE_COLUMNS


# --------------------------------------------------------------------------- values


def test_labels_splits_and_birads(rows):
    _, case_rows = rows
    n = len(case_rows)
    mal = [r for r in case_rows if r["Groundtruth"] == "malignant"]
    ben = [r for r in case_rows if r["Groundtruth"] == "benign"]
    assert 0.2 * n <= len(mal) <= 0.6 * n
    test = [r for r in case_rows if r["Split"] == "test"]
    assert 0.05 * n <= len(test) <= 0.4 * n
    # BI-RADS agrees with the ground truth most of the time.
    assert sum(r["BIRADS_combined_casebased"] in SUSPICIOUS for r in mal) >= 0.7 * len(mal)
    assert all(r["BIRADS_combined_pathwaybased"] in SUSPICIOUS for r in mal)
    assert sum(r["BIRADS_combined_casebased"] in {"1", "2", "3"} for r in ben) >= 0.7 * len(ben)
    assert sum(r["BIRADS_combined_pathwaybased"] in {"5", "6"} for r in ben) == 0
    ages = [float(r["Age"]) for r in case_rows]
    assert len(set(ages)) == n and 40 < np.mean(ages) < 75


@pytest.mark.parametrize("seed", range(8))
def test_two_cases_always_have_both_labels_and_a_test_case(tmp_path, seed):
    out = gen.generate(tmp_path, cases=2, seed=seed, size=(40, 32))
    case_rows = _read(out / CASE_CSV)
    assert {r["Groundtruth"] for r in case_rows} == {"malignant", "benign"}
    assert {r["Split"] for r in case_rows} == {"train", "test"}


def test_one_case_works(tmp_path):
    out = gen.generate(tmp_path, cases=1, seed=0, size=SMALL)
    assert len(_read(out / CASE_CSV)) == 1


# --------------------------------------------------------------------------- files


def test_every_image_exists_with_matching_npy(sample, rows):
    image_rows, _ = rows
    for r in image_rows:
        png = sample / r["ImagePath"]
        assert png.is_file(), png
        npy = png.with_name("1.npy")
        assert npy.is_file(), npy
        with Image.open(png) as im:
            assert im.format == "PNG" and im.mode == "L"
            a8 = np.asarray(im)
        a12 = np.load(npy, allow_pickle=False)
        assert a12.dtype == np.uint16
        assert a12.shape == a8.shape == gen.DEFAULT_SIZE
        assert int(a12.max()) <= 4095
        assert int(a12.max()) > 2000, "12-bit range is actually used"
        np.testing.assert_array_equal(a8, (a12 >> 4).astype(np.uint8))


def test_folders_match_csv_exactly(sample, rows):
    image_rows, case_rows = rows
    on_disk = {p.relative_to(sample).as_posix() for p in (sample / "CLaM-sample").rglob("*") if p.is_file()}
    expected = set()
    for r in image_rows:
        expected |= {r["ImagePath"], r["ImagePath"][: -len("1.png")] + "1.npy"}
    assert on_disk == expected
    cases_on_disk = sorted(p.name for p in (sample / "CLaM-sample").iterdir())
    assert cases_on_disk == sorted(r["CaseName"] for r in case_rows)
    for r in case_rows:
        folders = sorted(p.name for p in (sample / r["CasePath"]).iterdir())
        assert "+".join(folders) == r["Views"]
        assert set(STANDARD) <= set(folders)
    assert sorted(p.name for p in sample.iterdir()) == sorted(["CLaM-sample", IMAGE_CSV, CASE_CSV])


def test_standard_views_everywhere_extra_views_sometimes(rows):
    _, case_rows = rows
    with_extra = [r for r in case_rows if r["Views"] != "LCC+LMLO+RCC+RMLO"]
    assert all(r["Views_4"] == "LCC+LMLO+RCC+RMLO" for r in case_rows)
    assert 0.1 * len(case_rows) <= len(with_extra) <= 0.55 * len(case_rows)


def test_png_has_no_varying_metadata(sample, rows):
    png = (sample / rows[0][0]["ImagePath"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        chunks.append(png[pos + 4 : pos + 8].decode("ascii"))
        pos += 12 + length
    assert set(chunks) == {"IHDR", "IDAT", "IEND"}


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_other_seed_does_not(tmp_path):
    a = _tree_hashes(gen.generate(tmp_path / "a", cases=6, seed=7, size=SMALL))
    b = _tree_hashes(gen.generate(tmp_path / "b", cases=6, seed=7, size=SMALL))
    c = _tree_hashes(gen.generate(tmp_path / "c", cases=6, seed=8, size=SMALL))
    assert a and a == b
    common = set(a) & set(c)
    pngs = [k for k in common if k.endswith(".png")]
    assert pngs
    assert all(a[k] != c[k] for k in pngs), "a new seed must change every image"


def test_cases_do_not_depend_on_how_many_follow(tmp_path):
    few = gen.generate(tmp_path / "few", cases=3, seed=2, size=SMALL)
    many = gen.generate(tmp_path / "many", cases=9, seed=2, size=SMALL)
    labels_few = {r["CaseName"]: r["Groundtruth"] for r in _read(few / CASE_CSV)}
    labels_many = {r["CaseName"]: r["Groundtruth"] for r in _read(many / CASE_CSV)}
    ha, hb = _tree_hashes(few / "CLaM-sample"), _tree_hashes(many / "CLaM-sample")
    same = [c for c in labels_few if labels_few[c] == labels_many[c]]
    assert same
    for c in same:
        keys = [k for k in ha if k.startswith(c + "/")]
        assert keys and all(ha[k] == hb[k] for k in keys)


def test_regenerating_replaces_the_old_sample_cleanly(tmp_path):
    (tmp_path / "keep.txt").write_text("not ours")
    gen.generate(tmp_path, cases=4, seed=0, size=SMALL)
    gen.generate(tmp_path, cases=2, seed=1, size=SMALL)
    assert sorted(p.name for p in (tmp_path / "CLaM-sample").iterdir()) == ["S1-A1", "S2-A2"]
    assert len(_read(tmp_path / CASE_CSV)) == 2
    assert (tmp_path / "keep.txt").read_text() == "not ours"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], "temporary folders must be removed"


def test_cli(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--cases", "3", "--seed", "4", "--size", "48x40", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert len(_read(out / CASE_CSV)) == 3
    with Image.open(out / "CLaM-sample" / "S1-A1" / "LCC" / "1.png") as im:
        assert im.size == (40, 48)  # (width, height)
    again = tmp_path / "api"
    gen.generate(again, cases=3, seed=4, size=(48, 40))
    assert _tree_hashes(out) == _tree_hashes(again), "CLI and generate() agree"
    bad = subprocess.run(
        [sys.executable, str(GENERATOR), "--size", "big", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0


# --------------------------------------------------------------------------- pixels


def _box_mean(a: np.ndarray, k: int) -> np.ndarray:
    c = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def _blob_score(a12: np.ndarray) -> float:
    """Strongest compact bright spot: mean of a small window minus the mean of
    the window three times wider around it, over windows wholly inside the breast."""
    a = a12.astype(np.float64)
    k1 = max(3, int(a.shape[1] * 0.05)) | 1
    k2 = 3 * k1
    small, big = _box_mean(a, k1), _box_mean(a, k2)
    o = (k2 - k1) // 2
    dog = small[o : o + big.shape[0], o : o + big.shape[1]] - big
    inside = _box_mean((a > 0).astype(np.float64), k2) > 0.999
    return float(dog[inside].max()) if inside.any() else 0.0


def _images(sample, image_rows, case=None):
    for r in image_rows:
        if case is None or r["CaseName"] == case:
            yield r, np.load(sample / r["ImagePath"].replace("/1.png", "/1.npy"))


def test_images_look_like_mammograms_not_noise(sample, rows):
    image_rows, _ = rows
    for r, a in _images(sample, image_rows):
        h, w = a.shape
        view = r["Views"]
        chest = a[:, :8] if view[0] == "L" else a[:, -8:]
        nipple_side = slice(w - 6, w) if view[0] == "L" else slice(0, 6)
        # Black background in the corners away from the chest wall.
        assert a[:6, nipple_side].max() == 0 and a[-6:, nipple_side].max() == 0, r["ImagePath"]
        # Tissue against the chest wall, mid-height, is clearly exposed.
        assert chest[h * 3 // 8 : h * 5 // 8].mean() > 800, r["ImagePath"]
        # The breast is a sizeable part of the picture, the background too.
        frac = (a > 0).mean()
        assert 0.3 < frac < 0.9, (r["ImagePath"], frac)
        # Smooth texture: neighbouring pixels inside the breast are strongly correlated.
        band = a[h * 5 // 16 : h * 11 // 16].astype(np.float64)
        box = band[:, : w // 3] if view[0] == "L" else band[:, -(w // 3) :]
        assert box.min() > 0
        corr = np.corrcoef(box[:, :-1].ravel(), box[:, 1:].ravel())[0, 1]
        assert corr > 0.75, (r["ImagePath"], corr)


def test_mlo_views_have_a_bright_pectoral_corner(sample, rows):
    image_rows, _ = rows
    for r, a in _images(sample, image_rows):
        if not r["Views"].endswith("MLO"):
            continue
        h, w = a.shape
        strip = a[:, : w // 12] if r["Views"][0] == "L" else a[:, -(w // 12) :]
        corner, lower = strip[: h // 10], strip[h // 2 : h // 2 + h // 10]
        assert corner.min() > 0.45 * 4095 and corner.mean() > lower.mean(), r["ImagePath"]


def test_left_and_right_views_are_mirrored(sample, rows):
    image_rows, _ = rows
    for r, a in _images(sample, image_rows):
        left, right = a[:, : a.shape[1] // 2].mean(), a[:, a.shape[1] // 2 :].mean()
        assert (left > right) == (r["Views"][0] == "L"), r["ImagePath"]


def test_malignant_cases_carry_a_lesion(sample, rows):
    image_rows, case_rows = rows
    scores = defaultdict(float)
    for r, a in _images(sample, image_rows):
        scores[r["CaseName"]] = max(scores[r["CaseName"]], _blob_score(a))
    mal = np.array([scores[r["CaseName"]] for r in case_rows if r["Groundtruth"] == "malignant"])
    ben = np.array([scores[r["CaseName"]] for r in case_rows if r["Groundtruth"] == "benign"])
    auc = float((mal[:, None] > ben[None, :]).mean())
    assert auc >= 0.9, (auc, sorted(mal), sorted(ben))
    assert np.median(mal) > 1.3 * np.median(ben)


def test_lesion_appears_in_two_views_of_the_same_breast(sample, rows):
    image_rows, case_rows = rows
    benign_top = max(_blob_score(a) for r, a in _images(sample, image_rows) if r["CaseLabel"] == "benign")
    hits = 0
    mal = [r["CaseName"] for r in case_rows if r["Groundtruth"] == "malignant"]
    for name in mal:
        per_side = defaultdict(int)
        for r, a in _images(sample, image_rows, name):
            if r["Views"][1:] in ("CC", "MLO") and _blob_score(a) > 0.9 * benign_top:
                per_side[r["Views"][0]] += 1
        hits += max(per_side.values(), default=0) == 2
    assert hits >= 0.6 * len(mal), (hits, len(mal))


def test_parse_size():
    assert gen.parse_size("256x208") == (256, 208)
    assert gen.parse_size("64X48") == (64, 48)
    for bad in ("256", "0x10", "axb", "16x16"):
        with pytest.raises(ValueError):
            gen.parse_size(bad)


def test_a_bare_python_writes_files_numpy_and_pillow_read_back(tmp_path):
    """`python3 dataset/generate.py` on a fresh machine: no numpy, no Pillow, nothing installed.
    What it writes reads back with them, pixel for pixel, and is what the in-process call writes."""
    bare = [sys.executable, "-I", "-S"]  # no site-packages: numpy and Pillow cannot be imported
    assert subprocess.run([*bare, "-c", "import numpy"], capture_output=True).returncode != 0
    assert subprocess.run([*bare, "-c", "import PIL"], capture_output=True).returncode != 0
    out = tmp_path / "bare"
    proc = subprocess.run(
        [*bare, str(GENERATOR), "--cases", "2", "--seed", "3", "--size", "40x33", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert _tree_hashes(out) == _tree_hashes(gen.generate(tmp_path / "api", cases=2, seed=3, size=(40, 33)))

    for npy in (out / "CLaM-sample").rglob("1.npy"):
        a12 = np.load(npy, allow_pickle=False)
        assert a12.dtype == np.dtype("<u2") and a12.shape == (40, 33) and a12.flags.c_contiguous
        with Image.open(npy.with_name("1.png")) as im:
            im.load()
            assert (im.format, im.mode, im.size) == ("PNG", "L", (33, 40))
            np.testing.assert_array_equal(np.asarray(im), (a12 >> 4).astype(np.uint8))
        # The .npy header is the one numpy writes itself.
        buffer = io.BytesIO()
        np.save(buffer, a12)
        assert npy.read_bytes() == buffer.getvalue()
