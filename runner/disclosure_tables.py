"""ACRO's disclosure checks of the tables a run exports, in the platform's disclosure image: its
minimum cell count rule on the count cells of CSV tables, or, where the run's own code built its
tables with ACRO and finalised them, ACRO's own results for each of its outputs.

Files in, facts out (disclosure.facts.TableCheck); what the platform fails at is a check's `fault`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from disclosure.facts import TableCheck

from .disclosure import CheckFault, run_platform_check
from .docker_api.engine import PlatformFault

MAX_TABLE_BYTES = 50 * 1024**2
ACRO_RESULTS_MAX_BYTES = 20 * 1024**2  # as acro_results.py caps it
TABLES_UID = 65534  # the table checks run as nobody: they read copies the platform made


def check_tables(
    files: list[tuple[str, Path]], *, disclosure_image: str, work_dir: Path, min_count: int, timeout: int
) -> tuple[TableCheck, ...]:
    """ACRO's checks of tabular export files (path in the export, file on this host), one per file.
    A file too large to be an aggregate table is not handed to the check at all."""
    large = {path for path, source in files if Path(source).stat().st_size > MAX_TABLE_BYTES}
    checked = [(path, source) for path, source in files if path not in large]
    results: dict[str, TableCheck] = {
        path: TableCheck(
            path=path,
            is_table=False,
            min_count=min_count,
            detail=f"over {MAX_TABLE_BYTES // 1024**2} MB: row-level data, not an aggregate table",
        )
        for path in large
    }
    work = Path(work_dir)
    try:
        if checked:
            results.update(_acro_checks(checked, disclosure_image, work, min_count, timeout))
    except (CheckFault, PlatformFault, OSError, KeyError, TypeError, ValueError) as exc:
        for path, _ in checked:
            results[path] = TableCheck(path=path, is_table=False, min_count=min_count, fault=str(exc))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tuple(results[path] for path, _ in files)


def _acro_checks(
    files: list[tuple[str, Path]], image: str, work: Path, min_count: int, timeout: int
) -> dict[str, TableCheck]:
    given = work / "tables"
    given.mkdir(parents=True, exist_ok=True)
    os.chmod(given, 0o755)
    for index, (_, source) in enumerate(files):
        shutil.copyfile(source, given / f"{index}.csv")
        os.chmod(given / f"{index}.csv", 0o644)
    digest = hashlib.sha256(str(work).encode()).hexdigest()[:10]
    report = run_platform_check(
        image,
        name=f"m2d-disclosure-tables-{digest}",
        command=("python3", "/opt/m2d/disclosure/tables.py", "/in", str(len(files)), str(min_count)),
        given=given,
        out=work / "report",
        uid=TABLES_UID,
        timeout=timeout,
        labels={},
    )
    return {
        path: TableCheck(
            path=path,
            is_table=bool(r.get("is_table")),
            cells=int(r.get("cells", 0)),
            small_cells=int(r.get("small_cells", 0)),
            dominated_cells=int(r.get("dominated_cells", 0)),
            min_count=min_count,
            detail=str(r.get("detail", "")),
            fault=str(r.get("fault", "")),
        )
        for (path, _), r in zip(files, report["tables"], strict=True)
    }


def check_acro_results(
    folder: str,
    names: list[str],
    results: Path | None,
    config: Path | None,
    *,
    disclosure_image: str,
    work_dir: Path,
    min_count: int,
    timeout: int,
) -> dict[str, TableCheck]:
    """ACRO's own results for the files of one folder where a run's code finalised ACRO's outputs
    (`folder`: its path in the export; `names`: its files to report on; `results`, `config`: copies
    of its results.json and config.json on this host, None when absent or too large to copy).
    Each name an ACRO output lists gets that output's check; a name no output lists is left out:
    ACRO did not check it."""

    def unknown(detail: str = "", fault: str = "") -> dict[str, TableCheck]:
        return {
            name: TableCheck(
                path=f"{folder}{name}",
                is_table=True,
                min_count=min_count,
                acro_status="" if fault else "review",
                detail=detail,
                fault=fault,
            )
            for name in names
        }

    if results is None or Path(results).stat().st_size > ACRO_RESULTS_MAX_BYTES:
        return unknown(
            f"ACRO's results.json is missing or over {ACRO_RESULTS_MAX_BYTES // 1024**2} MB: not read, so what "
            "ACRO decided is unknown; review it by hand"
        )
    work = Path(work_dir)
    try:
        given = work / "acro"
        given.mkdir(parents=True, exist_ok=True)
        os.chmod(given, 0o755)
        for source, name in ((results, "results.json"), (config, "config.json")):
            if source is not None and Path(source).stat().st_size <= ACRO_RESULTS_MAX_BYTES:
                shutil.copyfile(source, given / name)
                os.chmod(given / name, 0o644)
        digest = hashlib.sha256(str(work).encode()).hexdigest()[:10]
        report = run_platform_check(
            disclosure_image,
            name=f"m2d-disclosure-acro-{digest}",
            command=("python3", "/opt/m2d/disclosure/acro_results.py", "/in", str(min_count)),
            given=given,
            out=work / "report",
            uid=TABLES_UID,
            timeout=timeout,
            labels={},
        )
        if report.get("problem"):
            return unknown(f"ACRO's results could not be read: {report['problem']}; review it by hand")
        checks: dict[str, TableCheck] = {}
        for output in report["outputs"]:
            for name in output["files"]:
                if name in names and name not in checks:
                    checks[name] = TableCheck(
                        path=f"{folder}{name}",
                        is_table=True,
                        cells=int(output["cells"]),
                        small_cells=int(output["small_cells"]),
                        dominated_cells=int(output["dominated_cells"]),
                        min_count=min_count,
                        acro_status=str(output["status"]),
                        detail=str(output["detail"]),
                    )
        return checks
    except (CheckFault, PlatformFault, OSError, KeyError, TypeError, ValueError) as exc:
        return unknown(fault=str(exc))
    finally:
        shutil.rmtree(work, ignore_errors=True)
