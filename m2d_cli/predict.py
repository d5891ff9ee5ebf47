"""m2d predict — send a case to a model in the store and print its answer.

One file for a one-input model (`m2d predict clam-density view.png`), or one NAME=FILE per input
(`m2d predict clam-malignancy LCC=lcc.png LMLO=lmlo.png RCC=rcc.png RMLO=rmlo.png`).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from .client import Portal
from .models import UsageError


def _inputs(items: list[str]) -> tuple[dict[str, Path], Path | None]:
    named, single = {}, None
    for item in items:
        name, sep, path = item.partition("=")
        if sep:
            named[name] = Path(path)
        elif single is None and not named:
            single = Path(item)
        else:
            raise UsageError("Give one FILE for a one-input model, or NAME=FILE for each input.")
    if single is not None and named:
        raise UsageError("Give one FILE for a one-input model, or NAME=FILE for each input, not both.")
    for path in [*named.values(), *([single] if single else [])]:
        if not path.is_file():
            raise UsageError(f"{path} is not a file.")
    return named, single


def cmd_predict(portal: Portal, args) -> int:
    named, single = _inputs(args.inputs)
    path = f"{portal.base}/predictions/{quote(args.name, safe='')}"
    if args.version:
        path += f"/{quote(args.version, safe='')}"
    if single is not None:
        response = portal._call(
            "POST", path, data=single.read_bytes(), headers={"Content-Type": "application/octet-stream"}
        )
    else:
        files = {name: (file.name, file.read_bytes()) for name, file in named.items()}
        response = portal._call("POST", path, files=files)
    answered_by = response.headers.get("X-M2D-Model-Version", args.name)
    if args.json:
        print(json.dumps(response.json(), indent=2))
    else:
        print(f"{answered_by} answered:")
        for key, value in response.json().items():
            print(f"  {key}: {json.dumps(value)}")
    return 0


def add_parser(commands) -> None:
    predict = commands.add_parser("predict", help="send a case to a deployed model and print its answer")
    predict.add_argument("name", metavar="MODEL", help="e.g. clam-malignancy")
    predict.add_argument("inputs", nargs="+", metavar="FILE|NAME=FILE", help="view.png, or LCC=lcc.png ...")
    predict.add_argument("--version", help="a version number or alias (default: the model's default)")
    predict.add_argument("--json", action="store_true", help="print the answer as JSON")
    predict.set_defaults(run=cmd_predict)
