"""A whole export file as a reviewer reads it: one page at a time, text as text, anything else as
a hex dump, read from export storage a page at a time so a large file is never loaded whole."""

from __future__ import annotations

from dataclasses import dataclass

from . import storage
from .models import ExportFile

PAGE_BYTES = 64 * 1024
TEXT_KINDS = ("text", "csv", "json", "log")
HEX_ROW = 16


@dataclass(frozen=True)
class FilePage:
    number: int  # from 1
    count: int
    start: int  # offset of the first byte shown
    end: int  # offset after the last byte shown
    text: str | None  # the page as text, for text files
    hex_rows: list[tuple[str, str, str]]  # (offset, hex, ascii) for any other file

    @property
    def previous(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def next(self) -> int | None:
        return self.number + 1 if self.number < self.count else None


def page_count(size: int) -> int:
    return max(1, -(-size // PAGE_BYTES))


def read_page(file: ExportFile, number: int) -> FilePage:
    """Page `number` of the file (clamped to the pages there are). OSError if storage fails."""
    number = min(max(1, number), page_count(file.size))
    start = (number - 1) * PAGE_BYTES
    data = storage.read_range(file.storage_key, start, PAGE_BYTES) if file.size else b""
    if file.kind in TEXT_KINDS:
        text, rows = data.decode("utf-8", "replace"), []
    else:
        text, rows = None, hex_dump(data, start)
    return FilePage(number, page_count(file.size), start, start + len(data), text, rows)


def hex_dump(data: bytes, start: int) -> list[tuple[str, str, str]]:
    rows = []
    for at in range(0, len(data), HEX_ROW):
        chunk = data[at : at + HEX_ROW]
        hex_text = " ".join(f"{byte:02x}" for byte in chunk[:8]) + "  " + " ".join(f"{byte:02x}" for byte in chunk[8:])
        ascii_text = "".join(chr(byte) if 32 <= byte < 127 else "." for byte in chunk)
        rows.append((f"{start + at:08x}", hex_text.rstrip(), ascii_text))
    return rows
