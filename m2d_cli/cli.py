"""m2d submit | status | logs | exports | cancel | models | predict — see `m2d --help`."""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from . import __version__, models, predict
from .client import ApiError, Portal
from .config import ConfigError, load

FINISHED = {"succeeded", "failed", "cancelled", "timed_out"}
POLL_SECONDS = 2.0
# Terminal escape sequences and control characters but newline and tab: a log from the portal is
# printed as text, never as instructions to this terminal (the portal strips them too).
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\].*?(?:\x07|\x1b\\|$)|\x1b[PX^_].*?(?:\x1b\\|$)|\x1b[ -/]*[0-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f-\x9f]",
    re.DOTALL,
)


def _printable(text: str) -> str:
    return _CONTROL.sub("", text.replace("\r\n", "\n"))


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _duration(seconds) -> str:
    if seconds is None:
        return ""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def _elapsed(seconds) -> str:
    """A measured length of time: "8 s", "3 min 12 s", "2 h 05 min"."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _progress_bar(stream):
    last = [-1]

    def show(sent: int, total: int) -> None:
        percent = int(sent * 100 / total) if total else 100
        if percent == last[0]:
            return
        last[0] = percent
        filled = percent * 30 // 100
        stream.write(
            f"\rUploading [{'#' * filled}{'.' * (30 - filled)}] {percent:3d}%  "
            f"{sent / 1024**2:.1f}/{total / 1024**2:.1f} MB"
        )
        if sent >= total:
            stream.write("\n")
        stream.flush()

    return show


def _state_line(sub: dict) -> str:
    line = sub["status"].replace("_", " ")
    if sub.get("queue_position"):
        line += f" (position {sub['queue_position']} in the queue"
        wait = _duration(sub.get("estimated_wait_seconds"))
        line += f", starts in {wait})" if wait else ")"
    return line


def _print_outcome(sub: dict) -> None:
    print(f"Submission {sub['id']} {sub['status'].replace('_', ' ')}.")
    if sub.get("contents_sha256"):
        print(f"Contents: sha256 {sub['contents_sha256']} (of the files in the zip, not of the zip itself)")
    if sub.get("failure_stage"):
        print(f"Failed at: {sub['failure_stage']}")
    if sub.get("reason"):
        print(_printable(sub["reason"]))
    if sub.get("exit_code") is not None:
        print(f"Exit code: {sub['exit_code']}")
    if sub.get("duration_seconds") is not None:
        ran = f", main.py ran {_elapsed(sub['run_seconds'])}" if sub.get("run_seconds") is not None else ""
        print(f"Took: {_elapsed(sub['duration_seconds'])}{ran}")
    if sub.get("metrics"):
        width = max(len(key) for key in sub["metrics"])
        print("Final metrics:")
        for key, value in sorted(sub["metrics"].items()):
            print(f"  {key:<{width}}  {value:.6g}")
    held = (sub.get("exports_unreleased") or {}).get("held", 0)
    if held:
        size = sub["exports_unreleased"]["held_bytes"]
        print(f"Exports: {held} file{'s' if held != 1 else ''} ({size:,} bytes) held for review")
    if sub.get("exports"):
        print(f"Exports released: {', '.join(e['path'] for e in sub['exports'])}")
    if sub.get("exit_budget"):
        budget = sub["exit_budget"]
        print(f"Exit budget: {budget['remaining']:,} of {budget['limit']:,} bytes left for the next 24 hours")
    if sub["status"] != "succeeded" and sub.get("log_tail"):
        print("End of the log:")
        print(_printable(sub["log_tail"]).rstrip())
    print(f"Page: {sub['page_url']}")


def _clock(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return iso


def follow(portal: Portal, submission_id: int) -> dict:
    """Print each step of the submission's timeline, and where it waits, until it has finished."""
    printed = 0
    waiting = ""
    while True:
        sub = portal.submission(submission_id)
        for event in sub["events"][printed:]:
            print(f"{_clock(event['at'])}  {event['status'].replace('_', ' ')}", flush=True)
        printed = len(sub["events"])
        where = _state_line(sub) if sub.get("queue_position") else ""
        if where and where != waiting:
            print(f"          {where}", flush=True)
        waiting = where
        if sub["status"] in FINISHED:
            return sub
        time.sleep(POLL_SECONDS)


def cmd_submit(portal: Portal, args) -> int:
    path = Path(args.zip)
    if not path.is_file():
        _err(f"{path}: no such file. Zip main.py and requirements.txt first.")
        return 2
    sub = portal.submit(path, _progress_bar(sys.stderr))
    print(f"Submission {sub['id']} received: {sub['page_url']}")
    for warning in sub.get("warnings", []):
        print(f"warning: {warning}")
    if not args.wait:
        return 0
    try:
        final = follow(portal, sub["id"])
    except KeyboardInterrupt:
        _err(f"\nStopped following; submission {sub['id']} goes on. `m2d status {sub['id']}` shows it.")
        return 130
    _print_outcome(final)
    return 0 if final["status"] == "succeeded" else 1


