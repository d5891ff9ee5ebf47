"""Check a researcher's submission.zip before it is built into an image.

Standard library only, on purpose: researchers run the very checks the
platform runs on upload, without installing the platform:

    python3 submissions/intake.py submission.zip

Nothing is extracted to disk.  Names, types and sizes come from the central
directory; every member is then decompressed in bounded chunks, because
headers can lie about sizes and the real bytes are what a build would write.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import re
import stat
import struct
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass

PLATFORM_TORCH = "2.13.0"
ALLOWED_TRACKING_URIS = ("http://mlflow-server:3001", "http://localhost:3001")
MAX_NESTED_DEPTH = 2
# Small members may legitimately compress extremely well (a blank CSV); the
# ratio rule only matters once a member could actually hurt.
RATIO_MIN_BYTES = 1024**2
TEXT_CAPTURE_LIMIT = 8 * 1024**2
READ_CHUNK = 64 * 1024
# Caps what one zlib call may produce, so a bomb never sits in memory whole.
OUT_CHUNK = 1024**2
ZIP_MAGIC = b"PK\x03\x04"
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
HOW_TO_ZIP = ("Make a zip of main.py and requirements.txt, e.g. "
              "`zip submission.zip main.py requirements.txt`.")
RECREATE = ("Re-create the zip from inside your project folder, e.g. "
            "`cd myproject && zip -r ../submission.zip .` or "
            "`python3 -m zipfile -c submission.zip main.py requirements.txt`.")
LEAVE_OUT = ("Leave data sets, model weights and virtual environments out: the data set "
             "is mounted at /mnt/dataset and the platform installs requirements.txt.")


@dataclass(frozen=True)
class IntakeLimits:
    max_compressed_bytes: int = 100 * 1024**2
    max_uncompressed_bytes: int = 1024**3
    max_files: int = 10_000
    max_ratio: float = 200.0  # per member and overall uncompressed/compressed
    max_path_length: int = 255  # total path length per member


class IntakeError(ValueError):
    """A refusal; str(err) tells the researcher what to fix."""

    code: str

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class IntakeReport:
    prefix: str
    files: tuple[str, ...]
    uncompressed_bytes: int
    requirements: str
    warnings: tuple[str, ...]


# Used by write_normalised_zip: the limits were enforced by inspect_zip, only
# the structural checks and the report's own byte count apply when copying.
_NO_LIMITS = IntakeLimits(2**62, 2**62, 2**62, float("inf"), 2**62)


@dataclass
class _Entry:
    info: zipfile.ZipInfo
    name: str  # normalised: no "", "." components, no trailing slash
    is_dir: bool
    ignored: bool
    data_start: int = 0


class _Budget:
    """Running totals shared by an archive and every archive nested in it."""

    def __init__(self, limits: IntakeLimits):
        self.limits, self.bytes, self.files = limits, 0, 0

    def add_files(self, count: int, where: str) -> None:
        self.files += count
        if self.files > self.limits.max_files:
            raise IntakeError("too_many_files", f"{where or 'The zip'} holds more than "
                              f"{self.limits.max_files:,} files. {LEAVE_OUT}")

    def add_bytes(self, count: int, who: str) -> None:
        self.bytes += count
        if self.bytes > self.limits.max_uncompressed_bytes:
            raise IntakeError("too_large", f"The zip unpacks to more than "
                              f"{_human(self.limits.max_uncompressed_bytes)} (reached at "
                              f"'{who}'). {LEAVE_OUT}")


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024:
            return f"{round(n, 1):g} {unit}"
        n /= 1024
    return f"{round(n, 1):g} GiB"


def _show(where: str, name: str) -> str:
    return f"{where} > {name}" if where else name


def _not_zip(head: bytes) -> IntakeError:
    if head.startswith(ZIP_MAGIC):
        return IntakeError("not_zip", "This zip archive is incomplete or damaged (was the "
                           "upload or the download cut short?). Create it again. " + HOW_TO_ZIP)
    kinds = [(not head, "empty"), (head[257:262] == b"ustar", "a tar archive"),
             (head.startswith(b"\x1f\x8b"), "gzip-compressed (.gz, .tar.gz)"),
             (head.startswith(b"Rar!"), "a RAR archive"),
             (head.startswith(b"7z\xbc\xaf"), "a 7-Zip (.7z) archive")]
    kind = next((k for hit, k in kinds if hit), None)
    first = f"This file is {kind}, not a zip archive." if kind else "This file is not a zip archive."
    return IntakeError("not_zip", f"{first} {HOW_TO_ZIP}")


def _open_zip(fp) -> zipfile.ZipFile:
    fp.seek(0)
    head = fp.read(512)
    fp.seek(0)
    try:
        return zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, struct.error,
            OSError, EOFError, NotImplementedError) as exc:
        raise _not_zip(head) from exc


def _normalise_name(raw: str) -> str:
    def bad(why: str) -> IntakeError:
        return IntakeError("unsafe_path", f"Entry {raw!r} {why}. {RECREATE}")

    if "\x00" in raw:
        raise bad("contains a NUL byte, a trick to hide the real file name")
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise bad("contains control characters")
    if "\\" in raw:
        raise bad("uses backslashes as folder separators (some Windows tools write "
                  "these); names inside a zip must use /")
    if raw.startswith("/"):
        raise bad("is an absolute path; names must be relative to the top of the zip")
    if re.match(r"[A-Za-z]:", raw):
        raise bad("starts with a drive letter; names must be relative to the top of the zip")
    parts = raw.split("/")
    if ".." in parts:
        raise bad("contains '..', which would unpack outside the submission folder")
    return "/".join(p for p in parts if p not in ("", "."))


def _structure(zf, fp, size, limits, budget, where, strict) -> list[_Entry]:
    """Central-directory checks, cheap enough to run before decompressing."""
    infos = zf.infolist()
    budget.add_files(sum(not i.orig_filename.endswith("/") for i in infos), where)
    entries, files = [], {}
    for info in infos:
        raw = info.orig_filename
        kind = stat.S_IFMT(info.external_attr >> 16)
        is_dir = raw.endswith("/") or kind == stat.S_IFDIR
        name = _normalise_name(raw) if strict else raw.rstrip("/")
        if strict:
            if len(raw) > limits.max_path_length:
                raise IntakeError("path_too_long", f"Entry '{raw[:80]}...' has a "
                                  f"{len(raw)}-character path; the limit is "
                                  f"{limits.max_path_length}. Use shorter folder names.")
            if info.flag_bits & 0x41:
                raise IntakeError("encrypted", f"'{raw}' is encrypted (password-protected). "
                                  "Zip the files again without a password.")
            if kind == stat.S_IFLNK:
                raise IntakeError("symlink", f"'{raw}' is a symbolic link; only regular files "
                                  "are accepted. Put the file it points to in the zip instead "
                                  "(do not use `zip -y`/--symlinks).")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise IntakeError("special_file", f"'{raw}' is a device, FIFO or socket, "
                                  "not a regular file. Remove it from the zip.")
            if not name and not is_dir:
                raise IntakeError("unsafe_path", f"Entry {raw!r} has no file name. {RECREATE}")
            if not is_dir:
                if name in files:
                    raise IntakeError("duplicate", f"'{name}' appears twice in the zip (as "
                                      f"{files[name]!r} and {raw!r}); tools disagree on which "
                                      f"copy wins. {RECREATE}")
                files[name] = raw
        parts = name.split("/")
        ignored = parts[0] == "__MACOSX" or parts[-1] == ".DS_Store"
        entries.append(_Entry(info, name, is_dir, ignored))
    if strict:
        folders = {e.name for e in entries if e.is_dir}
        folders.update(f.rsplit("/", i)[0] for f in files for i in range(1, f.count("/") + 1))
        for name in sorted(files.keys() & folders):
            raise IntakeError("duplicate", f"'{name}' is both a file and a folder in the zip. "
                              "Rename one of them.")
    _check_declared_sizes(entries, size, limits, budget, where)
    _locate_data(fp, entries, size, getattr(zf, "start_dir", size), where, strict)
    return entries


def _check_declared_sizes(entries, size, limits, budget, where) -> None:
    """Fast refusal from header sizes; streaming later proves they did not lie."""
    files = [e for e in entries if not e.is_dir]
    for e in files:
        usize, csize = e.info.file_size, max(e.info.compress_size, 1)
        if usize > RATIO_MIN_BYTES and usize > limits.max_ratio * csize:
            raise IntakeError("ratio", f"'{_show(where, e.name)}' unpacks from {_human(csize)} "
                              f"to {_human(usize)} (ratio {usize / csize:.0f}:1, the limit is "
                              f"{limits.max_ratio:g}:1). Files that compress this well are "
                              "zip bombs or padding; leave it out or create it in main.py.")
    declared = sum(e.info.file_size for e in files)
    if declared > RATIO_MIN_BYTES and declared > limits.max_ratio * max(size, 1):
        raise IntakeError("ratio", f"{where or 'The zip'} unpacks from {_human(size)} to "
                          f"{_human(declared)} (ratio {declared / max(size, 1):.0f}:1, the limit "
                          f"is {limits.max_ratio:g}:1). Leave out highly repetitive files.")
    if budget.bytes + declared > limits.max_uncompressed_bytes:
        big = max(files, key=lambda e: e.info.file_size)
        raise IntakeError("too_large", f"{where or 'The zip'} would unpack to "
                          f"{_human(budget.bytes + declared)}; the limit is "
                          f"{_human(limits.max_uncompressed_bytes)} (largest: "
                          f"'{_show(where, big.name)}', {_human(big.info.file_size)}). {LEAVE_OUT}")


def _locate_data(fp, entries, size, cd_start, where, strict) -> None:
    """Find each member's data and refuse members whose bytes overlap.

    Overlapping entries (David Fifield's "better zip bomb") reuse one
    compressed kernel many times; no honest zip tool writes them.
    """
    previous, previous_end, renamed = None, 0, []
    for e in sorted(entries, key=lambda e: e.info.header_offset):
        offset = e.info.header_offset
        if previous is not None and offset < previous_end:
            raise IntakeError("overlap", f"Entries '{_show(where, previous.name)}' and "
                              f"'{_show(where, e.name)}' overlap inside the zip, a zip-bomb "
                              f"trick. {RECREATE}")
        fp.seek(offset)
        header = fp.read(30)
        if len(header) < 30 or header[:4] != ZIP_MAGIC:
            raise IntakeError("corrupt", f"The data of '{_show(where, e.name)}' is missing "
                              f"or damaged. {RECREATE}")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        local_name = fp.read(name_len)
        e.data_start = offset + 30 + name_len + extra_len
        end = e.data_start + e.info.compress_size
        if end > size:
            raise IntakeError("corrupt", f"'{_show(where, e.name)}' runs past the end of the "
                              f"file: the zip is truncated. {RECREATE}")
        if end > cd_start:
            raise IntakeError("overlap", f"'{_show(where, e.name)}' overlaps the zip's table "
                              f"of contents, a zip-bomb trick. {RECREATE}")
        encoding = "utf-8" if e.info.flag_bits & 0x800 else "cp437"
        if strict and local_name != e.info.orig_filename.encode(encoding, "replace"):
            renamed.append((e, local_name))
        previous, previous_end = e, end
    for e, local_name in renamed:
        # Extractors disagree on which of the two names wins.
        raise IntakeError("corrupt", f"'{e.name}' is called {local_name!r} in its own header; "
                          f"the two names must match. {RECREATE}")


def _member_chunks(fp, e: _Entry, where: str):
    """Yield a member's real decompressed bytes, never more than it declares."""
    info, shown = e.info, _show(where, e.name)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise IntakeError("unsupported_compression", f"'{shown}' uses compression method "
                          f"{info.compress_type}; only stored and deflate are accepted. {RECREATE}")
    inflate = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
    position, left, pending, produced, crc = e.data_start, info.compress_size, b"", 0, 0
    while left or pending:
        if not pending:
            fp.seek(position)
            pending = fp.read(min(READ_CHUNK, left))
            if not pending:
                break
            position, left = position + len(pending), left - len(pending)
        try:
            if inflate is None:
                out, pending = pending, b""
            else:
                out = inflate.decompress(pending, OUT_CHUNK)
                pending = inflate.unconsumed_tail
                if inflate.eof:
                    left = 0  # bytes after the end of the stream are never unpacked
                elif not left and not pending:
                    out += inflate.flush()
        except zlib.error as exc:
            raise IntakeError("corrupt", f"'{shown}' is damaged ({exc}). {RECREATE}") from exc
        produced += len(out)
        if produced > info.file_size:
            raise IntakeError("too_large", f"'{shown}' declares {_human(info.file_size)} but "
                              "unpacks to more: its header lies, a zip-bomb trick. " + RECREATE)
        crc = zlib.crc32(out, crc)
        if out:
            yield out
    if (inflate is not None and not inflate.eof) or produced != info.file_size or crc != info.CRC:
        raise IntakeError("corrupt", f"'{shown}' is damaged (size or checksum does not match "
                          f"its header). {RECREATE}")


def _stream(fp, entries, limits, budget, depth, where, capture=frozenset()) -> dict:
    """Decompress every file, count real bytes, look inside nested zips."""
    captured = {}
    for e in entries:
        if e.is_dir:
            continue
        shown = _show(where, e.name)
        if depth and (e.info.flag_bits & 0x1 or e.info.compress_type not in (0, 8)):
            # A nested archive is never unpacked by the platform; what cannot
            # be read still counts at its declared size.
            budget.add_bytes(e.info.file_size, shown)
            continue
        cap = TEXT_CAPTURE_LIMIT if e.name in capture else limits.max_compressed_bytes
        kept, keeping = bytearray(), True
        for chunk in _member_chunks(fp, e, where):
            budget.add_bytes(len(chunk), shown)
            if keeping:
                kept += chunk
                if e.name not in capture and len(kept) >= 4 and kept[:4] != ZIP_MAGIC:
                    kept, keeping = bytearray(), False
                elif len(kept) > cap:
                    raise IntakeError("too_large", f"'{shown}' is larger than {_human(cap)}. "
                                      + LEAVE_OUT)
        if e.name in capture:
            captured[e.name] = bytes(kept)
        elif kept[:4] == ZIP_MAGIC:
            _scan_nested(bytes(kept), limits, budget, depth + 1, shown)
    return captured


def _scan_nested(data, limits, budget, depth, where) -> None:
    fp = io.BytesIO(data)
    try:
        zf = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, struct.error,
            OSError, EOFError, NotImplementedError):
        return  # bytes that merely start like a zip; nothing unpacks them
    with zf:
        if depth <= MAX_NESTED_DEPTH:
            entries = _structure(zf, fp, len(data), limits, budget, where, strict=False)
            _stream(fp, entries, limits, budget, depth, where)
            return
        # Deeper than we unpack: accept only what the central directory alone
        # shows to be harmless, since each level may multiply the size again.
        try:
            entries = _structure(zf, fp, len(data), limits, budget, where, strict=False)
            deeper = next((e for e in entries if not e.is_dir and _starts_like_zip(fp, e)), None)
            if deeper is not None:
                raise IntakeError("nested", f"it contains yet another zip, '{deeper.name}'")
            for e in entries:
                if not e.is_dir:
                    budget.add_bytes(e.info.file_size, _show(where, e.name))
        except IntakeError as err:
            raise IntakeError("nested_too_deep", f"'{where}' is a zip nested more than "
                              f"{MAX_NESTED_DEPTH} levels deep and cannot be checked: {err} "
                              "Do not put zips inside zips inside zips.") from err


