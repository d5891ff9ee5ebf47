#!/usr/bin/env python3
"""Build a synthetic CLaM sample: same folders, files and CSV schema as the real one.

The hospital's CLaM mammography set never leaves the hospital. Researchers need
something shaped exactly like it to develop against, so this script fabricates
one: no pixel and no row comes from a patient.

    python dataset/generate.py [--cases 10] [--seed 0] [--size 256x208] [--out DIR]

writes, under DIR (default: the folder this script is in):

    CLaM-sample/S<i>-A<i>/<VIEW>/1.png   8-bit grayscale
    CLaM-sample/S<i>-A<i>/<VIEW>/1.npy   uint16, 12-bit values 0..4095 (png = npy >> 4)
    clam-details-image.csv               one row per image, ';'-separated
    clam-details-case-extrainfo.csv      one row per case, ';'-separated

Everything is a pure function of (seed, case number, size): two runs with the same
arguments write byte-identical files. Only numpy and pillow are used.

See dataset/dataset.md for the researcher-facing description.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "generate",
    "SAMPLE_DIR",
    "IMAGE_CSV",
    "CASE_CSV",
    "IMAGE_COLUMNS",
    "CASE_COLUMNS",
    "STANDARD_VIEWS",
    "EXTRA_VIEWS",
    "ALL_VIEWS",
    "BIRADS_VALUES",
    "DENSITY_VALUES",
    "STUDY_DESCRIPTIONS",
    "DEFAULT_SIZE",
]

# ---------------------------------------------------------------------------
# Schema (kept identical to the real CLaM files)
# ---------------------------------------------------------------------------

SAMPLE_DIR = "CLaM-sample"
IMAGE_CSV = "clam-details-image.csv"
CASE_CSV = "clam-details-case-extrainfo.csv"
SEP = ";"
NEWLINE = "\n"  # the reference CSVs use LF line endings and end with a newline

IMAGE_COLUMNS = (
    "Patient_Id",
    "CaseName",
    "CasePath",
    "ImagePath",
    "Study_Description",
    "Views",
    "CaseLabel",
    "Split",
)
CASE_COLUMNS = (
    "Patient_Id",
    "CaseName",
    "CasePath",
    "Study_Description",
    "Views_4",
    "Views",
    "BIRADS_combined_casebased",
    "BIRADS_combined_pathwaybased",
    "BreastDensity_standardized",
    "Age",
    "Groundtruth",
    "Split",
)

STANDARD_VIEWS = ("LCC", "LMLO", "RCC", "RMLO")
EXTRA_VIEWS = ("LXCCL", "RXCCL", "LLM", "RLM", "LML", "RML")
ALL_VIEWS = tuple(sorted(STANDARD_VIEWS + EXTRA_VIEWS))
BIRADS_VALUES = ("0", "1", "2", "3", "4", "4a", "4b", "4c", "5", "6", "NULL")
DENSITY_VALUES = ("A", "B", "C", "D", "NULL")
STUDY_DESCRIPTIONS = (
    "Mammografie mammapoli beiderzijds",
    "Mammografie beiderzijds",
    "Copie SVOB",
)

DEFAULT_CASES = 10
DEFAULT_SEED = 0
DEFAULT_SIZE = (256, 208)  # (height, width)
MIN_SIZE = 32

# Case-level proportions.
P_MALIGNANT = 0.40
P_TEST = 0.20
P_EXTRA_VIEWS = 0.30

_TMP_PREFIX = ".CLaM-sample.tmp-"

# ---------------------------------------------------------------------------
# Case metadata
# ---------------------------------------------------------------------------


@dataclass
class Case:
    index: int  # 1-based
    study: str
    views: list[str]  # every view of the case, sorted
    row_order: list[str]  # order of this case's rows in the image CSV
    birads_case: str
    birads_pathway: str
    density: str  # as written in the CSV (may be "NULL")
    tissue_density: str  # what the pixels show (never "NULL")
    age: float
    malignant: bool
    test: bool
    lesion_side: str = ""  # "L" or "R" for malignant cases
    _u_malignant: float = field(default=0.0, repr=False)
    _u_test: float = field(default=0.0, repr=False)
    _birads: tuple = field(default=(), repr=False)  # (malignant, malignant path, benign, benign path)

    @property
    def name(self) -> str:
        return f"S{self.index}-A{self.index}"

    @property
    def patient(self) -> str:
        return f"P{self.index}"

    @property
    def path(self) -> str:
        return f"{SAMPLE_DIR}/{self.name}"

    @property
    def label(self) -> str:
        return "malignant" if self.malignant else "benign"

    @property
    def split(self) -> str:
        return "test" if self.test else "train"


def _case_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """Independent generator per (seed, case, purpose): a case never depends on
    how many cases come before or after it."""
    return np.random.default_rng(np.random.SeedSequence([seed, index, stream]))


def _pick(rng: np.random.Generator, values, weights):
    w = np.asarray(weights, dtype=float)
    return values[int(rng.choice(len(values), p=w / w.sum()))]


_STREAM_META, _STREAM_PIXELS = 0, 1


def _make_case(seed: int, index: int) -> Case:
    rng = _case_rng(seed, index, _STREAM_META)
    u_mal = float(rng.random())
    u_test = float(rng.random())
    malignant = u_mal < P_MALIGNANT
    test = u_test < P_TEST

    study = _pick(rng, STUDY_DESCRIPTIONS, (0.55, 0.35, 0.10))

    views = list(STANDARD_VIEWS)
    if rng.random() < P_EXTRA_VIEWS:
        # Exaggerated CC views are the most common extra, lateral views rarer.
        n_extra = 1 if rng.random() < 0.75 else 2
        weights = np.array([3.0, 3.0, 1.0, 1.0, 1.0, 1.0])
        picks = rng.choice(len(EXTRA_VIEWS), size=n_extra, replace=False, p=weights / weights.sum())
        views += [EXTRA_VIEWS[int(k)] for k in picks]
    views.sort()
    # The real CSV lists a case's rows in no particular view order; mimic that.
    row_order = [views[int(k)] for k in rng.permutation(len(views))]

    density = _pick(rng, DENSITY_VALUES, (0.10, 0.35, 0.30, 0.10, 0.15))
    tissue_density = density if density != "NULL" else _pick(rng, DENSITY_VALUES[:4], (1, 3, 3, 1))
    age = float(np.clip(rng.normal(60.0, 11.0), 30.0, 97.0) + rng.random() * 1e-3)

    # Draw both BI-RADS variants up front so the stream is label independent.
    b_mal = _pick(
        rng,
        ("4", "4a", "4b", "4c", "5", "6", "0", "NULL"),
        (0.10, 0.08, 0.12, 0.15, 0.33, 0.10, 0.05, 0.07),
    )
    b_mal_path = _pick(rng, ("5", "6"), (0.45, 0.55))
    b_ben = _pick(rng, ("1", "2", "3", "0", "4", "NULL"), (0.25, 0.45, 0.15, 0.05, 0.04, 0.06))
    b_ben_path = _pick(rng, ("1", "2"), (0.4, 0.6))
    lesion_side = "L" if rng.random() < 0.5 else "R"

    case = Case(
        index=index,
        study=study,
        views=views,
        row_order=row_order,
        birads_case="",
        birads_pathway="",
        density=density,
        tissue_density=tissue_density,
        age=age,
        malignant=malignant,
        test=test,
        lesion_side=lesion_side,
        _u_malignant=u_mal,
        _u_test=u_test,
        _birads=(b_mal, b_mal_path, b_ben, b_ben_path),
    )
    _assign_birads(case)
    return case


def _assign_birads(case: Case) -> None:
    b_mal, b_mal_path, b_ben, b_ben_path = case._birads
    if case.malignant:
        case.birads_case = b_mal
        # Pathway-based score: the work-up ends at 5/6, or keeps a high case score.
        case.birads_pathway = b_mal if b_mal in ("4b", "4c", "5", "6") else b_mal_path
    else:
        case.birads_case = b_ben
        if b_ben in ("1", "2", "3"):
            case.birads_pathway = b_ben
        elif b_ben == "4":
            case.birads_pathway = "4"  # suspicious, biopsy proved benign
        else:
            case.birads_pathway = b_ben_path


def _make_cases(seed: int, n: int) -> list[Case]:
    cases = [_make_case(seed, i) for i in range(1, n + 1)]
    if n >= 2:
        # Guarantee both labels and both splits; flip the case closest to the threshold.
        if not any(c.malignant for c in cases):
            c = min(cases, key=lambda c: c._u_malignant)
            c.malignant = True
            _assign_birads(c)
        elif all(c.malignant for c in cases):
            c = max(cases, key=lambda c: c._u_malignant)
            c.malignant = False
            _assign_birads(c)
        if not any(c.test for c in cases):
            min(cases, key=lambda c: c._u_test).test = True
        elif all(c.test for c in cases):
            max(cases, key=lambda c: c._u_test).test = False
    return cases


# ---------------------------------------------------------------------------
# Pixels
# ---------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _spectral_filter(h: int, w: int, beta: float, stretch: float, cutoff: float) -> np.ndarray:
    """Amplitude filter for power-law (1/f^beta) noise, longer correlation along x
    (tissue strands run from the chest wall towards the nipple)."""
    fy = np.fft.fftfreq(h)[:, None] * (h / 256.0)
    fx = np.fft.rfftfreq(w)[None, :] * (w / 256.0) * stretch
    f2 = fy * fy + fx * fx + cutoff * cutoff
    amp = f2 ** (-beta / 4.0)
    amp[0, 0] = 0.0
    return amp


def _smooth_noise(
    rng: np.random.Generator, h: int, w: int, beta: float, stretch: float = 1.0, cutoff: float = 0.004
) -> np.ndarray:
    """Zero-mean, unit-std low-frequency noise field of shape (h, w)."""
    amp = _spectral_filter(h, w, beta, stretch, cutoff)
    spec = (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)) * amp
    field_ = np.fft.irfft2(spec, s=(h, w))
    field_ -= field_.mean()
    std = field_.std()
    return (field_ / std if std > 0 else field_).astype(np.float32)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass
class _Anatomy:
    """Per-case body habitus shared by all views of a case."""

    depth: float  # how far the breast reaches from the chest wall (fraction of width)
    height: float  # half-height of the CC footprint (fraction of height)
    fat: float  # brightness of fatty tissue
    gland_threshold: float  # lower = more fibroglandular tissue
    gland_gain: float
    lesion_depth: float  # lesion position along the chest wall -> nipple axis (0..1)
    lesion_radius: float  # fraction of the image width
    lesion_spiculated: bool
    lesion_gain: float


_GLAND_THRESHOLD = {"A": 1.25, "B": 0.55, "C": -0.05, "D": -0.65}


def _anatomy(rng: np.random.Generator, case: Case) -> _Anatomy:
    return _Anatomy(
        depth=float(rng.uniform(0.66, 0.86)),
        height=float(rng.uniform(0.36, 0.45)),
        fat=float(rng.uniform(0.30, 0.38)),
        gland_threshold=_GLAND_THRESHOLD[case.tissue_density] + float(rng.normal(0, 0.1)),
        gland_gain=float(rng.uniform(0.30, 0.40)),
        lesion_depth=float(rng.uniform(0.25, 0.65)),
        lesion_radius=float(rng.uniform(0.032, 0.055)),
        lesion_spiculated=bool(rng.random() < 0.7),
        lesion_gain=float(rng.uniform(0.42, 0.55)),
    )


def _lesion_patch(rng: np.random.Generator, radius_px: float, spiculated: bool) -> np.ndarray:
    """Lesion intensity (0..1) on a square patch centred on the lesion."""
    n_spic = int(rng.integers(9, 17)) if spiculated else 0
    reach = radius_px * (3.2 if spiculated else 1.3)
    half = int(np.ceil(reach)) + 2
    ax = np.arange(-half, half + 1, dtype=np.float32)
    dy, dx = np.meshgrid(ax, ax, indexing="ij")
    d = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)

    # Irregular but compact core: radius wobbles with a few angular harmonics.
    k = np.arange(2, 6, dtype=np.float32)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, size=(4, 1, 1)).astype(np.float32)
    wobble = (rng.uniform(0.04, 0.12, size=(4, 1, 1)).astype(np.float32) * np.cos(k * theta + phase)).sum(0)
    r_edge = radius_px * (1.0 + wobble)
    core = _smoothstep((r_edge - d) / max(1.2, 0.35 * radius_px) + 0.5)
    core *= 0.85 + 0.15 * np.clip(1.0 - d / r_edge, 0.0, 1.0)  # slightly denser centre
    out = core
    if n_spic:
        ang = rng.uniform(0, 2 * np.pi, size=(n_spic, 1, 1)).astype(np.float32)
        length = (radius_px * rng.uniform(1.8, 3.0, size=(n_spic, 1, 1))).astype(np.float32)
        width = max(0.7, radius_px * 0.1)
        along = d * np.cos(theta - ang)
        perp = np.abs(d * np.sin(theta - ang))
        taper = np.clip(1.0 - along / length, 0.0, 1.0)
        spic = np.exp(-((perp / (width * (0.4 + taper))) ** 2)) * taper * (along > 0)
        out = np.maximum(out, 0.85 * spic.max(0))
    return out.astype(np.float32)


def _render_view(rng: np.random.Generator, view: str, case: Case, an: _Anatomy, h: int, w: int) -> np.ndarray:
    """One view as 12-bit values (uint16, 0..4095). Drawn as a left breast (chest
    wall at x=0) and mirrored for right-breast views."""
    side, kind = view[0], view[1:]
    mlo_like = kind in ("MLO", "LM", "ML")
    y = (np.arange(h, dtype=np.float32) + 0.5)[:, None] / h
    x = (np.arange(w, dtype=np.float32) + 0.5)[None, :] / w

    # --- breast outline: a half ellipse against the chest wall -------------------
    depth = an.depth * float(rng.uniform(0.95, 1.04))
    if mlo_like:
        cy = float(rng.uniform(0.50, 0.58))
        top = cy + 0.25  # upper half runs off the top edge (axilla)
        bottom = float(rng.uniform(0.32, 0.40))
    else:
        cy = float(rng.uniform(0.47, 0.53))
        if kind == "XCCL":  # exaggerated CC: footprint shifted, a bit shallower
            cy += float(rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.09))
            depth *= 0.92
        top = an.height * float(rng.uniform(0.96, 1.06))
        bottom = an.height * float(rng.uniform(0.96, 1.06))
    dyn = y - cy
    half_h = np.where(dyn < 0, top, bottom).astype(np.float32)
    theta = np.arctan2(dyn / half_h, x / depth)
    wob = 1.0 + 0.025 * np.cos(2 * theta + rng.uniform(0, 6.3)) + 0.015 * np.cos(3 * theta + rng.uniform(0, 6.3))
    r = np.sqrt((x / depth) ** 2 + (dyn / half_h) ** 2) / wob

    px = 1.0 / w
    edge_soft = max(1.5 * px / depth, 1e-3)
    mask = _smoothstep((1.0 - r) / edge_soft)  # anti-aliased skin line
    # Thickness falls off towards the skin, so the periphery is darker.
    thickness = np.clip((1.0 - r) / 0.22, 0.0, 1.0) ** 0.55

    # --- tissue --------------------------------------------------------------
    gland_noise = _smooth_noise(rng, h, w, beta=3.2, stretch=2.2)
    strands = _smooth_noise(rng, h, w, beta=2.4, stretch=3.5, cutoff=0.01)
    fine_noise = _smooth_noise(rng, h, w, beta=1.8, stretch=1.3, cutoff=0.03)
    # Glandular tissue sits behind the nipple, away from the skin and chest wall.
    prior = np.exp(-((((x / depth) - 0.40) / 0.42) ** 2)) * np.clip((0.95 - r) / 0.35, 0.0, 1.0)
    drive = gland_noise + 0.45 * strands + 1.2 * prior - an.gland_threshold - 0.6
    gland = _smoothstep(drive / 2.4 + 0.5) * prior
    tissue = an.fat + an.gland_gain * gland + 0.03 * fine_noise + 0.02 * strands * (0.3 + gland)
    img = thickness * tissue

    # --- pectoral muscle (MLO-like views): a bright triangle in the top corner ---
    pect = np.zeros_like(img)
    if mlo_like:
        pw = float(rng.uniform(0.28, 0.42)) * (0.55 if kind in ("LM", "ML") else 1.0)
        ph = float(rng.uniform(0.45, 0.65)) * (0.55 if kind in ("LM", "ML") else 1.0)
        bulge = float(rng.uniform(0.05, 0.2))
        s = x / pw + y / ph
        s = s - bulge * np.sin(np.pi * np.clip(y / ph, 0, 1))  # slightly convex front edge
        pect = _smoothstep((1.0 - s) / (2.5 * px / pw))
        muscle = float(rng.uniform(0.56, 0.66)) + 0.02 * fine_noise + 0.12 * np.clip(1 - s, 0, 1) ** 0.5
        img = img * (1.0 - pect) + muscle * pect
        mask = np.maximum(mask, pect)

    # --- lesion (malignant cases, every view of the affected breast) -------------
    if case.malignant and side == case.lesion_side:
        rad_px = an.lesion_radius * w
        patch = _lesion_patch(rng, rad_px, an.lesion_spiculated)
        half = patch.shape[0] // 2
        ly_frac = cy + float(rng.uniform(-0.45, 0.45)) * (bottom if not mlo_like else 0.5 * bottom)
        lx = an.lesion_depth * depth * (1.0 - 0.5 * abs(ly_frac - cy))
        if mlo_like:  # keep the lesion clear of the pectoral muscle
            while lx / pw + ly_frac / ph < 1.15 and lx < 0.8 * depth:
                lx += 0.04
        cyi = int(round(ly_frac * h))
        cxi = int(round(lx * w))
        y0, y1 = max(cyi - half, 0), min(cyi + half + 1, h)
        x0, x1 = max(cxi - half, 0), min(cxi + half + 1, w)
        sub = patch[y0 - (cyi - half) : y1 - (cyi - half), x0 - (cxi - half) : x1 - (cxi - half)]
        region = img[y0:y1, x0:x1]
        inside = mask[y0:y1, x0:x1]
        img[y0:y1, x0:x1] = region + an.lesion_gain * sub * inside * (1.0 - 0.35 * region)

    img = img * mask
    img += 0.004 * rng.standard_normal(img.shape).astype(np.float32) * mask  # faint quantum noise
    out = np.clip(np.rint(img * 4095.0), 0, 4095).astype(np.uint16)
    if side == "R":
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _render_case(seed: int, case: Case, size: tuple[int, int]) -> dict[str, np.ndarray]:
    rng = _case_rng(seed, case.index, _STREAM_PIXELS)
    an = _anatomy(rng, case)
    h, w = size
    # One child generator per view name, so adding an extra view leaves the
    # standard views untouched.
    images = {}
    for view in case.views:
        vrng = np.random.default_rng(
            np.random.SeedSequence([seed, case.index, _STREAM_PIXELS, ALL_VIEWS.index(view) + 1])
        )
        images[view] = _render_view(vrng, view, case, an, h, w)
    return images


def _to_8bit(img12: np.ndarray) -> np.ndarray:
    return (img12 >> 4).astype(np.uint8)


def _write_png(path: Path, img8: np.ndarray) -> None:
    # Plain PNG: no text chunks, no timestamp, fixed compression -> reproducible bytes.
    Image.fromarray(img8).save(path, format="PNG", compress_level=6)


# ---------------------------------------------------------------------------
# CSVs
# ---------------------------------------------------------------------------


def _csv_text(columns, rows) -> str:
    lines = [SEP.join(columns)]
    for row in rows:
        cells = [str(v) for v in row]
        for c in cells:
            if SEP in c or "\n" in c:
                raise ValueError(f"cell {c!r} would break the ';' CSV")
        lines.append(SEP.join(cells))
    return NEWLINE.join(lines) + NEWLINE


def _image_rows(cases):
    for c in cases:
        for v in c.row_order:
            yield (c.patient, c.name, c.path, f"{c.path}/{v}/1.png", c.study, v, c.label, c.split)


def _case_rows(cases):
    for c in cases:
        views4 = "+".join(v for v in c.views if v in STANDARD_VIEWS)
        yield (
            c.patient,
            c.name,
            c.path,
            c.study,
            views4,
            "+".join(c.views),
            c.birads_case,
            c.birads_pathway,
            c.density,
            repr(c.age),
            c.label,
            c.split,
        )


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m:
        raise ValueError(f"size must look like HxW (e.g. 256x208), got {text!r}")
    h, w = int(m.group(1)), int(m.group(2))
    if h < MIN_SIZE or w < MIN_SIZE or h > 8192 or w > 8192:
        raise ValueError(f"size {h}x{w} out of range ({MIN_SIZE}..8192 per side)")
    return h, w


def _remove_stale_tmp(out: Path) -> None:
    """Drop temp folders left by a crashed run (their process is gone)."""
    for p in out.glob(_TMP_PREFIX + "*"):
        m = re.match(re.escape(_TMP_PREFIX) + r"(\d+)-", p.name)
        if not m or not p.is_dir():
            continue
        pid = int(m.group(1))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass  # exists but not ours: leave it alone


def generate(
    out_dir,
    cases: int = DEFAULT_CASES,
    seed: int = DEFAULT_SEED,
    size: tuple[int, int] = DEFAULT_SIZE,
    progress: bool = False,
) -> Path:
    """Write a synthetic CLaM sample into ``out_dir`` and return that folder.

    ``out_dir`` ends up holding ``CLaM-sample/`` and the two CSVs (the layout of
    ``/mnt/dataset``). An older sample there is replaced; other files are left
    alone. The sample is built in a temporary folder next to it and moved into
    place at the end, so a crash never leaves half a sample behind.
    """
    cases = int(cases)
    seed = int(seed)
    if cases < 1:
        raise ValueError("cases must be >= 1")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    if isinstance(size, str):
        size = parse_size(size)
    h, w = (int(size[0]), int(size[1]))
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE}x{MIN_SIZE}")

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(out)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", dir=out))
    try:
        meta = _make_cases(seed, cases)
        sample = tmp / SAMPLE_DIR
        sample.mkdir()
        t0 = time.monotonic()
        for c in meta:
            images = _render_case(seed, c, (h, w))
            for view, img12 in images.items():
                d = sample / c.name / view
                d.mkdir(parents=True)
                np.save(d / "1.npy", img12, allow_pickle=False)
                _write_png(d / "1.png", _to_8bit(img12))
            if progress and c.index % 100 == 0:
                print(f"generate: {c.index}/{cases} cases ({time.monotonic() - t0:.0f}s)", file=sys.stderr, flush=True)
        (tmp / IMAGE_CSV).write_bytes(_csv_text(IMAGE_COLUMNS, _image_rows(meta)).encode("ascii"))
        (tmp / CASE_CSV).write_bytes(_csv_text(CASE_COLUMNS, _case_rows(meta)).encode("ascii"))

        # Swap into place: old sample aside (one rename), new one in, CSVs replaced.
        final = out / SAMPLE_DIR
        old = tmp / "old"
        if final.is_symlink() or final.is_file():
            final.unlink()
        elif final.exists():
            os.rename(final, old)
        os.rename(sample, final)
        for name in (IMAGE_CSV, CASE_CSV):
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(
        description="Write a synthetic CLaM sample (same layout and CSV schema as the real data set)."
    )
    ap.add_argument("--cases", type=int, default=DEFAULT_CASES, help="number of cases (default %(default)s)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed, >= 0 (default %(default)s)")
    ap.add_argument(
        "--size", default="{}x{}".format(*DEFAULT_SIZE), help="image size HxW in pixels (default %(default)s)"
    )
    ap.add_argument("--out", type=Path, default=here, help="output folder (default: the folder of this script)")
    args = ap.parse_args(argv)
    try:
        size = parse_size(args.size)
        if args.cases < 1:
            raise ValueError("--cases must be >= 1")
        if args.seed < 0:
            raise ValueError("--seed must be >= 0")
    except ValueError as e:
        ap.error(str(e))
    t0 = time.monotonic()
    out = generate(args.out, cases=args.cases, seed=args.seed, size=size, progress=True)
    print(f"generate: wrote {args.cases} cases to {out} in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
