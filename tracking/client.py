"""The platform's only client of MLflow's admin API (users, experiments, permissions) and the
read-back of a submission's metrics. Nothing else in the platform talks to MLflow directly."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

import requests
from django.conf import settings

from .contract import SUBMISSION_TAG

log = logging.getLogger(__name__)

API = "/api/2.0/mlflow"
TIMEOUT = 15
CLAIM_TAG = "m2d.provisioned"


class MlflowUnavailable(RuntimeError):
    """MLflow could not be reached or answered with a server error: a platform fault."""


class MlflowRefused(RuntimeError):
    """MLflow refused an admin request (4xx that is not an expected 'already exists')."""


@dataclass(frozen=True)
class RunMetrics:
    run_id: str
    run_name: str
    status: str
    metrics: dict[str, float]
    params: dict[str, str]


class MlflowAdmin:
    def __init__(self, base_url: str | None = None, username: str | None = None, password: str | None = None):
        self.base_url = (base_url or settings.MLFLOW_URL).rstrip("/")
        self.session = requests.Session()
        self.session.auth = (username or settings.MLFLOW_ADMIN_USERNAME, password or settings.MLFLOW_ADMIN_PASSWORD)

    def _call(self, method: str, path: str, *, ok_errors: tuple[str, ...] = (), **kwargs) -> dict:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise MlflowUnavailable(f"MLflow at {self.base_url} is unreachable: {exc}") from exc
        if response.status_code >= 500:
            raise MlflowUnavailable(f"MLflow answered {response.status_code} to {method} {path}")
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"message": response.text}
            if body.get("error_code") in ok_errors:
                return {"error_code": body["error_code"]}
            raise MlflowRefused(f"MLflow refused {method} {path}: {response.status_code} {body.get('message', '')}")
        return response.json() if response.content else {}

    def health(self) -> bool:
        try:
            return requests.get(self.base_url + "/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    # --- users ---------------------------------------------------------------------------------
    def ensure_user(self, username: str, password: str) -> None:
        """Create the user, or set its password when it exists (so a retried approval converges).
        An MLflow admin is never taken over, whatever its name."""
        if username == self.session.auth[0]:
            raise MlflowRefused(f"{username!r} is the platform's own MLflow admin; it cannot be a researcher.")
        created = self._call(
            "POST",
            f"{API}/users/create",
            json={"username": username, "password": password},
            ok_errors=("RESOURCE_ALREADY_EXISTS",),
        )
        if created.get("error_code"):
            existing = self._call("GET", f"{API}/users/get", params={"username": username})
            if existing.get("user", {}).get("is_admin"):
                raise MlflowRefused(f"{username!r} is an MLflow admin; it cannot be a researcher.")
            self.set_password(username, password)

    def usernames(self) -> list[str]:
        return [user["username"] for user in self._call("GET", f"{API}/users/list").get("users", [])]

    def set_password(self, username: str, password: str) -> None:
        self._call("PATCH", f"{API}/users/update-password", json={"username": username, "password": password})

    def delete_user(self, username: str) -> None:
        self._call("DELETE", f"{API}/users/delete", json={"username": username}, ok_errors=("RESOURCE_DOES_NOT_EXIST",))

    # --- experiments and permissions -----------------------------------------------------------
    def ensure_experiment(self, name: str, *, claim: str, known_id: str = "") -> str:
        """The experiment called `name` that the platform made, tagged with `claim` (a value only
        the platform can compute). Any MLflow user may create experiments, so someone could
        create one under a researcher's name before that researcher is approved and keep MANAGE
        on it; such an impostor is renamed out of the way and a fresh one is made."""
        found = self._call(
            "GET",
            f"{API}/experiments/get-by-name",
            params={"experiment_name": name},
            ok_errors=("RESOURCE_DOES_NOT_EXIST",),
        )
        if not found.get("error_code"):
            experiment = found["experiment"]
            experiment_id = experiment["experiment_id"]
            tags = {tag["key"]: tag["value"] for tag in experiment.get("tags", [])}
            if experiment_id == known_id or hmac.compare_digest(tags.get(CLAIM_TAG, ""), claim):
                if experiment.get("lifecycle_stage") == "deleted":
                    self._call("POST", f"{API}/experiments/restore", json={"experiment_id": experiment_id})
                if tags.get(CLAIM_TAG) != claim:
                    self._set_experiment_tag(experiment_id, CLAIM_TAG, claim)
                return experiment_id
            log.warning("experiment %r (id %s) was not made by the platform; renaming it", name, experiment_id)
            self._call(
                "POST",
                f"{API}/experiments/update",
                json={"experiment_id": experiment_id, "new_name": f"{name}.unclaimed-{experiment_id}"},
            )
        created = self._call(
            "POST", f"{API}/experiments/create", json={"name": name, "tags": [{"key": CLAIM_TAG, "value": claim}]}
        )
        return created["experiment_id"]

    def _set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        self._call(
            "POST",
            f"{API}/experiments/set-experiment-tag",
            json={"experiment_id": experiment_id, "key": key, "value": value},
        )

    def grant_experiment(self, username: str, experiment_id: str, permission: str = "EDIT") -> None:
        """Give exactly this permission (EDIT: log runs, but neither delete nor share)."""
        self._call(
            "POST",
            "/api/3.0/mlflow/users/permissions/revoke",
            json={"username": username, "resource_type": "experiment", "resource_id": experiment_id},
            ok_errors=("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"),
        )
        self._call(
            "POST",
            "/api/3.0/mlflow/users/permissions/grant",
            json={
                "username": username,
                "resource_type": "experiment",
                "resource_id": experiment_id,
                "permission": permission,
            },
            ok_errors=("RESOURCE_ALREADY_EXISTS",),  # a concurrent sync granted it between the two calls
        )

    # --- read-back -----------------------------------------------------------------------------
    def submission_runs(self, experiment_id: str, submission_id: int) -> list[RunMetrics]:
        body = self._call(
            "POST",
            f"{API}/runs/search",
            json={
                "experiment_ids": [experiment_id],
                "max_results": 100,
                "filter": f"tags.`{SUBMISSION_TAG}` = '{int(submission_id)}'",
            },
        )
        runs = []
        for run in body.get("runs", []):
            data = run.get("data", {})
            runs.append(
                RunMetrics(
                    run_id=run["info"]["run_id"],
                    run_name=run["info"].get("run_name", ""),
                    status=run["info"].get("status", ""),
                    metrics={m["key"]: m["value"] for m in data.get("metrics", [])},
                    params={p["key"]: p["value"] for p in data.get("params", [])},
                )
            )
        return runs

    def metric_history(self, run_id: str, key: str) -> list[dict]:
        """Every value logged for one metric of one run: [{"step", "value", "timestamp"}], by step."""
        points: list[dict] = []
        token = ""
        while True:
            params = {"run_id": run_id, "metric_key": key, "max_results": 25000}
            if token:
                params["page_token"] = token
            body = self._call("GET", f"{API}/metrics/get-history", params=params)
            points += [
                {"step": int(m.get("step", 0)), "value": m["value"], "timestamp": int(m.get("timestamp", 0))}
                for m in body.get("metrics", [])
            ]
            token = body.get("next_page_token", "")
            if not token:
                return sorted(points, key=lambda p: (p["step"], p["timestamp"]))