def _starts_like_zip(fp, e: _Entry) -> bool:
    if e.info.flag_bits & 0x1 or e.info.compress_type not in (0, 8):
        return False
    fp.seek(e.data_start)
    raw = fp.read(min(e.info.compress_size, READ_CHUNK))
    try:
        head = raw[:4] if e.info.compress_type == 0 else zlib.decompressobj(-15).decompress(raw, 4)
    except zlib.error:
        return False
    return head == ZIP_MAGIC


def _missing(what: str, files, base: str) -> IntakeError:
    found = sorted((f for f in files if f.rsplit("/", 1)[-1] == what),
                   key=lambda f: (f.count("/"), f))
    if what == "main.py":
        if found:
            folder = found[0].rsplit("/", 1)[0]
            return IntakeError("missing_main", f"main.py is missing at the top of the zip "
                               f"(found: {found[0]}). Zip the contents of {folder}, not the folder.")
        return IntakeError("missing_main", "main.py is missing at the top of the zip; the "
                           f"platform runs main.py. {HOW_TO_ZIP}")
    hint = f" (found: {found[0]}). Move it next to main.py." if found else (
        ". Add one listing the packages main.py needs, one per line with pinned versions "
        "(e.g. numpy==1.26.4); an empty file is fine if you need none.")
    return IntakeError("missing_requirements", f"requirements.txt is missing next to "
                       f"{base}main.py{hint}")


