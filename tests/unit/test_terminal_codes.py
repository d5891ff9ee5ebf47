"""Logs carry what pip and the researcher's code wrote to a terminal; `m2d logs` and the stored
log tails print the words, never colour codes, window titles or other control characters."""

from __future__ import annotations

import argparse

from m2d_cli.cli import cmd_logs
from runner.docker_api.logs import tail

COLOURED_LOG = (
    "\x1b]0;pip\x07Collecting nosuchpkg==9.9\r\n"
    "\x1b[91mERROR: No matching distribution found for nosuchpkg==9.9\x1b[0m\r\n"
    "\tdone\x1b[?25h\x07\n"
)
CLEAN = "Collecting nosuchpkg==9.9\nERROR: No matching distribution found for nosuchpkg==9.9\n\tdone"


class FakePortal:
    def logs(self, submission_id):
        return {"build": {"text": COLOURED_LOG, "note": ""}, "run": {"text": "", "note": ""}}


def test_m2d_logs_prints_the_words_without_escape_codes(capsys):
    assert cmd_logs(FakePortal(), argparse.Namespace(id=7, kind="build")) == 0
    assert capsys.readouterr().out == CLEAN + "\n"


def test_the_stored_log_tail_has_no_escape_codes(tmp_path):
    log = tmp_path / "build.log"
    log.write_bytes(COLOURED_LOG.encode())
    assert tail(log, 3) == CLEAN
