"""What a reviewer needs to know about one exported file, read without trusting it.

Nothing here executes or unpickles the file: types come from magic bytes and names, `.npy`
shapes from the header alone (numpy.lib.format), PyTorch checkpoints are listed as the zip
archives they are and their pickle is only scanned for the names it would import
(pickletools.genops reads opcodes, it runs nothing).
"""

from __future__ import annotations

import base64
import io
import json
import pickletools
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format
from PIL import Image

TEXT_HEAD_LINES = 20
TEXT_HEAD_BYTES = 4096
THUMBNAIL_PIXELS = 240
MAX_LISTED_ENTRIES = 50
MAX_PICKLE_SCAN_BYTES = 16 * 1024**2
IMAGE_NAMES = (".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp", ".webp", ".dcm", ".nii", ".nii.gz", ".mha")
ARCHIVE_NAMES = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".7z", ".zst", ".rar")
TEXT_KINDS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".log": "log"}


def _head(path: Path, size: int = 512) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def detect_kind(path: Path, name: str) -> str:
    """The file's type, as a reviewer thinks of it."""
    head = _head(path, 512)
    lower = name.lower()
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"II*\x00", b"MM\x00*", b"BM")):
        return "image"
    if (head[:4] == b"RIFF" and head[8:12] == b"WEBP") or head[128:132] == b"DICM" or lower.endswith(IMAGE_NAMES):
        return "image"
    if head.startswith(b"\x93NUMPY"):
        return "array"
    if head.startswith(b"\x89HDF"):
        return "hdf5"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_kind(path)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if _is_safetensors(head):
        return "safetensors"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"7z\xbc\xaf\x27\x1c", b"\x28\xb5\x2f\xfd", b"Rar!")):
        return "archive"
    if (len(head) > 262 and head[257:262] == b"ustar") or lower.endswith(ARCHIVE_NAMES):
        return "archive"
    if lower.endswith(".onnx"):
        return "onnx"
    if _looks_like_text(path):
        return next((kind for suffix, kind in TEXT_KINDS.items() if lower.endswith(suffix)), "text")
    return "binary"


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "binary"
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "pytorch"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "archive"


def _is_safetensors(head: bytes) -> bool:
    if len(head) < 10:
        return False
    header_length = int.from_bytes(head[:8], "little")
    return 0 < header_length < 100 * 1024**2 and head[8:10] == b'{"'


def _looks_like_text(path: Path) -> bool:
    sample = _head(path, 64 * 1024)
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 3:  # more than a character cut at the end of the sample
            return False
    controls = sum(1 for byte in sample if byte < 32 and byte not in b"\t\n\r\f\x1b")
    return controls <= len(sample) // 100


def flags_for(kind: str, size: int, large_bytes: int, dataset_matches: list[str]) -> list[str]:
    flags = []
    if dataset_matches:
        flags.append("dataset_copy")
    if kind == "image":
        flags.append("image")
    if kind in ("array", "npz", "hdf5", "safetensors"):
        flags.append("array")
    if kind in ("archive", "npz"):
        flags.append("archive")
    if kind in ("pickle", "pytorch"):
        flags.append("pickle")
    if size > large_bytes:
        flags.append("large")
    return flags


# --- previews ------------------------------------------------------------------------------------


def preview(path: Path, kind: str) -> dict:
    """A small, safe summary for the review page: text heads, thumbnails, shapes, listings."""
    try:
        if kind in ("text", "csv", "json", "log"):
            return _text_head(path)
        if kind == "image":
            return _image_preview(path)
        if kind == "array":
            with open(path, "rb") as handle:
                return {"facts": _npy_facts(handle)}
        if kind == "npz":
            return _npz_preview(path)
        if kind == "pytorch":
            return _pytorch_preview(path)
        if kind == "pickle":
            return _pickle_preview(path)
        if kind == "safetensors":
            return _safetensors_preview(path)
        if kind == "archive":
            return _archive_listing(path)
    except Exception as exc:  # an unreadable file is still shown, with why it has no preview
        return {"note": f"no preview: {type(exc).__name__}: {str(exc)[:200]}"}
    return {}


def _text_head(path: Path) -> dict:
    with open(path, "rb") as handle:
        raw = handle.read(TEXT_HEAD_BYTES + 1)
    text = raw[:TEXT_HEAD_BYTES].decode("utf-8", "replace")
    lines = text.splitlines()
    cut = len(raw) > TEXT_HEAD_BYTES or len(lines) > TEXT_HEAD_LINES
    return {"text": "\n".join(lines[:TEXT_HEAD_LINES]), "note": "first lines only" if cut else ""}


