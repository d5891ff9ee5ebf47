"""Tries each way out of a run that is not MLflow's metered calls or a reviewed export.

What it does comes from cfg.json beside it: {"mode": ..., plus the mode's numbers}. It prints
what it managed and writes nothing the tests rely on but its output and its exports."""

import json
import os
import sys
import time
from pathlib import Path

cfg = json.loads(Path(__file__).with_name("cfg.json").read_text())
secret = next(Path("/mnt/dataset/CLaM-sample").glob("*/*/1.npy")).read_bytes()
export = Path("/mnt/export")


def names():
    """Data set bytes as hex, in the names of empty files."""
    hexed = secret.hex()
    for i in range(cfg["files"]):
        (export / f"{i:02d}-{hexed[i * 64 : (i + 1) * 64]}").touch()
    print(f"named {cfg['files']} files", flush=True)


def many_files():
    for i in range(cfg["files"]):
        (export / f"f{i}").touch()


def long_name():
    (export / ("a" * cfg["length"])).touch()


def bad_name():
    (export / cfg["name"]).write_text("x")


def sparse():
    for i in range(cfg["files"]):
        with open(export / f"huge{i}.bin", "wb") as handle:
            handle.truncate(cfg["gib"] * 1024**3)
    print("made sparse files", flush=True)


def slow_print():
    """Data set bytes as hex lines, one at a time, for a poller to collect."""
    hexed = secret.hex()
    for i in range(cfg["lines"]):
        print(f"L{i:03d} " + hexed[i * cfg["width"] : (i + 1) * cfg["width"]], flush=True)
        time.sleep(cfg["pause"])
    if cfg.get("fail"):
        raise RuntimeError("the end " + hexed[: cfg["width"]])


def read_answers():
    """Reads the same run again and again: its tags, set from outside, are the way in."""
    import mlflow

    client = mlflow.MlflowClient()
    received = 0
    outcome = "allowance never met"
    for _ in range(cfg["reads"]):
        try:
            run = client.get_run(cfg["run_id"])
        except Exception as exc:  # the gateway's refusal
            outcome = str(exc)[:300]
            break
        received += sum(len(v) for v in run.data.tags.values())
    (export / "answers.json").write_text(json.dumps({"received": received, "outcome": outcome}))
    print(f"received {received} bytes of tags", flush=True)


def send_until_refused():
    """Sends data set bytes as params until the gateway refuses, then goes on with its work."""
    import mlflow

    hexed = (secret.hex() * 20)[:2_000_000]
    sent, refusal = 0, ""
    try:  # every MLflow call may be refused: the first one too, when the budget is spent
        mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
        with mlflow.start_run():
            for i in range(cfg.get("params", 1000)):
                chunk = hexed[i * 2000 : (i + 1) * 2000]
                mlflow.log_param(f"p{i}", chunk)
                sent += len(chunk)
                time.sleep(cfg.get("pause", 0))
    except Exception as exc:
        refusal = str(exc)[:400]
    (export / "sent.json").write_text(json.dumps({"sent": sent, "refusal": refusal}))
    print(f"sent {sent} bytes; the run goes on", flush=True)
    print("finished its work", flush=True)


globals()[cfg["mode"]]()
sys.exit(0)
