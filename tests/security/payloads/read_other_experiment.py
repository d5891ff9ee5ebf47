"""Uses its own credentials to read another researcher's experiment and run."""

import json
import os
from pathlib import Path

import requests
from mlflow import MlflowClient

target = json.loads(Path("target.json").read_text())
client = MlflowClient()
results = {}


def attempt(name, call):
    try:
        value = call()
        results[name] = {"ok": True, "value": str(value)[:300]}
    except Exception as exc:  # every refusal is what we hope for
        results[name] = {"ok": False, "error": str(exc)[:300]}


attempt("get_experiment", lambda: client.get_experiment(target["experiment_id"]))
attempt("get_experiment_by_name", lambda: client.get_experiment_by_name(target["experiment_name"]))
attempt("search_runs", lambda: [r.info.run_id for r in client.search_runs([target["experiment_id"]])])
attempt("get_run", lambda: client.get_run(target["run_id"]).data.metrics)
attempt("metric_history", lambda: client.get_metric_history(target["run_id"], "secret"))
attempt("log_into_their_run", lambda: client.log_metric(target["run_id"], "vandal", 1.0))
attempt(
    "list_users",
    lambda: requests.get("http://mlflow-server:3001/api/2.0/mlflow/users/list", timeout=10).status_code,
)
attempt(
    "their_password_against_gateway",
    lambda: (
        requests.get(
            "http://mlflow-server:3001/api/2.0/mlflow/experiments/get",
            params={"experiment_id": target["experiment_id"]},
            auth=(target["experiment_name"], "guessed-password-1234"),
            timeout=10,
        ).status_code
    ),
)
attempt("own_experiment", lambda: client.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"]).name)
Path("/mnt/export/attempts.json").write_text(json.dumps(results, indent=1))
print(json.dumps(results, indent=1))
