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
arguments write byte-identical files. It needs nothing but Python 3.10 or later: no numpy, no
Pillow (the PNG and .npy files are written by hand; both read back with numpy and Pillow).

See dataset/dataset.md for the researcher-facing description.
"""

from __future__ import annotations

import argparse
import array
import math
import os
import random
import re
import shutil
import struct
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

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


def _case_rng(seed: int, index: int, stream: int, view: int = 0) -> random.Random:
    """Independent generator per (seed, case, purpose, view): a case never depends on how many
    cases come before or after it, nor a view on which others the case has. Python seeds from
    the string's SHA-512, the same on every platform and version."""
    return random.Random(f"clam-sample:{seed}:{index}:{stream}:{view}")


def _pick(rng: random.Random, values, weights):
    return rng.choices(values, weights=weights)[0]


_STREAM_META, _STREAM_PIXELS = 0, 1


def _make_case(seed: int, index: int) -> Case:
    rng = _case_rng(seed, index, _STREAM_META)
    u_mal = rng.random()
    u_test = rng.random()
    malignant = u_mal < P_MALIGNANT
    test = u_test < P_TEST

    study = _pick(rng, STUDY_DESCRIPTIONS, (0.55, 0.35, 0.10))

    views = list(STANDARD_VIEWS)
    if rng.random() < P_EXTRA_VIEWS:
        # Exaggerated CC views are the most common extra, lateral views rarer.
        n_extra = 1 if rng.random() < 0.75 else 2
        weights = [3.0, 3.0, 1.0, 1.0, 1.0, 1.0]
        extra = list(EXTRA_VIEWS)
        for _ in range(n_extra):
            k = rng.choices(range(len(extra)), weights=weights)[0]
            views.append(extra.pop(k))
            weights.pop(k)
    views.sort()
    # The real CSV lists a case's rows in no particular view order; mimic that.
    row_order = rng.sample(views, len(views))

    density = _pick(rng, DENSITY_VALUES, (0.10, 0.35, 0.30, 0.10, 0.15))
    tissue_density = density if density != "NULL" else _pick(rng, DENSITY_VALUES[:4], (1, 3, 3, 1))
    age = min(max(rng.gauss(60.0, 11.0), 30.0), 97.0) + rng.random() * 1e-3

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
# Pixels (plain Python: the generator needs nothing but the standard library)
# ---------------------------------------------------------------------------

Pixels = list  # rows of floats (or of ints once quantised), top to bottom


def _smoothstep(t: float) -> float:
    t = 0.0 if t < 0.0 else 1.0 if t > 1.0 else t
    return t * t * (3.0 - 2.0 * t)


def _axis_steps(n: int, cell: float, offset: float) -> list[tuple[int, float]]:
    """For each of n pixels along an axis: the grid point before it and the smoothed weight of the
    one after it, for grid points `cell` pixels apart."""
    steps = []
    for i in range(n):
        pos = (i + 0.5) / cell + offset
        k = int(pos)
        steps.append((k, _smoothstep(pos - k)))
    return steps


# Value noise: octaves of random values on grids `cell` (a fraction of the image height) apart,
# smoothly interpolated; coarse octaves dominate, as in tissue.
_GLAND_OCTAVES = ((0.36, 1.0), (0.18, 0.45), (0.09, 0.16))
_STRAND_OCTAVES = ((0.16, 1.0), (0.08, 0.5))
_FINE_OCTAVES = ((0.06, 1.0), (0.03, 0.5))


def _smooth_noise(rng: random.Random, h: int, w: int, octaves, stretch: float = 1.0) -> Pixels:
    """Zero-mean, unit-std smooth noise of h rows and w columns, correlated longer along x by
    `stretch` (tissue strands run from the chest wall towards the nipple)."""
    field = [[0.0] * w for _ in range(h)]
    for fraction, amplitude in octaves:
        cell_y = max(2.0, fraction * h)
        cell_x = cell_y * stretch
        ys = _axis_steps(h, cell_y, rng.random())
        xs = _axis_steps(w, cell_x, rng.random())
        grid = [[rng.gauss(0.0, amplitude) for _ in range(xs[-1][0] + 2)] for _ in range(ys[-1][0] + 2)]
        along_x = [[g[k] + (g[k + 1] - g[k]) * t for k, t in xs] for g in grid]
        for y, (k, t) in enumerate(ys):
            a, b = along_x[k], along_x[k + 1]
            field[y] = [f + p + (q - p) * t for f, p, q in zip(field[y], a, b, strict=True)]
    n = h * w
    mean = sum(map(sum, field)) / n
    var = sum(sum((v - mean) ** 2 for v in row) for row in field) / n
    std = math.sqrt(var) or 1.0
    return [[(v - mean) / std for v in row] for row in field]


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