def _choose_prefix(entries) -> str:
    """"" for files at the top, or the single top folder of GitHub's Download ZIP."""
    kept = [e for e in entries if not e.ignored and e.name]
    files = {e.name for e in kept if not e.is_dir}
    folders = {e.name for e in kept if e.is_dir}
    folders.update(f.rsplit("/", i)[0] for f in files for i in range(1, f.count("/") + 1))
    tops = {e.name.split("/")[0] for e in kept}
    bases = [""]
    if len(tops) == 1 and not tops & files:
        bases.append(f"{next(iter(tops))}/")
    for base in bases:
        if f"{base}main.py" in folders:
            raise IntakeError("main_is_dir", f"'{base}main.py' is a folder in this zip; it must "
                              f"be the Python file the platform runs. {RECREATE}")
        if f"{base}main.py" in files:
            if f"{base}requirements.txt" in files:
                return base
            raise _missing("requirements.txt", files, base)
    raise _missing("main.py", files, "")


def _decode_requirements(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        utf16 = " It looks like UTF-16, which `pip freeze > requirements.txt` writes in " \
                "Windows PowerShell 5; use `pip freeze | Out-File -Encoding utf8 " \
                "requirements.txt`." if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise IntakeError("requirements_encoding", f"{name} is not UTF-8 text (byte "
                          f"0x{data[err.start]:02x} at position {err.start}). Save it as "
                          f"UTF-8.{utf16}") from err


_REQUIREMENT = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)")


