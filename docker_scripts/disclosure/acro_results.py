"""ACRO's own results of a run's finalised outputs, read for the platform's review.

    acro_results.py FOLDER MIN_COUNT

reads FOLDER/results.json (and FOLDER/config.json, ACRO's risk appetite, when there is one), as
`ACRO.finalise(path, "json")` writes them, and writes /out/report.json:
{"outputs": [{"uid", "status", "type", "files", "cells", "small_cells", "dominated_cells", "detail"}],
 "problem": ""}.

ACRO ran inside the researcher's code, on the microdata, and applied all its rules there: the
minimum threshold, the dominance rules (p %, n-k), missing and negative values. Its status per
output (pass, fail, review) and its cell-by-cell outcome are what the reviewer is shown. The file
was written by the run, so nothing in it is trusted: its size is capped, its shape is checked,
anything else becomes "review" with the reason, and every text taken from it is cut short.
Standard library only: it decides nothing with ACRO's code, it reads what ACRO wrote.
"""

from __future__ import annotations

import json
import re
import sys

MAX_BYTES = 20 * 1024**2
MAX_OUTPUTS = 5_000
MAX_CELLS = 1_000_000
STATUSES = ("pass", "fail", "review")
# The outcome's words for each rule: ACRO 1.x names its check classes, ACRO 0.4 its rules.
DOMINANCE = ("NKCheck", "PPercentCheck", "nk-rule", "p-ratio")
THRESHOLD = ("MinimumThresholdCheck", "threshold")


def short(value, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cell_counts(outcome) -> tuple[int, int, int, str]:
    """(cells, under the threshold, dominated, a problem) from ACRO's outcome: {column: {row: flags}}."""
    if outcome in (None, {}):
        return 0, 0, 0, ""
    if not isinstance(outcome, dict) or not all(isinstance(c, dict) for c in outcome.values()):
        return 0, 0, 0, "its outcome is not a table of cells"
    cells = small = dominated = 0
    for column in outcome.values():
        for flags in column.values():
            cells += 1
            if cells > MAX_CELLS:
                return 0, 0, 0, f"its outcome has over {MAX_CELLS:,} cells"
            words = set(re.split(r"[;\s]+", str(flags)))
            small += bool(words.intersection(THRESHOLD))
            dominated += bool(words.intersection(DOMINANCE))
    return cells, small, dominated, ""


def settings_text(config, min_count: int) -> tuple[str, bool]:
    """ACRO's risk appetite as the researcher's session had it, and whether it asked for less than
    the platform's minimum count."""
    if not isinstance(config, dict):
        return "", False
    parts = []
    threshold = config.get("safe_threshold")
    if isinstance(threshold, int | float) and not isinstance(threshold, bool):
        parts.append(f"minimum {threshold:g}")
    p, n, k = config.get("safe_pratio_p"), config.get("safe_nk_n"), config.get("safe_nk_k")
    if all(isinstance(x, int | float) and not isinstance(x, bool) for x in (p, n, k)):
        parts.append(f"p % rule p={p:g}, n-k rule n={n:g} k={k:g}")
    weaker = isinstance(threshold, int | float) and not isinstance(threshold, bool) and threshold < min_count
    return (f"ACRO's settings: {', '.join(parts)}" if parts else ""), weaker


def output_report(uid: str, record, version: str, settings: str, weaker: bool, min_count: int) -> dict:
    if not isinstance(record, dict):
        return {
            "uid": short(uid, 100),
            "status": "review",
            "type": "",
            "files": [],
            "cells": 0,
            "small_cells": 0,
            "dominated_cells": 0,
            "detail": f"ACRO's record of {short(uid, 100)} is not in the shape ACRO writes: review it by hand",
        }
    listed = record.get("files") if isinstance(record.get("files"), list) else []
    files = [f["name"] for f in listed if isinstance(f, dict) and isinstance(f.get("name"), str)]
    status = record.get("status")
    kind = short(record.get("type", ""), 40)
    cells, small, dominated, odd = cell_counts(record.get("outcome"))
    notes = []
    if status not in STATUSES:
        notes.append(f"ACRO's status {short(status, 40)!r} is none of pass, fail, review")
        status = "review"
    if odd:
        notes.append(f"{odd}: review it by hand")
        status = "review" if status == "pass" else status
    if weaker and status == "pass":
        notes.append(f"its minimum was under the platform's {min_count}")
        status = "review"
    found = []
    if dominated:
        found.append(f"dominance (p %, n-k): {dominated} of {cells} cells may need suppression")
    if small:
        found.append(f"threshold: {small} of {cells} cells may need suppression")
    command = short(record.get("command", ""), 200)
    detail = f"ACRO {short(version, 20)}, {short(uid, 100)} ({kind}{': ' + command if command else ''}): {status}"
    detail += "".join(f"; {f}" for f in found + notes)
    summary = short(record.get("summary", ""), 600).rstrip(".")
    if summary and summary != status:
        detail += f". ACRO's summary: {summary}"
    if settings:
        detail += f". {settings}"
    for label, value in (
        ("Comments", record.get("comments")),
        ("Exception asked for", record.get("exception")),
    ):
        if value and isinstance(value, str | list):
            detail += f". {label}: {short(' / '.join(map(str, value)) if isinstance(value, list) else value, 400)}"
    return {
        "uid": short(uid, 100),
        "status": status,
        "type": kind,
        "files": files[:100],
        "cells": cells,
        "small_cells": small,
        "dominated_cells": dominated,
        "detail": detail,
    }


def read_results(results: bytes, config: bytes | None, min_count: int) -> dict:
    """The report of one ACRO folder, from the bytes of its results.json and config.json."""
    if len(results) > MAX_BYTES:
        return {"outputs": [], "problem": f"its results.json is over {MAX_BYTES // 1024**2} MB: not read"}
    try:
        data = json.loads(results.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return {"outputs": [], "problem": f"its results.json is not JSON ({short(exc, 120)})"}
    outputs = data.get("results") if isinstance(data, dict) else None
    if not isinstance(outputs, dict):
        return {"outputs": [], "problem": "its results.json has no results as ACRO writes them"}
    if len(outputs) > MAX_OUTPUTS:
        return {"outputs": [], "problem": f"its results.json lists over {MAX_OUTPUTS:,} outputs: not read"}
    try:
        settings, weaker = settings_text(json.loads(config.decode("utf-8")) if config else None, min_count)
    except (UnicodeDecodeError, ValueError, RecursionError):
        settings, weaker = "", False
    version = data.get("version", "")
    return {
        "outputs": [
            output_report(str(uid), r, str(version), settings, weaker, min_count) for uid, r in outputs.items()
        ],
        "problem": "",
    }


def read_capped(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None


def main(folder: str, min_count: int) -> None:
    results = read_capped(f"{folder}/results.json")
    report = (
        {"outputs": [], "problem": "it has no results.json"}
        if results is None
        else read_results(results, read_capped(f"{folder}/config.json"), min_count)
    )
    with open("/out/report.json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
