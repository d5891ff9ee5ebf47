"""What the tracking gateway lets a run say to MLflow: its routes, its refusals and its allowances.

Pure rules, no server: runner.gateway applies them to each request. See runner.gateway for why.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field

from aiohttp import web

from tracking.contract import SUBMISSION_TAG

MAX_BODY_BYTES = 1024 * 1024
MAX_REFUSALS_KEPT = 20

EXPORT_MESSAGE = (
    "Artifacts and models cannot be uploaded from a run. "
    "Write files to /mnt/export; an admin reviews and releases them."
)

API = "/api/2.0/mlflow/"

# What a run may call, and nothing else. Exact paths only: a percent-encoded, doubled-slash or
# ajax-api spelling of an allowed call is simply not in the table, so it is refused.
# Kinds: "pass" forwards as is; "no_auth" forwards without credentials (the server needs none);
# "own_experiment" only for policy.experiment_name; "tag_run" adds the submission tag;
# "guard_tag" refuses changes to that tag (the platform finds a submission's runs by it).
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/health"): "no_auth",
    ("GET", "/version"): "no_auth",
    ("GET", API + "experiments/get-by-name"): "own_experiment",
    # For other users' experiments MLflow itself answers: get with 403, search with nothing.
    ("GET", API + "experiments/get"): "pass",
    ("POST", API + "experiments/search"): "pass",
    ("POST", API + "runs/create"): "tag_run",
    ("POST", API + "runs/update"): "pass",
    ("GET", API + "runs/get"): "pass",
    ("POST", API + "runs/search"): "pass",
    ("POST", API + "runs/log-metric"): "pass",
    ("POST", API + "runs/log-parameter"): "pass",
    ("POST", API + "runs/set-tag"): "guard_tag",
    ("POST", API + "runs/delete-tag"): "guard_tag",
    ("POST", API + "runs/log-batch"): "guard_tag",
    ("GET", API + "metrics/get-history"): "pass",
}

# Messages for refused paths, first match wins; anything unmatched gets a generic message.
# These only choose the wording: whatever is not in ROUTES is refused regardless.
REFUSAL_MESSAGES: list[tuple[re.Pattern[str], str]] = [
    # Artifacts: the ajax upload route writes to the server's disk even with artifacts off.
    (re.compile(r"artifact"), EXPORT_MESSAGE),
    # Models, registry, dataset profiles (16 MB each) and traces (no size limit at all).
    (re.compile(r"logged-models|registered-models|model-versions"), EXPORT_MESSAGE),
    (re.compile(r"runs/(log-inputs|log-model|outputs)|/traces"), EXPORT_MESSAGE),
    # A run-created experiment could point its artifact location anywhere on the server.
    (
        re.compile(r"experiments/create$"),
        'experiments are provisioned by the platform; use mlflow.set_experiment("{experiment}")',
    ),
    (re.compile(r"experiments/"), "experiments are managed by the platform"),
]

# Headers passed on to MLflow; everything else (hop-by-hop, Expect, Origin, Cookie, Host,
# X-Forwarded-*, the run's Authorization) is dropped. An allowlist, so nothing new slips through.
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept", "User-Agent")


@dataclass(frozen=True)
class GatewayPolicy:
    submission_id: int
    username: str  # the submission owner's MLflow username
    password: str
    experiment_name: str  # == username on this platform
    # Bytes the submission may send out over all its attempts: M2D_TRACKING_MAX_BYTES, or less
    # when the researcher's exit budget has less left (`budget_limited`).
    max_bytes: int = 1_000_000
    max_calls: int = 100_000
    # Bytes of answers the run may read back, over all its attempts, and in one answer.
    max_bytes_in: int = 4_000_000
    max_answer_bytes: int = 1024 * 1024
    budget_limited: bool = False


@dataclass
class GatewayStats:
    calls: int = 0  # every request the run made, refused ones included
    refused: int = 0
    bytes_in: int = 0  # into the gateway, out of the sandbox: request line + headers (approx.) + body
    bytes_out: int = 0  # out of the gateway, into the sandbox: answer bodies from MLflow
    # The first 20 refusals, "METHOD /path: reason".
    refusals: list[str] = field(default_factory=list)


class Refused(Exception):
    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


def denied(message: str) -> Refused:
    return Refused(403, "PERMISSION_DENIED", message)


def exhausted(message: str) -> Refused:
    # 413, not 429: MLflow's client retries 429 for minutes.
    return Refused(413, "RESOURCE_EXHAUSTED", message)


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def json_object(body: bytes) -> dict:
    # Parsed as MLflow parses it (json.loads), so both read the same message.
    try:
        message = json.loads(body or b"{}")
    except (UnicodeDecodeError, ValueError):
        message = None
    if not isinstance(message, dict):
        raise Refused(422, "INVALID_PARAMETER_VALUE", "the body must be a JSON object")
    return message


def refuse_submission_tag_changes(body: bytes) -> None:
    message = json_object(body)
    tags = message.get("tags") if isinstance(message.get("tags"), list) else []
    keys = [
        message.get("key"),
        *(tag.get("key") for tag in tags if isinstance(tag, dict)),
    ]
    if SUBMISSION_TAG in keys:
        raise denied(f"the {SUBMISSION_TAG} tag is set by the platform")


def json_error(status: int, error_code: str, message: str) -> web.Response:
    return web.json_response({"error_code": error_code, "message": message}, status=status)
