"""The direction of imports between the apps (pyproject.toml, [tool.importlinter]): a new import
of the runner from outside runner.dispatch, of an app from tracking or from the engine interface,
fails here."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout and "10 kept" in result.stdout