def _requirements_warnings(text: str) -> list[str]:
    warnings = []
    for number, line in enumerate(text.splitlines(), 1):
        line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
        match = _REQUIREMENT.fullmatch(line)
        # Options (-r, --index-url) and URLs are pip's business, not a pin question.
        if not line or line.startswith("-") or "://" in line or not match:
            continue
        project = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        spec = match.group(3).split(";", 1)[0].replace(" ", "")
        where = f"requirements.txt line {number}"
        if spec.startswith("@"):
            continue
        if project == "torch":
            if spec != f"=={PLATFORM_TORCH}":
                warnings.append(f"{where}: '{line}': the platform provides torch "
                                f"{PLATFORM_TORCH}; other versions download gigabytes and may "
                                f"not match the GPU driver. Use torch=={PLATFORM_TORCH}.")
        elif project == "torchvision":
            warnings.append(f"{where}: torchvision has no wheel built for the platform's "
                            f"torch {PLATFORM_TORCH}; installing it would replace torch. "
                            "Remove it if main.py can do without.")
        elif not re.fullmatch(r"===?[^*,]+", spec):
            warnings.append(f"{where}: '{line}' has no pinned version; pin it (e.g. "
                            f"{match.group(1)}==<version>, see `pip freeze`) so the image "
                            "builds the same way every time.")
    return warnings


