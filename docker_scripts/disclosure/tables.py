"""ACRO's checks of tabular exports, for the platform's review.

    tables.py FOLDER COUNT MIN_COUNT

reads FOLDER/0.csv .. FOLDER/<COUNT-1>.csv and writes /out/report.json:
{"tables": [{"is_table", "cells", "small_cells", "dominated_cells", "detail", "fault"}, ...]}.

A file is an aggregate table when it has count cells: columns named like counts (n, count,
frequency, cases, ...) holding non-negative whole numbers, or, for a cross-tabulation, text
columns naming the groups and only non-negative whole numbers besides. Per-row data, metrics per
epoch and the like are not tables of counts, and are said to be so.

ACRO works on microdata (it builds the table itself). Here the table is finished: its count cells
are handed to ACRO's own minimum threshold check (SDCChecks.check_min_threshold, with ACRO's
default risk appetite and the platform's minimum), which flags every cell under the minimum,
zeros included, as ACRO's defaults do. ACRO's dominance rules (p %, n-k) need each contributor's
value in a cell, which a finished table does not hold: they are not applied, and the detail says so,
pointing to ACRO's own outputs (built inside the run's code, read by acro_results.py) for them.
"""

from __future__ import annotations

import json
import logging
import pathlib
import re
import sys
from types import SimpleNamespace

import pandas as pd
import yaml
from acro import sdcchecks

COUNT_NAME = re.compile(
    r"^(n|count|counts|freq|frequency|number|num|cases|patients|people|total)$|^(n|count|num)_|_(n|count)$",
    re.IGNORECASE,
)
MAX_ROWS = 100_000


def risk_appetite(min_count: int) -> dict:
    path = pathlib.Path(sdcchecks.__file__).with_name("default.yaml")
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {**config, "safe_threshold": min_count}


def whole_non_negative(column: pd.Series) -> bool:
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return False
    values = column.dropna()
    return len(values) > 0 and bool(((values >= 0) & (values == values.round())).all())


def count_columns(table: pd.DataFrame) -> tuple[list[str], str]:
    named = [c for c in table.columns if COUNT_NAME.search(str(c).strip()) and whole_non_negative(table[c])]
    if named:
        return named, "counts per group"
    text = [c for c in table.columns if table[c].dtype == object]
    numbers = [c for c in table.columns if c not in text]
    if text and numbers and all(whole_non_negative(table[c]) for c in numbers):
        return numbers, "a cross-tabulation of counts"
    return [], ""


def check(path: pathlib.Path, checks: sdcchecks.SDCChecks, min_count: int) -> dict:
    try:
        table = pd.read_csv(path, sep=None, engine="python", nrows=MAX_ROWS + 1)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        return {"is_table": False, "detail": f"not read as a CSV table ({str(exc)[:200]})"}
    if len(table) > MAX_ROWS:
        return {"is_table": False, "detail": f"over {MAX_ROWS:,} rows: row-level data, not an aggregate table"}
    columns, kind = count_columns(table)
    if not columns:
        return {
            "is_table": False,
            "detail": "no column of counts (non-negative whole numbers named like n or count, or a "
            "cross-tabulation): not an aggregate table of counts; review it as row-level output. A table of "
            "statistics (means, totals per group) is checked only where the run's code builds it with ACRO and "
            "finalises ACRO's outputs into the export",
        }
    counts = table[columns].astype(float)
    evidence = sdcchecks.SDCEvidence(interim_tables={"count_table": counts})
    status, _, mask = checks.check_min_threshold("table", evidence, SimpleNamespace(model_type="table"))
    cells = int(counts.notna().to_numpy().sum())
    small = int(sdcchecks.mask_to_boolmask(mask).to_numpy().sum())
    found = f"{small} of {cells} count cells are under {min_count}" if small else f"no count cell is under {min_count}"
    return {
        "is_table": True,
        "cells": cells,
        "small_cells": small,
        "dominated_cells": 0,
        "status": status,
        "detail": (
            f"{kind} ({', '.join(map(str, columns))}); ACRO's minimum threshold rule: {found} (zeros count as "
            "under it, as ACRO's defaults have it). Dominance (p %, n-k) needs each contributor's value, which "
            "a finished table does not hold: not checked. Build the table with ACRO in the run's code and "
            "finalise its outputs into the export (ACRO.finalise), and the platform reports ACRO's own checks, "
            "dominance included."
        ),
    }


def main(folder: str, count: int, min_count: int) -> None:
    logging.disable(logging.INFO)
    checks = sdcchecks.SDCChecks(risk_appetite(min_count))
    results = []
    for index in range(count):
        try:
            results.append(check(pathlib.Path(folder) / f"{index}.csv", checks, min_count))
        except Exception as exc:  # one odd file never hides the others' results
            results.append({"is_table": False, "fault": f"the check failed: {type(exc).__name__}: {exc}"[:300]})
    with open("/out/report.json", "w", encoding="utf-8") as f:
        json.dump({"tables": results}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
