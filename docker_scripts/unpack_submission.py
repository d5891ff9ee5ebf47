"""Unpack a submission (a zip, or a folder already unpacked) into a target folder.

Used inside the image build, by the platform and by the local dry run alike. The platform hands
over a zip it has already checked and normalised; a researcher's own zip may still hold its files
under one top-level folder, as GitHub's "Download ZIP" makes them, which is stripped here too.
"""

import shutil
import sys
import zipfile
from pathlib import Path


def unpack(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        with zipfile.ZipFile(source) as archive:
            archive.extractall(target)
    entries = [p for p in target.iterdir() if p.name not in ("__MACOSX", ".DS_Store")]
    if not (target / "main.py").is_file() and len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        for child in inner.iterdir():
            shutil.move(str(child), target / child.name)
        inner.rmdir()
    for required in ("main.py", "requirements.txt"):
        if not (target / required).is_file():
            sys.exit(f"{required} is missing at the top of the submission")


if __name__ == "__main__":
    unpack(Path(sys.argv[1]), Path(sys.argv[2]))