_PATH_ROOTS = re.compile(r"/(home|Users|root|data|datasets|mnt|media|opt|srv|var|etc|"
                         r"workspace|content|kaggle|scratch|usr|app|input|output|dev)(/|$)")


def _path_allowed(path: str, writing: bool) -> bool:
    if path in ("/dev/null", "/dev/stdout", "/dev/stderr"):
        return True
    roots = ("/mnt/export", "/tmp") if writing else ("/mnt/dataset", "/mnt/export", "/tmp")
    return any(path == r or path.startswith(r + "/") for r in roots)


def _main_py_warnings(source: bytes) -> list[str]:
    try:
        tree = ast.parse(source, "main.py")
    except SyntaxError as err:
        return [f"main.py has a syntax error at line {err.lineno}: {err.msg}. "
                "The run would fail as soon as it starts."]
    except (ValueError, RecursionError, MemoryError) as err:
        return [f"main.py could not be parsed: {err}"]
    warnings, seen_paths = [], set()
    bare_strings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}

    def text(node):
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    def tracking(node):
        uri = text(node)
        if uri is not None and uri.rstrip("/") not in ALLOWED_TRACKING_URIS:
            warnings.append(f"main.py line {node.lineno}: hard-coded MLflow tracking URI "
                            f"{uri!r}; on the platform runs log to {ALLOWED_TRACKING_URIS[0]}, "
                            "which is already set in MLFLOW_TRACKING_URI. Remove it.")

    def path(node, writing=False):
        value = text(node)
        if value is None or not value.startswith("/") or value in seen_paths:
            return
        seen_paths.add(value)
        if _path_allowed(value, writing):
            return
        if writing and _path_allowed(value, False):
            why = "writes into the read-only data set; write results under /mnt/export"
        else:
            why = ("will not exist on the platform: read data from /mnt/dataset and write "
                   "results to /mnt/export (only /mnt/export is kept)")
        warnings.append(f"main.py line {node.lineno}: absolute path {value!r} {why}.")

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "set_tracking_uri" and node.args:
                tracking(node.args[0])
            for keyword in node.keywords:
                if keyword.arg == "tracking_uri":
                    tracking(keyword.value)
            if name in ("setdefault", "putenv") and len(node.args) == 2 \
                    and text(node.args[0]) == "MLFLOW_TRACKING_URI":
                tracking(node.args[1])
            if name in ("open", "Path", "PurePath", "PosixPath") and node.args:
                mode = node.args[1] if len(node.args) > 1 else next(
                    (k.value for k in node.keywords if k.arg == "mode"), None)
                path(node.args[0], name == "open" and bool(set(text(mode) or "") & set("wax+")))
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Subscript) and text(t.slice) == "MLFLOW_TRACKING_URI"
                for t in node.targets):
            tracking(node.value)
        elif id(node) not in bare_strings and _PATH_ROOTS.match(text(node) or ""):
            path(node)
    return warnings


