"""Check a researcher's submission.zip before it is built into an image.

Standard library only, on purpose: researchers run the very checks the platform runs on upload,
without installing the platform:  python3 submissions/intake.py submission.zip

Nothing is extracted to disk.  Names, types and sizes come from the central directory; then every
member is decompressed in bounded chunks, because headers can lie and real bytes are what a build writes.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import os
import re
import shlex
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
RATIO_MIN_BYTES = 1024**2  # small members may compress extremely well (a blank CSV) and harm nobody
TEXT_CAPTURE_LIMIT = 8 * 1024**2
READ_CHUNK = 64 * 1024
OUT_CHUNK = 1024**2  # caps what one zlib call may produce, so a bomb is never in memory whole
ZIP_MAGIC = b"PK\x03\x04"
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
NOT_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    ValueError,
    struct.error,
    OSError,
    EOFError,
    NotImplementedError,
)
HOW_TO_ZIP = "Make a zip of main.py and requirements.txt, e.g. `zip submission.zip main.py requirements.txt`."
RECREATE = (
    "Re-create the zip from inside your project folder, e.g. `cd myproject && zip -r ../submission.zip .` "
    "or `python3 -m zipfile -c submission.zip main.py requirements.txt`."
)
RATIO_HINT = "Files that compress this well are zip bombs or padding; leave them out or create them in main.py."
ADD_REQUIREMENTS = "Add one listing your packages, one per line, pinned (numpy==1.26.4); it may be empty."
UTF16_HINT = "It is UTF-16: in PowerShell 5 use `pip freeze | Out-File -Encoding utf8 requirements.txt`."
LEAVE_OUT = (
    "Leave data sets, model weights and virtual environments out: the data set is mounted at "
    "/mnt/dataset and the platform installs requirements.txt."
)


@dataclass(frozen=True)
class IntakeLimits:
    max_compressed_bytes: int = 100 * 1024**2
    max_uncompressed_bytes: int = 1024**3
    max_files: int = 10_000
    max_ratio: float = 200.0  # per member and overall uncompressed/compressed
    max_path_length: int = 255  # total path length per member
    # URL, version-control and path requirements, where an admin allows them; pip options that
    # choose an index stay refused either way.
    allow_requirement_urls: bool = False


class IntakeError(ValueError):
    """A refusal: `code` is for machines, str(err) tells the researcher what to fix."""

    code: str

    def __init__(self, code: str, message: str):
        # Both in args, so the error survives pickling (Celery) and rebuilds as cls(*args).
        super().__init__(code, message)
        self.code, self.message = code, message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class IntakeReport:
    prefix: str
    files: tuple[str, ...]
    uncompressed_bytes: int
    requirements: str
    warnings: tuple[str, ...]


# write_normalised_zip runs after inspect_zip enforced the limits; it keeps the structural checks and
# holds the copy to the report's own byte count.
_NO_LIMITS = IntakeLimits(2**62, 2**62, 2**62, float("inf"), 2**62)


@dataclass
class _Entry:
    info: zipfile.ZipInfo
    name: str  # normalised: no "" or "." components, no trailing slash
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
            raise IntakeError(
                "too_many_files", f"{where or 'The zip'} has over {self.limits.max_files:,} files. {LEAVE_OUT}"
            )

    def add_bytes(self, count: int, who: str) -> None:
        self.bytes += count
        if self.bytes > self.limits.max_uncompressed_bytes:
            limit = _human(self.limits.max_uncompressed_bytes)
            raise IntakeError("too_large", f"The zip unpacks to over {limit} (at '{who}'). {LEAVE_OUT}")


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024:
            return f"{round(n, 1):g} {unit}"
        n /= 1024
    return f"{round(n, 1):g} GiB"


def _show(where: str, name: str) -> str:
    return f"{where} > {name}" if where else name


def _open_zip(fp) -> zipfile.ZipFile:
    fp.seek(0)
    head = fp.read(512)
    fp.seek(0)
    try:
        return zipfile.ZipFile(fp)
    except NOT_ZIP_ERRORS as exc:
        if head.startswith(ZIP_MAGIC):
            raise IntakeError("not_zip", f"This zip archive is incomplete or damaged. {HOW_TO_ZIP}") from exc
        kinds = [
            (not head, "empty"),
            (head[257:262] == b"ustar", "a tar archive"),
            (head.startswith(b"\x1f\x8b"), "gzip-compressed (.gz, .tar.gz)"),
            (head.startswith((b"Rar!", b"7z\xbc\xaf")), "a RAR or 7-Zip archive"),
        ]
        kind = next((k for hit, k in kinds if hit), None)
        first = f"This file is {kind}, not a zip archive." if kind else "This file is not a zip archive."
        raise IntakeError("not_zip", f"{first} {HOW_TO_ZIP}") from exc


def _normalise_name(raw: str) -> str:
    def bad(why: str) -> IntakeError:
        return IntakeError("unsafe_path", f"Entry {raw!r} {why}. {RECREATE}")

    if "\x00" in raw:
        raise bad("contains a NUL byte, a trick to hide the real file name")
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise bad("contains control characters")
    if "\\" in raw:
        raise bad("uses backslashes as folder separators (some Windows tools write these); zip names must use /")
    if raw.startswith("/"):
        raise bad("is an absolute path; names must be relative to the top of the zip")
    if re.match(r"[A-Za-z]:", raw):
        raise bad("starts with a drive letter; names must be relative to the top of the zip")
    parts = raw.split("/")
    if ".." in parts:
        raise bad("contains '..', which would unpack outside the submission folder")
    return "/".join(p for p in parts if p not in ("", "."))


def _folders(files) -> set[str]:
    return {f.rsplit("/", i)[0] for f in files for i in range(1, f.count("/") + 1)}


def _structure(zf, fp, size, limits, budget, where, strict) -> list[_Entry]:
    """Central-directory checks, cheap enough to run before decompressing anything."""
    infos = zf.infolist()
    budget.add_files(sum(not i.orig_filename.endswith("/") for i in infos), where)
    entries, files = [], {}
    for info in infos:
        raw = info.orig_filename  # .filename is cut at the first NUL byte
        kind = stat.S_IFMT(info.external_attr >> 16)
        is_dir = raw.endswith("/") or kind == stat.S_IFDIR
        name = _normalise_name(raw) if strict else raw.rstrip("/")
        if strict:
            if len(raw) > limits.max_path_length:
                limit = limits.max_path_length
                raise IntakeError("path_too_long", f"'{raw[:60]}...' is longer than {limit} characters; shorten it.")
            if info.flag_bits & 0x41:
                raise IntakeError("encrypted", f"'{raw}' is encrypted. Zip the files again without a password.")
            if kind == stat.S_IFLNK:
                raise IntakeError("symlink", f"'{raw}' is a symbolic link; zip the file it points to instead.")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise IntakeError("special_file", f"'{raw}' is a device, FIFO or socket; remove it from the zip.")
            if not name and not is_dir:
                raise IntakeError("unsafe_path", f"Entry {raw!r} has no file name. {RECREATE}")
            if not is_dir and name in files:
                twice = f"'{name}' is in the zip twice ({files[name]!r} and {raw!r}); keep one."
                raise IntakeError("duplicate", f"{twice} {RECREATE}")
            if not is_dir:
                files[name] = raw
        parts = name.split("/")
        entries.append(_Entry(info, name, is_dir, ignored=parts[0] == "__MACOSX" or parts[-1] == ".DS_Store"))
    clash = sorted(files.keys() & (_folders(files) | {e.name for e in entries if e.is_dir}))
    if clash:
        raise IntakeError("duplicate", f"'{clash[0]}' is both a file and a folder in the zip. Rename one of them.")
    _check_declared_sizes(entries, size, limits, budget, where)
    _locate_data(fp, entries, size, getattr(zf, "start_dir", size), where, strict)
    return entries


def _check_declared_sizes(entries, size, limits, budget, where) -> None:
    """Fast refusal from header sizes; streaming later proves they did not lie."""
    files = [e for e in entries if not e.is_dir]
    for e in files:
        usize, csize = e.info.file_size, max(e.info.compress_size, 1)
        if usize > RATIO_MIN_BYTES and usize > limits.max_ratio * csize:
            sizes = f"{_human(csize)} to {_human(usize)} ({usize / csize:.0f}:1, limit {limits.max_ratio:g}:1)"
            raise IntakeError("ratio", f"'{_show(where, e.name)}' unpacks from {sizes}. {RATIO_HINT}")
    declared = sum(e.info.file_size for e in files)
    if declared > RATIO_MIN_BYTES and declared > limits.max_ratio * max(size, 1):
        sizes = f"{_human(size)} to {_human(declared)} ({declared / size:.0f}:1, limit {limits.max_ratio:g}:1)"
        raise IntakeError("ratio", f"{where or 'The zip'} unpacks from {sizes}. {RATIO_HINT}")
    if budget.bytes + declared > limits.max_uncompressed_bytes:
        big = max(files, key=lambda e: e.info.file_size)
        sizes = f"{_human(budget.bytes + declared)}, limit {_human(limits.max_uncompressed_bytes)}"
        largest = f"largest: '{_show(where, big.name)}', {_human(big.info.file_size)}"
        raise IntakeError("too_large", f"{where or 'The zip'} would unpack to {sizes} ({largest}). {LEAVE_OUT}")


def _locate_data(fp, entries, size, cd_start, where, strict) -> None:
    """Find each member's data; refuse members whose bytes overlap.

    Overlapping entries (David Fifield's "better zip bomb") reuse one compressed kernel many times;
    no honest zip tool writes them."""
    previous, previous_end, renamed = None, 0, []
    for e in sorted(entries, key=lambda e: e.info.header_offset):
        offset, shown = e.info.header_offset, _show(where, e.name)
        if previous is not None and offset < previous_end:
            both = f"'{_show(where, previous.name)}' and '{shown}'"
            raise IntakeError("overlap", f"Entries {both} overlap inside the zip (a zip-bomb trick). {RECREATE}")
        header = b""
        if 0 <= offset < size:
            fp.seek(offset)
            header = fp.read(30)
        if len(header) < 30 or header[:4] != ZIP_MAGIC:
            raise IntakeError("corrupt", f"The data of '{shown}' is missing or damaged. {RECREATE}")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        local_name = fp.read(name_len)
        e.data_start = offset + 30 + name_len + extra_len
        end = e.data_start + e.info.compress_size
        if end > size:
            raise IntakeError("corrupt", f"'{shown}' runs past the end of the file: the zip is truncated. {RECREATE}")
        if end > cd_start:
            raise IntakeError("overlap", f"'{shown}' overlaps the zip's table of contents. {RECREATE}")
        encoding = "utf-8" if e.info.flag_bits & 0x800 else "cp437"
        if strict and local_name != e.info.orig_filename.encode(encoding, "replace"):
            renamed.append((e, local_name))
        previous, previous_end = e, end
    for e, local_name in renamed:  # after the overlap pass: overlapping bombs also disagree on names
        raise IntakeError("corrupt", f"'{e.name}' is called {local_name!r} in its own header. {RECREATE}")


def _member_chunks(fp, e: _Entry, where: str):
    """Yield a member's real decompressed bytes, and never more than it declares."""
    info, shown = e.info, _show(where, e.name)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        method = f"compression method {info.compress_type}; only stored and deflate are accepted"
        raise IntakeError("unsupported_compression", f"'{shown}' uses {method}. {RECREATE}")
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
                    left = 0  # bytes after the end of the stream are never unpacked by anyone
                elif not left and not pending:
                    out += inflate.flush()
        except zlib.error as exc:
            raise IntakeError("corrupt", f"'{shown}' is damaged ({exc}). {RECREATE}") from exc
        produced += len(out)
        if produced > info.file_size:
            lie = f"declares {_human(info.file_size)} but unpacks to more (its header lies)"
            raise IntakeError("too_large", f"'{shown}' {lie}. {RECREATE}")
        crc = zlib.crc32(out, crc)
        if out:
            yield out
    if (inflate is not None and not inflate.eof) or produced != info.file_size or crc != info.CRC:
        raise IntakeError("corrupt", f"'{shown}' is damaged (size or checksum do not match). {RECREATE}")


def _stream(fp, entries, limits, budget, depth, where, capture=frozenset()) -> dict[str, bytes]:
    """Decompress every file, count the real bytes, and look inside nested zips."""
    captured = {}
    for e in entries:
        if e.is_dir:
            continue
        shown = _show(where, e.name)
        if depth and (e.info.flag_bits & 0x1 or e.info.compress_type not in (0, 8)):
            budget.add_bytes(e.info.file_size, shown)  # unreadable, but its declared size still counts
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
                    raise IntakeError("too_large", f"'{shown}' is larger than {_human(cap)}. {LEAVE_OUT}")
        if e.name in capture:
            captured[e.name] = bytes(kept)
        elif kept[:4] == ZIP_MAGIC:
            _scan_nested(kept, limits, budget, depth + 1, shown)
    return captured


def _scan_nested(data, limits, budget, depth, where) -> None:
    fp = io.BytesIO(data)
    try:
        zf = zipfile.ZipFile(fp)
    except NOT_ZIP_ERRORS:
        return  # bytes that merely start like a zip; nothing ever unpacks them
    with zf:
        if depth <= MAX_NESTED_DEPTH:
            entries = _structure(zf, fp, len(data), limits, budget, where, strict=False)
            _stream(fp, entries, limits, budget, depth, where)
            return
        # Deeper than we unpack: accept only what the central directory alone shows to be harmless,
        # since every further level could multiply the size again.
        try:
            entries = _structure(zf, fp, len(data), limits, budget, where, strict=False)
            deeper = next((e for e in entries if not e.is_dir and _starts_like_zip(fp, e)), None)
            if deeper is not None:
                raise IntakeError("nested", f"it holds yet another zip, '{deeper.name}'.")
            for e in entries:
                if not e.is_dir:
                    budget.add_bytes(e.info.file_size, _show(where, e.name))
        except IntakeError as err:
            deep = f"a zip nested more than {MAX_NESTED_DEPTH} levels deep"
            raise IntakeError("nested_too_deep", f"'{where}' is {deep} and cannot be trusted: {err}") from err


def _starts_like_zip(fp, e: _Entry) -> bool:
    if e.info.flag_bits & 0x1 or e.info.compress_type not in (0, 8):
        return False
    fp.seek(e.data_start)
    raw = fp.read(min(e.info.compress_size, READ_CHUNK))
    try:
        return (raw[:4] if e.info.compress_type == 0 else zlib.decompressobj(-15).decompress(raw, 4)) == ZIP_MAGIC
    except zlib.error:
        return False


def _choose_prefix(entries) -> str:
    """ "" when main.py is at the top, or the single top folder of a GitHub "Download ZIP"."""
    kept = [e for e in entries if not e.ignored and e.name]
    files = {e.name for e in kept if not e.is_dir}
    folders = _folders(files) | {e.name for e in kept if e.is_dir}
    tops = {e.name.split("/")[0] for e in kept}
    bases = [""] + ([f"{next(iter(tops))}/"] if len(tops) == 1 and not tops & files else [])
    for base in bases:
        if f"{base}main.py" in folders:
            raise IntakeError("main_is_dir", f"'{base}main.py' is a folder; it must be your Python script.")
        if f"{base}main.py" not in files:
            continue
        if f"{base}requirements.txt" in files:
            return base
        found = sorted((f for f in files if f.rsplit("/", 1)[-1] == "requirements.txt"), key=_shallow_first)
        fix = f" (found: {found[0]}). Move it next to main.py." if found else f". {ADD_REQUIREMENTS}"
        raise IntakeError("missing_requirements", f"requirements.txt is missing next to {base}main.py{fix}")
    found = sorted((f for f in files if f.rsplit("/", 1)[-1] == "main.py"), key=_shallow_first)
    if found:
        folder = found[0].rsplit("/", 1)[0]
        fix = f" (found: {found[0]}). Zip the contents of {folder}, not the folder."
        raise IntakeError("missing_main", f"main.py is missing at the top of the zip{fix}")
    raise IntakeError("missing_main", f"main.py is missing at the top of the zip. {HOW_TO_ZIP}")


def _shallow_first(name: str) -> tuple[int, str]:
    return name.count("/"), name


def _decode_requirements(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        utf16 = f" {UTF16_HINT}" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        found = f"byte 0x{data[err.start]:02x} at position {err.start}"
        raise IntakeError("requirements_encoding", f"{name} is not UTF-8 ({found}); save it as UTF-8.{utf16}") from err


# requirements.txt is read as pip reads it (pip/_internal/req/req_file.py and constructors.py),
# restated because this check runs without pip: the lines it passes are the lines pip acts on.
_PIP_COMMENT = re.compile(r"(^|\s+)#.*$")
_PIP_ENV_VAR = re.compile(r"\$\{[A-Z0-9_]+\}")
_PIP_ARCHIVES = (".zip", ".whl", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tlz", ".tar.lz", ".tar.lzma")
_PIP_ARCHIVES += (".tar.gz", ".tgz", ".tar")
_PEP508_NAME = re.compile(r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?\s*(.*)", re.S)
_HASH_VALUE = re.compile(r"[A-Za-z0-9]+:[0-9A-Fa-f]+")
_SHOWN_LINE = 100
NO_OPTIONS = "pip options are not allowed"
FROM_THE_INDEX = (
    "list packages by name and version (e.g. numpy==2.1.0); the platform installs them from its own package index"
)
OWN_CODE = "code of your own goes in the zip next to main.py and is imported from there"
LOCAL = "a local file or folder"


def _pip_lines(text: str):
    """(first line number, text) of each line pip acts on: continued lines joined, comments and
    blank lines dropped."""
    joined, first = [], 0
    for number, line in enumerate(text.splitlines(), 1):
        comment = re.match(r"\s*#", line)
        if line.endswith("\\") and not comment:
            first = first if joined else number
            joined.append(line.strip("\\"))
            continue
        if joined:
            number, line, joined = first, "".join([*joined, f" {line}" if comment else line]), []
        line = _PIP_COMMENT.sub("", line).strip()
        if line:
            yield number, line
    line = _PIP_COMMENT.sub("", "".join(joined)).strip()
    if line:
        yield first, line


def _split_pip_line(line: str) -> tuple[str, list[str]]:
    """The requirement and the option words, split where pip splits them: at the first word
    (between single spaces) that starts with "-"."""
    tokens = line.split(" ")
    cut = next((i for i, token in enumerate(tokens) if token.startswith("-")), len(tokens))
    try:
        words = shlex.split(" ".join(tokens[cut:]))
    except ValueError:  # unbalanced quotes: pip refuses the line, and so do we
        words = ["-"]
    return " ".join(tokens[:cut]).strip(), words


def _link_kind(target: str) -> str | None:
    scheme = target.split(":", 1)[0].lower() if ":" in target else ""
    if scheme.split("+", 1)[0] in ("git", "hg", "svn", "bzr"):
        return "a version-control link"
    return "a URL" if scheme in ("http", "https", "ftp", "file") else None


def _direct_reference(requirement: str) -> str | None:
    """Where pip would fetch a requirement from, other than the package index; None for the index."""
    head = requirement.split(";", 1)[0].strip()
    named = _PEP508_NAME.fullmatch(head)
    if named and named.group(3).startswith("@"):
        return _link_kind(named.group(3)[1:].strip()) or "a URL"
    kind = _link_kind(requirement)
    if kind:
        return kind
    path = re.sub(r"\[[^\]]+\]$", "", head)  # pip drops extras before it looks for a path
    if "/" in path or "\\" in path or path.startswith(".") or path.lower().endswith(_PIP_ARCHIVES):
        return LOCAL
    return None


def _only_hashes(words: list[str]) -> bool:
    """True for nothing but `--hash=sha256:…`: pip's hash checking, the one option a requirement may carry."""
    at = 0
    while at < len(words):
        if words[at].startswith("--hash="):
            value, at = words[at][len("--hash=") :], at + 1
        elif words[at] == "--hash" and at + 1 < len(words):
            value, at = words[at + 1], at + 2
        else:
            return False
        if not _HASH_VALUE.fullmatch(value):
            return False
    return True


def _editable_alone(words: list[str]) -> bool:
    first = words[0]
    if first in ("-e", "--editable"):
        return len(words) == 2 and not words[1].startswith("-")
    return len(words) == 1 and (first.startswith("--editable=") or first[:2] == "-e" and first[:3] != "-e=")


def _pip_line_problem(line: str, requirement: str, words: list[str], allow_urls: bool) -> tuple[str, str] | None:
    """(code, why) when pip would do anything with the line but install a package named from the
    platform's index; None otherwise."""
    variable = _PIP_ENV_VAR.search(line)
    if variable:
        why = f"pip would replace {variable.group()} with a value from the build's environment; write the value itself"
        return "requirements_option", why
    if requirement:
        if not _only_hashes(words):
            exception = "(--hash=sha256:… after a requirement is the one exception)"
            return "requirements_option", f"{NO_OPTIONS} {exception}; {FROM_THE_INDEX}"
        kind = _direct_reference(requirement)
        if kind is None or allow_urls:
            return None
        own = f"; {OWN_CODE}" if kind == LOCAL else ""
        return "requirements_url", f"installing from {kind} is not allowed; {FROM_THE_INDEX}{own}"
    # Index options (-i, --extra-index-url, -f, --trusted-host) stay refused whatever the setting.
    if allow_urls and _editable_alone(words):
        return None
    names = {w.split("=", 1)[0] if w.startswith("--") else w[:2] for w in words if w.startswith("-")}
    if names & {"-r", "-c", "--requirement", "--constraint"}:
        why = "-r and -c read requirements from files the platform does not check; list every package here"
        return "requirements_option", f"{NO_OPTIONS}: {why}, by name and version (e.g. numpy==2.1.0)"
    if names == {"--hash"}:
        return "requirements_option", "a --hash option belongs on the line of the requirement it checks"
    own = f"; {OWN_CODE}" if names & {"-e", "--editable"} else ""
    return "requirements_option", f"{NO_OPTIONS}; {FROM_THE_INDEX}{own}"


def _check_requirements(text: str, allow_urls: bool) -> list[tuple[int, str]]:
    """Refuse lines that would have pip fetch code from anywhere but the platform's package index
    (options, URLs, version-control links, paths); return (line number, requirement) of the others."""
    refused, named = [], []
    for number, line in _pip_lines(text):
        requirement, words = _split_pip_line(line)
        problem = _pip_line_problem(line, requirement, words, allow_urls)
        if problem is not None:
            refused.append((number, line, *problem))
        elif requirement:
            named.append((number, requirement))
    if refused:
        number, line, code, why = refused[0]
        shown = line if len(line) <= _SHOWN_LINE else line[: _SHOWN_LINE - 1] + "…"
        more = [str(n) for n, *_ in refused[1:]]
        also = f" Also refused: line{'s' if len(more) > 1 else ''} {', '.join(more)}." if more else ""
        raise IntakeError(code, f'requirements.txt line {number}: "{shown}" — {why}.{also}')
    return named


def _requirements_warnings(named: list[tuple[int, str]]) -> list[str]:
    warnings = []
    for number, line in named:
        match = _PEP508_NAME.fullmatch(line)
        if not match or _direct_reference(line):
            continue  # not pip-readable (pip says why at build time), or a direct reference an admin allowed
        project = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        spec = match.group(3).split(";", 1)[0].replace(" ", "")
        where = f"requirements.txt line {number}"
        if project == "torch" and spec != f"=={PLATFORM_TORCH}":
            warnings.append(
                f"{where}: '{line}': the platform provides torch {PLATFORM_TORCH}; other versions "
                f"download gigabytes and may not match the GPU driver. Use torch=={PLATFORM_TORCH}."
            )
        elif project == "torchvision":
            warnings.append(
                f"{where}: torchvision has no wheel built for the platform's torch {PLATFORM_TORCH}; "
                "installing it would replace torch. Remove it if main.py can do without."
            )
        elif project != "torch" and not re.fullmatch(r"===?[^*,]+", spec):
            warnings.append(
                f"{where}: '{line}' has no pinned version; pin it (e.g. {match.group(1)}==<version>, "
                "see `pip freeze`) so the image builds the same way every time."
            )
    return warnings


# Roots that real absolute paths start with; "/api/v1" or "/" in a join are not paths worth a warning.
_PATH_ROOTS = re.compile(
    r"/(home|Users|root|data|datasets|mnt|media|opt|srv|var|etc|workspace|content|kaggle|"
    r"scratch|usr|app|input|output|dev)(/|$)"
)


def _path_allowed(path: str, writing: bool) -> bool:
    if path in ("/dev/null", "/dev/stdout", "/dev/stderr"):
        return True
    roots = ("/mnt/export", "/tmp") if writing else ("/mnt/dataset", "/mnt/export", "/tmp")
    return any(path == r or path.startswith(r + "/") for r in roots)


def _main_py_warnings(source: bytes) -> list[str]:
    try:
        tree = ast.parse(source, "main.py")
    except SyntaxError as err:
        return [f"main.py has a syntax error at line {err.lineno}: {err.msg}. The run would fail as it starts."]
    except (ValueError, RecursionError, MemoryError) as err:
        return [f"main.py could not be parsed: {err}"]
    warnings, seen_paths = [], set()
    bare_strings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # docstrings

    def text(node):
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    def tracking(node):
        uri = text(node)
        if uri is not None and uri.rstrip("/") not in ALLOWED_TRACKING_URIS:
            warnings.append(
                f"main.py line {node.lineno}: hard-coded MLflow tracking URI {uri!r}; on the platform "
                f"runs log to {ALLOWED_TRACKING_URIS[0]}, already set in MLFLOW_TRACKING_URI. Remove it."
            )

    def path(node, writing=False):
        value = text(node)
        if value is None or not value.startswith("/") or value in seen_paths:
            return
        seen_paths.add(value)
        if _path_allowed(value, writing):
            return
        why = (
            "writes into the read-only data set; write results under /mnt/export"
            if writing and _path_allowed(value, False)
            else "will not exist on the platform: read data from /mnt/dataset and write results to /mnt/export "
            "(only /mnt/export is kept)"
        )
        warnings.append(f"main.py line {node.lineno}: absolute path {value!r} {why}.")

    for node in ast.walk(tree):  # breadth first: a call is seen before the string constants inside it
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "set_tracking_uri" and node.args:
                tracking(node.args[0])
            for keyword in node.keywords:
                if keyword.arg == "tracking_uri":
                    tracking(keyword.value)
            if name in ("setdefault", "putenv") and len(node.args) == 2 and text(node.args[0]) == "MLFLOW_TRACKING_URI":
                tracking(node.args[1])
            if name in ("open", "Path", "PurePath", "PosixPath") and node.args:
                mode = (
                    node.args[1]
                    if len(node.args) > 1
                    else next((k.value for k in node.keywords if k.arg == "mode"), None)
                )
                path(node.args[0], name == "open" and bool(set(text(mode) or "") & set("wax+")))
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Subscript) and text(t.slice) == "MLFLOW_TRACKING_URI" for t in node.targets
        ):
            tracking(node.value)
        elif id(node) not in bare_strings and _PATH_ROOTS.match(text(node) or ""):
            path(node)
    return warnings


def _reader(stack: contextlib.ExitStack, src):
    return src if hasattr(src, "read") else stack.enter_context(open(src, "rb"))


def inspect_zip(fileobj_or_path, limits: IntakeLimits = IntakeLimits()) -> IntakeReport:
    """Check a submission without extracting it; raise IntakeError to refuse. File objects must be seekable."""
    with contextlib.ExitStack() as stack:
        fp = _reader(stack, fileobj_or_path)
        fp.seek(0, os.SEEK_END)
        size = fp.tell()
        if size > limits.max_compressed_bytes:
            sizes = f"{_human(size)}; the limit is {_human(limits.max_compressed_bytes)}"
            raise IntakeError("too_large", f"The zip is {sizes}. {LEAVE_OUT}")
        zf = stack.enter_context(_open_zip(fp))
        budget = _Budget(limits)
        entries = _structure(zf, fp, size, limits, budget, "", strict=True)
        prefix = _choose_prefix(entries)
        main_py, requirements_txt = f"{prefix}main.py", f"{prefix}requirements.txt"
        captured = _stream(fp, entries, limits, budget, 0, "", frozenset({main_py, requirements_txt}))
    requirements = _decode_requirements(captured[requirements_txt], requirements_txt)
    named = _check_requirements(requirements, limits.allow_requirement_urls)
    warnings = _requirements_warnings(named) + _main_py_warnings(captured[main_py])
    kept = [e for e in entries if not e.is_dir and not e.ignored]
    return IntakeReport(
        prefix=prefix,
        files=tuple(sorted(e.name[len(prefix) :] for e in kept)),
        uncompressed_bytes=sum(e.info.file_size for e in kept),
        requirements=requirements,
        warnings=tuple(warnings),
    )


def write_normalised_zip(src_fileobj_or_path, report: IntakeReport, dest_fileobj_or_path) -> str:
    """Write the report's files, prefix stripped, as a reproducible zip; return its sha256 hex."""
    with contextlib.ExitStack() as stack:
        fp = _reader(stack, src_fileobj_or_path)
        fp.seek(0, os.SEEK_END)
        size = fp.tell()
        # Built aside first, so a refusal half-way never leaves a partial zip at dest.
        spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=1024**2))
        with _open_zip(fp) as zf, zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as out:
            entries = _structure(zf, fp, size, _NO_LIMITS, _Budget(_NO_LIMITS), "", strict=True)
            by_name = {e.name: e for e in entries if not e.is_dir}
            written = 0
            for name in sorted(report.files):
                entry = by_name.get(report.prefix + name)
                if entry is None:
                    raise IntakeError("mismatch", f"'{report.prefix}{name}' is gone: the zip changed after inspection.")
                info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
                info.compress_type, info.create_system = zipfile.ZIP_DEFLATED, 3
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.file_size = entry.info.file_size  # lets zipfile decide on zip64 up front
                with out.open(info, "w") as member:
                    for chunk in _member_chunks(fp, entry, ""):
                        written += len(chunk)
                        if written > report.uncompressed_bytes:
                            raise IntakeError("too_large", f"'{entry.name}' unpacks to more than was inspected.")
                        member.write(chunk)
        spool.seek(0)
        dest = (
            stack.enter_context(open(dest_fileobj_or_path, "wb"))
            if not hasattr(dest_fileobj_or_path, "write")
            else dest_fileobj_or_path
        )
        digest = hashlib.sha256()
        for block in iter(lambda: spool.read(READ_CHUNK), b""):
            digest.update(block)
            dest.write(block)
    return digest.hexdigest()


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def contents_sha256(src_fileobj_or_path, report: IntakeReport) -> str:
    """The sha256 the portal shows for a zip: of its files as the platform keeps them (sorted, the
    top folder stripped, fixed dates and modes), not of the zip itself, so the same files give the
    same value whatever zipped them."""
    return write_normalised_zip(src_fileobj_or_path, report, _Discard())