def cmd_status(portal: Portal, args) -> int:
    if args.id is not None:
        sub = portal.submission(args.id)
        if args.wait and sub["status"] not in FINISHED:
            sub = follow(portal, args.id)
        if sub["status"] in FINISHED:
            _print_outcome(sub)
        else:
            print(f"Submission {sub['id']}: {_state_line(sub)}\nPage: {sub['page_url']}")
        return 0
    rows = portal.submissions()
    if not rows:
        print("No submissions yet. `m2d submit submission.zip --wait` sends one.")
        return 0
    print(f"{'ID':>6}  {'STATUS':<34}  {'RECEIVED':<16}  {'DURATION':<12}  METRICS")
    for sub in rows:
        metrics = " ".join(f"{k}={v:.4g}" for k, v in sorted(sub["metrics"].items()))
        received = sub["created_at"][:16].replace("T", " ")
        took = _elapsed(sub.get("duration_seconds"))
        print(f"{sub['id']:>6}  {_state_line(sub):<34}  {received:<16}  {took:<12}  {metrics}")
    return 0


def cmd_logs(portal: Portal, args) -> int:
    logs = portal.logs(args.id)
    kinds = [args.kind] if args.kind else ["build", "run"]
    printed = False
    for kind in kinds:
        view = logs[kind]
        if not view["text"]:
            continue
        if len(kinds) > 1:
            print(f"==> {kind} log <==")
        print(_printable(view["text"]).rstrip())
        if view["note"]:
            _err(view["note"])
        printed = True
    if not printed:
        print("No log yet.")
    return 0


def cmd_exports(portal: Portal, args) -> int:
    body = portal.exports(args.id)
    unreleased = body.get("unreleased") or {}
    if body["status"] is None or not (body["files"] or unreleased.get("held") or unreleased.get("rejected")):
        print(f"Submission {args.id} exported nothing (nothing was written to /mnt/export).")
        return 0
    print(f"Export of submission {args.id}: {body['status']}")
    if unreleased.get("held"):
        flagged = f", {unreleased['flagged']} flagged for the reviewer" if unreleased.get("flagged") else ""
        print(
            f"  {unreleased['held']} file(s), {unreleased['held_bytes']:,} bytes, held for review{flagged}: "
            "names and contents are shown once they are released"
        )
    if unreleased.get("rejected"):
        print(f"  {unreleased['rejected']} file(s) rejected by the reviewer")
    for entry in body["files"]:
        print(f"  {entry['state']:<9} {entry['size']:>12,}  {entry['path']}")
    released = [e for e in body["files"] if e["download_url"]]
    if args.download is not None:
        if not released:
            print("Nothing is released yet; ask for a release on the submission's page.")
            return 1
        folder = Path(args.download)
        folder.mkdir(parents=True, exist_ok=True)
        for entry in released:
            target = folder / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            size = portal.download(entry["download_url"], target)
            print(f"downloaded {target} ({size:,} bytes)")
    elif released:
        print("Download the released files with --download DIR.")
    return 0


def cmd_cancel(portal: Portal, args) -> int:
    sub = portal.cancel(args.id)
    print(f"Submission {sub['id']} {sub['status']}.")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="m2d",
        description="Submit training code to an M2D portal, follow it, and register the models it trained. "
        "Reads the portal URL and your API token from M2D_URL and M2D_TOKEN, or ~/.config/m2d/config.toml.",
    )
    top.add_argument("--version", action="version", version=f"m2d {__version__}")
    commands = top.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="upload submission.zip")
    submit.add_argument("zip")
    submit.add_argument("--wait", action="store_true", help="follow it to its end; exit 1 unless it succeeded")
    submit.set_defaults(run=cmd_submit)
    status = commands.add_parser("status", help="your recent submissions, or one of them")
    status.add_argument("id", type=int, nargs="?")
    status.add_argument("--wait", action="store_true", help="follow it to its end")
    status.set_defaults(run=cmd_status)
    logs = commands.add_parser("logs", help="the end of a submission's build and run logs")
    logs.add_argument("id", type=int)
    logs.add_argument("--kind", choices=["build", "run"])
    logs.set_defaults(run=cmd_logs)
    exports = commands.add_parser("exports", help="what a run exported, its review state, and downloads")
    exports.add_argument("id", type=int)
    exports.add_argument("--download", metavar="DIR", help="save the released files here")
    exports.set_defaults(run=cmd_exports)
    cancel = commands.add_parser("cancel", help="cancel a submission that has not finished")
    cancel.add_argument("id", type=int)
    cancel.set_defaults(run=cmd_cancel)
    models.add_parser(commands)
    predict.add_parser(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        portal = Portal(load())
        return args.run(portal, args)
    except ConfigError as exc:
        _err(str(exc))
        return 2
    except ApiError as exc:
        _err(f"m2d: {exc}")
        return 2
    except models.UsageError as exc:
        _err(f"m2d: {exc}")
        return 2