def _open_source(src):
    if hasattr(src, "read"):
        return src, False
    return open(src, "rb"), True


def inspect_zip(fileobj_or_path, limits: IntakeLimits = IntakeLimits()) -> IntakeReport:
    """Check a submission without extracting it; raise IntakeError to refuse."""
    fp, owned = _open_source(fileobj_or_path)
    try:
        fp.seek(0, os.SEEK_END)
        size = fp.tell()
        if size > limits.max_compressed_bytes:
            raise IntakeError("too_large", f"The zip is {_human(size)}; the limit is "
                              f"{_human(limits.max_compressed_bytes)}. {LEAVE_OUT}")
        with _open_zip(fp) as zf:
            budget = _Budget(limits)
            entries = _structure(zf, fp, size, limits, budget, "", strict=True)
            prefix = _choose_prefix(entries)
            main_py, requirements_txt = f"{prefix}main.py", f"{prefix}requirements.txt"
            captured = _stream(fp, entries, limits, budget, 0, "",
                               frozenset({main_py, requirements_txt}))
    finally:
        if owned:
            fp.close()
    requirements = _decode_requirements(captured[requirements_txt], requirements_txt)
    warnings = _requirements_warnings(requirements) + _main_py_warnings(captured[main_py])
    kept = [e for e in entries if not e.is_dir and not e.ignored]
    return IntakeReport(prefix=prefix, files=tuple(sorted(e.name[len(prefix):] for e in kept)),
                        uncompressed_bytes=sum(e.info.file_size for e in kept),
                        requirements=requirements, warnings=tuple(warnings))


