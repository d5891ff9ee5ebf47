"""What a researcher may see of their build and run logs, and where the logs lie: the one place that decides it.

A log can carry anything the code printed, patient data included, so it is an exit channel like
/mnt/export. Researchers see nothing of a run's output while it runs (a tail per look, polled, is
no cap); once it has ended, the capped tail (the last M2D_LOG_TAIL_LINES lines, at most
M2D_LOG_TAIL_BYTES bytes of them, within their exit budget) fixed at the end of the run, in the
portal, the e-mails, the API and the CLI. The failure reason quotes only that tail. So whatever
they poll, one run shows them at most M2D_LOG_TAIL_BYTES of its output. Build logs, which see no
data, are shown live. Admins read whole logs, live, and can release one like an export file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from m2d.printable import printable

KINDS = ("build", "run")


@dataclass(frozen=True)
class LogView:
    kind: str
    text: str
    hidden_bytes: int  # how much of the log is not shown (0: the whole log is shown)
    withheld: bool = False  # a run still going: its output is shown once it has ended

    @property
    def note(self) -> str:
        if self.withheld:
            return "The run's output is shown here once the run has ended (the end of it, as for every run)."
        if not self.hidden_bytes:
            return ""
        return (
            f"Only the end of the {self.kind} log is shown; {self.hidden_bytes:,} earlier bytes are not. "
            "Ask for the full log with a release request."
        )

    def __bool__(self) -> bool:
        return bool(self.text)


def log_dir(submission_id: int) -> Path:
    """Where a submission's build and run logs are written (on the worker's host)."""
    return settings.VAR_DIR / "logs" / str(submission_id)


def full_log_path(submission, kind: str) -> Path:
    if kind not in KINDS:
        raise ValueError(f"no such log: {kind!r}")
    return log_dir(submission.pk) / f"{kind}.log"


def cap(text: str) -> tuple[str, int]:
    """The end of `text` within the researcher's limits, and how many bytes were left out, without
    terminal escape sequences."""
    raw = printable(text).encode("utf-8", "replace")
    lines = raw.rstrip(b"\n").split(b"\n")
    kept = b"\n".join(lines[-settings.M2D_LOG_TAIL_LINES :]) if settings.M2D_LOG_TAIL_LINES > 0 else b""
    if len(kept) > settings.M2D_LOG_TAIL_BYTES:
        kept = kept[len(kept) - settings.M2D_LOG_TAIL_BYTES :]
        newline = kept.find(b"\n")
        if 0 <= newline < len(kept) - 1:  # start on a whole line when there is one
            kept = kept[newline + 1 :]
    shown = kept.decode("utf-8", "ignore")  # a character cut at the start is dropped, never mangled
    return shown, max(0, len(raw.rstrip(b"\n")) - len(kept))


def _read_end(path: Path) -> tuple[str, int]:
    """The last stretch of a log file (enough for the caps) and the bytes before it."""
    window = max(4 * settings.M2D_LOG_TAIL_BYTES, 64 * 1024)
    with open(path, "rb") as handle:
        handle.seek(0, io.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - window))
        data = handle.read()
    return data.decode("utf-8", "replace"), size - len(data)


def _content_size(path: Path) -> int:
    """The log's size without its final newlines, as `cap` counts it."""
    with open(path, "rb") as handle:
        handle.seek(0, io.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64))
        end = handle.read()
    return size - (len(end) - len(end.rstrip(b"\n")))


def researcher_log_view(submission, kind: str) -> LogView:
    """The tail of a submission's build or run log that its researcher may see."""
    path = full_log_path(submission, kind)
    if kind == "run":
        if not submission.is_finished:
            return LogView(kind=kind, text="", hidden_bytes=0, withheld=True)
        # Fixed (and charged to the exit budget) when the run ended: never read from the file.
        text, hidden = cap(submission.run_log_tail or "")
        if path.is_file():
            hidden = max(0, _content_size(path) - len(text.encode("utf-8")))
        return LogView(kind=kind, text=text, hidden_bytes=hidden)
    if path.is_file():
        text, before = _read_end(path)
    else:  # the web host may not be the worker host: fall back to the tail stored with the submission
        text, before = submission.build_log_tail or "", 0
    shown, hidden = cap(text)
    return LogView(kind=kind, text=shown, hidden_bytes=hidden + before)


def staff_log_view(submission, kind: str) -> LogView:
    """The end of a log as it is now, for an admin (who may read it whole): no tail cap, no delay."""
    path = full_log_path(submission, kind)
    if not path.is_file():
        return researcher_log_view(submission, kind)
    text, before = _read_end(path)
    return LogView(kind=kind, text=printable(text), hidden_bytes=before)


def researcher_reason(submission) -> str:
    """The failure reason as a researcher may see it. Its first line is the platform's own words;
    what follows quotes the log, so it is capped like the log."""
    first, _, quoted = printable(submission.reason or "").partition("\n")
    shown, hidden = cap(quoted)
    return "\n".join(part for part in (first[:500], f"[… {hidden:,} bytes not shown]" if hidden else "", shown) if part)