def _anatomy(rng: random.Random, case: Case) -> _Anatomy:
    return _Anatomy(
        depth=rng.uniform(0.66, 0.86),
        height=rng.uniform(0.36, 0.45),
        fat=rng.uniform(0.30, 0.38),
        gland_threshold=_GLAND_THRESHOLD[case.tissue_density] + rng.gauss(0, 0.1),
        gland_gain=rng.uniform(0.30, 0.40),
        lesion_depth=rng.uniform(0.25, 0.65),
        lesion_radius=rng.uniform(0.032, 0.055),
        lesion_spiculated=rng.random() < 0.7,
        lesion_gain=rng.uniform(0.42, 0.55),
    )


def _lesion_patch(rng: random.Random, radius_px: float, spiculated: bool) -> Pixels:
    """Lesion intensity (0..1) on a square patch centred on the lesion."""
    n_spic = rng.randint(9, 16) if spiculated else 0
    reach = radius_px * (3.2 if spiculated else 1.3)
    half = math.ceil(reach) + 2
    # Irregular but compact core: its radius wobbles with a few angular harmonics.
    harmonics = [(k, rng.uniform(0, 2 * math.pi), rng.uniform(0.04, 0.12)) for k in range(2, 6)]
    spicules = [(rng.uniform(0, 2 * math.pi), radius_px * rng.uniform(1.8, 3.0)) for _ in range(n_spic)]
    width = max(0.7, radius_px * 0.1)
    soft = max(1.2, 0.35 * radius_px)
    patch = []
    for dy in range(-half, half + 1):
        row = []
        for dx in range(-half, half + 1):
            d = math.hypot(dy, dx)
            theta = math.atan2(dy, dx)
            r_edge = radius_px * (1.0 + sum(a * math.cos(k * theta + p) for k, p, a in harmonics))
            value = _smoothstep((r_edge - d) / soft + 0.5)
            value *= 0.85 + 0.15 * min(max(1.0 - d / r_edge, 0.0), 1.0)  # slightly denser centre
            for angle, length in spicules:
                along = d * math.cos(theta - angle)
                if along <= 0 or along >= length:
                    continue
                taper = 1.0 - along / length
                perp = abs(d * math.sin(theta - angle))
                value = max(value, 0.85 * math.exp(-((perp / (width * (0.4 + taper))) ** 2)) * taper)
            row.append(value)
        patch.append(row)
    return patch