def write_normalised_zip(src_fileobj_or_path, report: IntakeReport, dest_fileobj_or_path) -> str:
    """Write the report's files, prefix stripped, as a reproducible zip; return its sha256."""
    fp, owned = _open_source(src_fileobj_or_path)
    # Built aside first so a refusal half-way never leaves a partial zip at dest.
    with tempfile.SpooledTemporaryFile(max_size=64 * 1024**2) as spool:
        try:
            fp.seek(0, os.SEEK_END)
            size = fp.tell()
            with _open_zip(fp) as zf, zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as out:
                entries = _structure(zf, fp, size, _NO_LIMITS, _Budget(_NO_LIMITS), "", True)
                by_name = {e.name: e for e in entries if not e.is_dir}
                written = 0
                for name in sorted(report.files):
                    entry = by_name.get(report.prefix + name)
                    if entry is None:
                        raise IntakeError("mismatch", f"'{report.prefix}{name}' is no longer in "
                                          "the zip; it changed after it was inspected.")
                    info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
                    info.compress_type, info.create_system = zipfile.ZIP_DEFLATED, 3
                    info.external_attr = (stat.S_IFREG | 0o644) << 16
                    info.file_size = entry.info.file_size  # lets zipfile decide on zip64
                    with out.open(info, "w") as member:
                        for chunk in _member_chunks(fp, entry, ""):
                            written += len(chunk)
                            if written > report.uncompressed_bytes:
                                raise IntakeError("too_large", f"'{entry.name}' unpacks to more "
                                                  "than the inspection allowed. " + RECREATE)
                            member.write(chunk)
        finally:
            if owned:
                fp.close()
        spool.seek(0)
        digest = hashlib.sha256()
        dest, dest_owned = (dest_fileobj_or_path, False) if hasattr(
            dest_fileobj_or_path, "write") else (open(dest_fileobj_or_path, "wb"), True)
        try:
            for block in iter(lambda: spool.read(READ_CHUNK), b""):
                digest.update(block)
                dest.write(block)
        finally:
            if dest_owned:
                dest.close()
    return digest.hexdigest()


USAGE = "usage: python3 intake.py submission.zip\nChecks a submission zip before you upload it."


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if len(args) != 1 or args[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    path = args[0]
    try:
        report = inspect_zip(path)
    except IntakeError as err:
        print(f"REFUSED: {err}")
        return 1
    except OSError as err:
        print(f"error: cannot read {path}: {err.strerror or err}", file=sys.stderr)
        return 2
    count = len(report.files)
    summary = (f"OK: {path}: {count} file{'s' if count != 1 else ''}, "
               f"{_human(report.uncompressed_bytes)} unpacked")
    if report.prefix:
        summary += f"; the top folder '{report.prefix}' will be stripped"
    print(summary)
    for warning in report.warnings:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
