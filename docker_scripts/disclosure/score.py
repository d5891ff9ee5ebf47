"""Ask a model for its answers on cases of the data set, for a disclosure-risk assessment.

Runs inside the submission's own image, sealed like a run: no network, the model's folder, the
cases' folders and this platform's scripts read-only, one small writable folder (/out). It loads
the model as the serving worker does (m2d_serve.load_model), reads each case's inputs as the card
declares them (one folder per input in the case's folder: <case>/<LCC>/1.png or .npy), decodes
them as serving does, calls predict and checks its outputs against the card.

Writes /out/scores.jsonl: one line {"id": N, "p": probability of the positive class} per case,
the probability being the first number the card declares among the outputs. At the first failure
it writes {"problem": "..."} in plain words and stops. The model never learns which cases it
trained on: the list it reads holds ids and folders only.
"""

from __future__ import annotations

import base64
import json
import math
import os
import sys
import traceback

sys.path.insert(0, "/opt/m2d/serve")
from m2d_serve import Refused, checked, decode, load_model  # noqa: E402

MODEL_DIR = "/opt/m2d/model"
DATASET = "/mnt/dataset"
EXTENSIONS = {"image/png": (".png",), "application/x-npy": (".npy",), "application/octet-stream": ("",)}
NUMERIC = ("FP16", "FP32", "FP64", "BF16")


def say(out, record: dict) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()


def short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def input_file(case_dir: str, spec: dict) -> tuple[str, str]:
    """The file of one declared input in a case's folder, and the content type it is read as."""
    name = spec["name"]
    folder = os.path.join(case_dir, name)
    try:
        files = sorted(os.listdir(folder))
    except OSError:
        raise LookupError(f"the case has no folder {name}/ for the input {name}") from None
    for kind in spec.get("formats") or ["image/png", "application/x-npy"]:
        for extension in EXTENSIONS.get(kind, ()):
            for file in files:
                if file.lower().endswith(extension) and os.path.isfile(os.path.join(folder, file)):
                    return os.path.join(folder, file), kind
    raise LookupError(f"the folder {name}/ holds no file of the formats the card declares for it")


def probability_output(card: dict) -> str:
    for output in card.get("outputs", []):
        if str(output.get("datatype", "FP32")).upper() in NUMERIC:
            return output["name"]
    raise LookupError("the card declares no numeric output to read a probability from")


def probability(name: str, value) -> float:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        shape = f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__
        raise ValueError(f"its output {name} is {shape}, not one probability")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"its output {name} is {value}, not a probability in [0, 1]")
    return float(value)


def main() -> int:
    with open("/opt/m2d/cases/cases.json", encoding="utf-8") as f:
        cases = json.load(f)
    with open("/out/scores.jsonl", "w", encoding="utf-8") as out:
        try:
            card, model = load_model(MODEL_DIR, "cpu")
            output = probability_output(card)
        except LookupError as exc:
            say(out, {"problem": str(exc)})
            return 3
        except BaseException as exc:  # noqa: BLE001 - whatever the model's code raises, even SystemExit
            traceback.print_exc()
            say(out, {"problem": f"the model did not load ({short(exc)})"})
            return 3
        declared = card.get("inputs", [])
        for number, case in enumerate(cases, 1):
            where = f"case {number} of {len(cases)}"
            try:
                inputs = {}
                for spec in declared:
                    path, kind = input_file(os.path.join(DATASET, case["path"]), spec)
                    with open(path, "rb") as f:
                        data = base64.b64encode(f.read()).decode()
                    inputs[spec["name"]] = decode(spec["name"], {"content_type": kind, "data": data})
            except (LookupError, Refused) as exc:
                # The data set's side: the case is left out, not held against the model.
                say(out, {"id": case["id"], "left_out": f"{where}: {exc}"})
                continue
            try:
                raw = model.predict(inputs, {})
            except BaseException as exc:  # noqa: BLE001 - whatever the model's code raises
                traceback.print_exc()
                say(out, {"problem": f"{where}: its predict raised {short(exc)}"})
                return 3
            try:
                p = probability(output, checked(card, raw).get(output))
            except (Refused, ValueError) as exc:
                say(out, {"problem": f"{where}: {exc}"})
                return 3
            say(out, {"id": case["id"], "p": p})
    return 0


if __name__ == "__main__":
    sys.exit(main())