def _render_view(rng: random.Random, view: str, case: Case, an: _Anatomy, h: int, w: int) -> Pixels:
    """One view as rows of 12-bit values (0..4095). Drawn as a left breast (chest wall at x=0)
    and mirrored for right-breast views."""
    side, kind = view[0], view[1:]
    mlo_like = kind in ("MLO", "LM", "ML")
    xs = [(x + 0.5) / w for x in range(w)]

    # --- breast outline: a half ellipse against the chest wall -------------------
    depth = an.depth * rng.uniform(0.95, 1.04)
    if mlo_like:
        cy = rng.uniform(0.50, 0.58)
        top = cy + 0.25  # upper half runs off the top edge (axilla)
        bottom = rng.uniform(0.32, 0.40)
    else:
        cy = rng.uniform(0.47, 0.53)
        if kind == "XCCL":  # exaggerated CC: footprint shifted, a bit shallower
            cy += rng.choice((-1.0, 1.0)) * rng.uniform(0.05, 0.09)
            depth *= 0.92
        top = an.height * rng.uniform(0.96, 1.06)
        bottom = an.height * rng.uniform(0.96, 1.06)
    p2, p3 = rng.uniform(0, 6.3), rng.uniform(0, 6.3)
    c2, s2, c3, s3 = 0.025 * math.cos(p2), 0.025 * math.sin(p2), 0.015 * math.cos(p3), 0.015 * math.sin(p3)
    px = 1.0 / w
    edge_soft = max(1.5 * px / depth, 1e-3)
    us = [x / depth for x in xs]
    # Glandular tissue sits behind the nipple, away from the skin and chest wall.
    along_prior = [math.exp(-(((u - 0.40) / 0.42) ** 2)) for u in us]

    gland_noise = _smooth_noise(rng, h, w, _GLAND_OCTAVES, stretch=2.2)
    strands = _smooth_noise(rng, h, w, _STRAND_OCTAVES, stretch=3.5)
    fine_noise = _smooth_noise(rng, h, w, _FINE_OCTAVES, stretch=1.3)

    pectoral = None
    if mlo_like:
        shrink = 0.55 if kind in ("LM", "ML") else 1.0
        pw, ph = rng.uniform(0.28, 0.42) * shrink, rng.uniform(0.45, 0.65) * shrink
        bulge = rng.uniform(0.05, 0.2)
        pectoral = (pw, ph, bulge, rng.uniform(0.56, 0.66), 2.5 * px / pw)

    fat, gain, threshold = an.fat, an.gland_gain, an.gland_threshold + 0.6
    img, mask = [], []
    for y in range(h):
        yv = (y + 0.5) / h
        dyn = yv - cy
        v = dyn / (top if dyn < 0 else bottom)
        v2 = v * v
        gn, st, fn = gland_noise[y], strands[y], fine_noise[y]
        row, mrow = [0.0] * w, [0.0] * w
        for x in range(w):
            u = us[x]
            rho = math.sqrt(u * u + v2)
            if rho > 1.2:
                continue  # well outside the skin line
            if rho > 0:
                c, s = u / rho, v / rho
                wob = 1.0 + (c * c - s * s) * c2 - 2 * s * c * s2 + c * (4 * c * c - 3) * c3 - s * (3 - 4 * s * s) * s3
            else:
                wob = 1.0
            r = rho / wob
            m = _smoothstep((1.0 - r) / edge_soft)  # anti-aliased skin line
            if m <= 0.0:
                continue
            # Thickness falls off towards the skin, so the periphery is darker.
            thick = min(max((1.0 - r) / 0.22, 0.0), 1.0) ** 0.55
            prior = along_prior[x] * min(max((0.95 - r) / 0.35, 0.0), 1.0)
            # (1.3: value noise has lighter tails than tissue; dense patches must still reach white)
            gland = _smoothstep((1.3 * gn[x] + 0.45 * st[x] + 1.2 * prior - threshold) / 2.4 + 0.5) * prior
            row[x] = thick * (fat + gain * gland + 0.03 * fn[x] + 0.02 * st[x] * (0.3 + gland))
            mrow[x] = m
        if pectoral:  # MLO-like views: a bright triangle of pectoral muscle in the top corner
            pw, ph, bulge, muscle0, soft = pectoral
            front = 1.0 + bulge * math.sin(math.pi * min(max(yv / ph, 0.0), 1.0)) - yv / ph
            for x in range(w):
                s = xs[x] / pw
                if s >= front:
                    break
                pect = _smoothstep((front - s) / soft)
                muscle = muscle0 + 0.02 * fn[x] + 0.12 * math.sqrt(min(front - s, 1.0))
                row[x] = row[x] * (1.0 - pect) + muscle * pect
                mrow[x] = max(mrow[x], pect)
        img.append(row)
        mask.append(mrow)

    # --- lesion (malignant cases, every view of the affected breast) -------------
    if case.malignant and side == case.lesion_side:
        patch = _lesion_patch(rng, an.lesion_radius * w, an.lesion_spiculated)
        half = len(patch) // 2
        ly = cy + rng.uniform(-0.45, 0.45) * (bottom if not mlo_like else 0.5 * bottom)
        lx = an.lesion_depth * depth * (1.0 - 0.5 * abs(ly - cy))
        if pectoral:  # keep the lesion clear of the pectoral muscle
            while lx / pectoral[0] + ly / pectoral[1] < 1.15 and lx < 0.8 * depth:
                lx += 0.04
        cyi, cxi = round(ly * h), round(lx * w)
        for py, prow in enumerate(patch):
            y = cyi - half + py
            if not 0 <= y < h:
                continue
            row, mrow = img[y], mask[y]
            for pxi, value in enumerate(prow):
                x = cxi - half + pxi
                if 0 <= x < w and value:
                    row[x] += an.lesion_gain * value * mrow[x] * (1.0 - 0.35 * row[x])

    out = []
    gauss = rng.gauss
    for row, mrow in zip(img, mask, strict=True):
        # Faint quantum noise inside the breast, then 12 bits.
        q = [
            min(4095, max(0, round((value * m + 0.004 * gauss(0.0, 1.0) * m) * 4095.0))) if m else 0
            for value, m in zip(row, mrow, strict=True)
        ]
        out.append(q[::-1] if side == "R" else q)
    return out


def _render_case(seed: int, case: Case, size: tuple[int, int]) -> dict[str, Pixels]:
    an = _anatomy(_case_rng(seed, case.index, _STREAM_PIXELS), case)
    h, w = size
    # One generator per view name, so adding an extra view leaves the standard views untouched.
    return {
        view: _render_view(_case_rng(seed, case.index, _STREAM_PIXELS, ALL_VIEWS.index(view) + 1), view, case, an, h, w)
        for view in case.views
    }


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _write_png(path: Path, img12: Pixels) -> None:
    """8-bit grayscale PNG of the 12-bit image (value >> 4). Plain: no text chunks, no timestamp,
    fixed compression, so the bytes are the same on every run."""
    h, w = len(img12), len(img12[0])
    raw = b"".join(b"\x00" + bytes(v >> 4 for v in row) for row in img12)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit, grayscale, no interlace
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 6))
        + _png_chunk(b"IEND", b"")
    )


def _write_npy(path: Path, img12: Pixels) -> None:
    """The 12-bit image as NumPy's .npy (format 1.0): little-endian uint16, C order."""
    h, w = len(img12), len(img12[0])
    header = f"{{'descr': '<u2', 'fortran_order': False, 'shape': ({h}, {w}), }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"  # the data starts 64-byte aligned
    values = array.array("H", (v for row in img12 for v in row))
    if sys.byteorder == "big":
        values.byteswap()
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + values.tobytes())


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
                _write_npy(d / "1.npy", img12)
                _write_png(d / "1.png", img12)
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