ALLOW_URLS_FLAG = "--allow-requirement-urls"
USAGE = f"""usage: python3 intake.py [{ALLOW_URLS_FLAG}] submission.zip
Checks a submission zip the way the platform does before you upload.

  {ALLOW_URLS_FLAG}  accept URL, version-control and path requirements, as a platform
                            whose admins allow them does (M2D_ALLOW_REQUIREMENT_URLS)"""


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    allow_urls = ALLOW_URLS_FLAG in args
    args = [a for a in args if a != ALLOW_URLS_FLAG]
    if len(args) != 1 or args[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    limits = IntakeLimits(allow_requirement_urls=allow_urls)
    try:
        report = inspect_zip(args[0], limits)
    except IntakeError as err:
        print(f"REFUSED: {err}")
        return 1
    except OSError as err:
        print(f"error: cannot read {args[0]}: {err.strerror or err}", file=sys.stderr)
        return 2
    count = len(report.files)
    stripped = f"; the top folder '{report.prefix}' will be stripped" if report.prefix else ""
    print(
        f"OK: {args[0]}: {count} file{'s' if count != 1 else ''}, {_human(report.uncompressed_bytes)} "
        f"unpacked{stripped}"
    )
    print(f"sha256 of its contents: {contents_sha256(args[0], report)} (the portal shows the same)")
    for warning in report.warnings:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
