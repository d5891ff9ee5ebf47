"""Reading ACRO's own results file (results.json, as ACRO.finalise(path, "json") writes it), which
the run's code wrote: what the reviewer is told of each output, and what a file of the wrong shape
or size becomes. The real file ACRO writes is read in tests/integration/disclosure/test_engine.py."""

import importlib.util
import json
from pathlib import Path

import pytest

from disclosure.facts import TableCheck
from disclosure.services import acro_folders, candidates
from disclosure.verdict import table_verdict

SCRIPT = Path(__file__).resolve().parents[2] / "docker_scripts" / "disclosure" / "acro_results.py"
spec = importlib.util.spec_from_file_location("acro_results", SCRIPT)
acro_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(acro_results)

CONFIG = {"safe_threshold": 10, "safe_nk_n": 2, "safe_nk_k": 0.9, "safe_pratio_p": 0.1}


def record(status="fail", outcome=None, files=("output_1_0.csv",), **extra) -> dict:
    return {
        "uid": "output_1",
        "status": status,
        "type": "table",
        "properties": {"method": "crosstab"},
        "files": [{"name": name, "sdc": {}} for name in files],
        "outcome": outcome
        if outcome is not None
        else {
            "benign": {"east": "ok", "north": "ok", "west": "MinimumThresholdCheck; "},
            "malignant": {"east": "ok", "north": "NKCheck; PPercentCheck; ", "west": "PPercentCheck; "},
        },
        "command": "acro.crosstab(df.site, df.grade, values=df.cost, aggfunc='mean')",
        "summary": "Mean : \nNKCheck: fail - 1 cells may need suppressing.\n PPercentCheck: fail - 2 cells may need "
        "suppressing.\n",
        "comments": [],
        "exception": "",
        **extra,
    }


def read(results, config=CONFIG, min_count=10) -> dict:
    as_bytes = results if isinstance(results, bytes) else json.dumps(results).encode()
    return acro_results.read_results(as_bytes, json.dumps(config).encode() if config else None, min_count)


def test_each_output_gives_acros_status_summary_and_flagged_cells():
    report = read({"version": "1.0.2", "results": {"output_1": record()}})
    assert report["problem"] == ""
    [output] = report["outputs"]
    assert (output["status"], output["files"], output["cells"]) == ("fail", ["output_1_0.csv"], 6)
    assert (output["small_cells"], output["dominated_cells"]) == (1, 2)
    assert output["detail"].startswith("ACRO 1.0.2, output_1 (table: acro.crosstab(")
    found = "): fail; dominance (p %, n-k): 2 of 6 cells may need suppression; threshold: 1 of 6 cells"
    assert found in output["detail"]
    assert "ACRO's summary: Mean : NKCheck: fail - 1 cells may need suppressing. PPercentCheck" in output["detail"]
    assert "ACRO's settings: minimum 10, p % rule p=0.1, n-k rule n=2 k=0.9" in output["detail"]


def test_the_rules_are_read_by_the_names_of_acro_0_4_too():
    outcome = {"mean": {"a": "p-ratio; nk-rule; ", "b": "threshold; ", "c": "ok"}}
    [output] = read({"version": "0.4.5", "results": {"output_0": record(outcome=outcome)}})["outputs"]
    assert (output["cells"], output["small_cells"], output["dominated_cells"]) == (3, 1, 1)


def test_a_pass_stays_a_pass_and_the_researchers_words_reach_the_reviewer():
    outcome = {"n": {"a": "ok", "b": "ok"}}
    results = {"results": {"output_0": record("pass", outcome, comments=["two sites merged"], exception="")}}
    [output] = read(results)["outputs"]
    assert (output["status"], output["small_cells"], output["dominated_cells"]) == ("pass", 0, 0)
    assert "Comments: two sites merged" in output["detail"]


@pytest.mark.parametrize(
    ("results", "problem"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        ({"version": "1.0.2"}, "no results as ACRO writes them"),
        ({"results": ["output_0"]}, "no results as ACRO writes them"),
        (b" " * (acro_results.MAX_BYTES + 1), "over 20 MB"),
    ],
)
def test_a_file_of_another_shape_is_said_so_and_never_read_as_a_pass(results, problem):
    report = read(results)
    assert report["outputs"] == [] and problem in report["problem"]


@pytest.mark.parametrize(
    ("odd", "says"),
    [
        ({"status": "ok"}, "ACRO's status 'ok' is none of pass, fail, review"),
        ({"status": "pass", "outcome": ["ok"]}, "its outcome is not a table of cells"),
        ({"status": "pass", "outcome": {"n": "ok"}}, "its outcome is not a table of cells"),
        ({"status": "pass", "files": "output_1_0.csv"}, ""),
    ],
)
def test_an_output_of_another_shape_is_for_a_person_to_review(odd, says):
    [output] = read({"results": {"output_1": {**record(), **odd}}})["outputs"]
    if says:
        assert output["status"] == "review" and says in output["detail"]
    else:
        assert output["files"] == []  # listed no file: no export file gets its pass


def test_a_session_whose_minimum_was_under_the_platforms_is_reviewed():
    outcome = {"n": {"a": "ok"}}
    [output] = read({"results": {"o": record("pass", outcome)}}, {**CONFIG, "safe_threshold": 3})["outputs"]
    assert output["status"] == "review"
    assert "its minimum was under the platform's 10" in output["detail"]
    assert "minimum 3" in output["detail"]


def test_what_acro_decided_is_the_verdict():
    failed = TableCheck(
        "acro/output_1_0.csv", True, cells=6, small_cells=1, dominated_cells=2, min_count=10, acro_status="fail"
    )
    verdict, sentence = table_verdict(failed)
    assert verdict == "over"
    assert sentence.startswith("ACRO marked it fail; 2 of 6 cells dominated by one or two contributors; 1 of 6")
    assert "1 of 6 cells under the minimum count of 10" in sentence
    assert table_verdict(TableCheck("acro/session_summary.csv", True, acro_status="review"))[0] == "over"
    assert table_verdict(TableCheck("acro/output_0_0.csv", True, cells=4, acro_status="pass")) == (
        "clear",
        "ACRO's checks passed",
    )
    # a pass whose own outcome flags a cell, or that the platform doubts, is not taken at its word
    assert table_verdict(TableCheck("a.csv", True, cells=4, dominated_cells=1, acro_status="pass"))[0] == "over"
    doubted = TableCheck("a.csv", True, cells=4, acro_status="pass", doubt="the file is not the one ACRO checked")
    assert table_verdict(doubted) == (
        "over",
        "ACRO marked it pass; the file is not the one ACRO checked: the output may identify people",
    )


def test_a_folder_of_acros_outputs_is_known_by_its_results_and_their_checksum():
    paths = [
        "acro/results.json",
        "acro/config.json",
        "acro/checksums/results.json.txt",
        "acro/checksums/output_0_0.csv.txt",
        "acro/output_0_0.csv",
        "acro/histogram.png",
        "metrics/results.json",
        "metrics/curve.png",
        "counts.csv",
    ]
    assert acro_folders(paths) == ["acro/"]
    assert candidates(paths) == ([], ["acro/histogram.png", "acro/output_0_0.csv", "counts.csv"])
