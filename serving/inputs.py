"""Inputs checked before any model sees them: names, formats, and sizes read from the headers of
the files (a PNG's IHDR, an .npy's header) without decoding them. Nothing here unpickles."""

from __future__ import annotations

import ast
import hashlib
import struct

from django.conf import settings

from .errors import InvalidInput

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"


def sniff(data: bytes) -> str:
    if data.startswith(PNG_MAGIC):
        return "image/png"
    if data.startswith(NPY_MAGIC):
        return "application/x-npy"
    return "application/octet-stream"


def png_size(name: str, data: bytes) -> tuple[int, int]:
    if not data.startswith(PNG_MAGIC) or len(data) < 24 or data[12:16] != b"IHDR":
        raise InvalidInput(f"input {name} is not a PNG image.")
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def npy_shape(name: str, data: bytes) -> tuple[int, ...]:
    """The shape in an .npy header; arrays of Python objects (pickles) are refused."""
    if not data.startswith(NPY_MAGIC) or len(data) < 10:
        raise InvalidInput(f"input {name} is not an .npy array.")
    major = data[6]
    if major == 1:
        (length,), start = struct.unpack("<H", data[8:10]), 10
    elif major in (2, 3):
        (length,), start = struct.unpack("<I", data[8:12]), 12
    else:
        raise InvalidInput(f"input {name}: .npy format version {major} is not one this platform reads.")
    try:
        header = ast.literal_eval(data[start : start + length].decode("latin1"))
        descr, shape = header["descr"], tuple(header["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidInput(f"input {name}: the .npy header cannot be read.") from None
    if not isinstance(descr, str) or "O" in descr:
        raise InvalidInput(f"input {name} holds Python objects (dtype {descr!r}); send numbers only.")
    return shape


def check(card: dict, given: dict[str, tuple[str, bytes]]) -> list[dict]:
    """Check `given` (name -> (content type, bytes)) against the card; returns what the audit keeps."""
    declared = {spec["name"]: spec for spec in card.get("inputs", [])}
    if declared and set(given) != set(declared):
        missing, unknown = sorted(set(declared) - set(given)), sorted(set(given) - set(declared))
        parts = [f"missing {', '.join(missing)}" if missing else "", f"unknown {', '.join(unknown)}" if unknown else ""]
        raise InvalidInput(f"This model takes the inputs {', '.join(declared)}: {'; '.join(p for p in parts if p)}.")
    kept = []
    for name, (content_type, data) in given.items():
        spec = declared.get(name, {})
        formats = spec.get("formats") or ([spec["format"]] if spec.get("format") else [])
        if formats and content_type not in formats:
            raise InvalidInput(f"input {name} is {content_type}; this model takes {' or '.join(formats)}.")
        if content_type == "image/png":
            dims = png_size(name, data)
            pixels = dims[0] * dims[1]
            if pixels > settings.M2D_SERVE_MAX_PIXELS:
                raise InvalidInput(
                    f"input {name} is {dims[1]}×{dims[0]} pixels, over the limit of {settings.M2D_SERVE_MAX_PIXELS}."
                )
        elif content_type == "application/x-npy":
            dims = npy_shape(name, data)
        else:
            dims = ()
        limits = spec.get("max_dims") or []
        if limits and (len(dims) < len(limits) or any(d > m for d, m in zip(dims, limits, strict=False))):
            raise InvalidInput(f"input {name} has dimensions {list(dims)}; this model takes at most {limits}.")
        kept.append({"name": name, "content_type": content_type, "bytes": len(data), "sha256": _sha(data)})
    return kept


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