def _image_preview(path: Path) -> dict:
    with Image.open(path) as image:  # Pillow refuses decompression bombs by itself
        facts = [["format", image.format or "?"], ["size", f"{image.width} × {image.height}"], ["mode", image.mode]]
        image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
        if image.mode not in ("RGB", "L"):
            image = image.convert("L" if image.mode in ("I", "I;16", "F", "1") else "RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return {"thumbnail": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(), "facts": facts}


def _npy_facts(handle) -> list[list[str]]:
    version = npy_format.read_magic(handle)
    reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    shape, fortran_order, dtype = reader(handle)
    facts = [["shape", " × ".join(map(str, shape)) or "scalar"], ["dtype", str(dtype)]]
    if fortran_order:
        facts.append(["order", "Fortran"])
    if dtype.hasobject:
        facts.append(["warning", "object array: holds pickled Python objects; not loaded"])
    facts.append(["elements", str(int(np.prod(shape, dtype=np.int64)))])
    return facts


def _npz_preview(path: Path) -> dict:
    entries = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist()[:MAX_LISTED_ENTRIES]:
            with archive.open(info) as member:
                facts = dict(_npy_facts(member))
            entries.append([info.filename, info.file_size, f"{facts['dtype']} {facts['shape']}"])
        total = len(archive.infolist())
    return {"entries": entries, "note": _more(total)}


def _pytorch_preview(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        pickle_name = next(i.filename for i in infos if i.filename.endswith("data.pkl"))
        pickle_info = archive.getinfo(pickle_name)
        imports = []
        if pickle_info.file_size <= MAX_PICKLE_SCAN_BYTES:
            imports = pickle_imports(archive.read(pickle_name))
    entries = [[i.filename, i.file_size, ""] for i in infos[:MAX_LISTED_ENTRIES]]
    tensors = sum(1 for i in infos if "/data/" in i.filename)
    facts = [["format", "PyTorch zip checkpoint (not unpickled)"], ["tensor storages", str(tensors)]]
    facts.append(["pickle imports", ", ".join(imports) or "(not scanned: too large)"])
    return {"facts": facts, "entries": entries, "note": _more(len(infos))}


def _pickle_preview(path: Path) -> dict:
    size = path.stat().st_size
    if size > MAX_PICKLE_SCAN_BYTES:
        return {"note": "pickle file too large to scan; never unpickled"}
    imports = pickle_imports(path.read_bytes())
    return {"facts": [["format", "raw pickle (not unpickled)"], ["pickle imports", ", ".join(imports) or "none"]]}


def pickle_imports(data: bytes) -> list[str]:
    """The module.name pairs a pickle would import when loaded, read from its opcodes."""
    found: list[str] = []
    strings: list[str] = []
    memo: dict[int, str] = {}
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING"):
                strings.append(str(arg))
            elif opcode.name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                memo[int(arg)] = strings[-1]
            elif opcode.name == "MEMOIZE" and strings:
                memo[len(memo)] = strings[-1]
            elif opcode.name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:
                strings.append(memo[int(arg)])
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # a truncated or hostile pickle: report what was read so far
        found.append("(unreadable beyond this point)")
    return sorted(set(found))


def _safetensors_preview(path: Path) -> dict:
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(min(length, 4 * 1024**2)))
    entries = [
        [name, 0, f"{meta.get('dtype')} {' × '.join(map(str, meta.get('shape', [])))}"]
        for name, meta in list(header.items())[:MAX_LISTED_ENTRIES]
        if name != "__metadata__"
    ]
    return {"facts": [["format", "safetensors"]], "entries": entries, "note": _more(len(header))}


def _archive_listing(path: Path) -> dict:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
        entries = [[i.filename, i.file_size, ""] for i in infos[:MAX_LISTED_ENTRIES]]
        return {"entries": entries, "note": _more(len(infos))}
    try:
        entries, total = [], 0
        with tarfile.open(path, "r:*") as archive:  # listed, never extracted
            for member in archive:
                total += 1
                if total <= MAX_LISTED_ENTRIES:
                    entries.append([member.name, member.size, "" if member.isfile() else "not a file"])
        return {"entries": entries, "note": _more(total)}
    except tarfile.TarError:
        return {"note": "compressed file; its contents are not listed"}


def _more(total: int) -> str:
    return f"first {MAX_LISTED_ENTRIES} of {total} entries" if total > MAX_LISTED_ENTRIES else ""
