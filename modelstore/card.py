"""The model card: validated against the JSON Schema the project ships (schema/m2d-model.schema.json),
merged from the released `m2d-model.json` and what the registration sends."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from django.conf import settings
from jsonschema import Draft202012Validator

from .errors import InvalidCard, InvalidRequest

SCHEMA_PATH = Path(__file__).with_name("schema") / "m2d-model.schema.json"
CARD_FILE = "m2d-model.json"
MLMODEL = "MLmodel"  # the entrypoint of an MLflow pyfunc folder
DEFAULT_INTENDED_USE = "research use only"


@cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@cache
def _validator() -> Draft202012Validator:
    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema())


def max_bytes() -> int:
    return settings.M2D_MODEL_CARD_MAX_BYTES


def refuse_url_fields(value, where: str = "the request") -> None:
    """Models are registered from released files only: a `url` anywhere says someone expects the
    store to fetch something, and it never does."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "url":
                raise InvalidRequest(
                    f"{where} has a 'url' field; models are registered only from released files of your "
                    "submission: send source.submission and source.paths instead."
                )
            refuse_url_fields(item, where)
    elif isinstance(value, list):
        for item in value:
            refuse_url_fields(item, where)


def parse_card_file(data: bytes) -> dict:
    if len(data) > max_bytes():
        raise InvalidCard(f"{CARD_FILE} has {len(data):,} bytes; a card may have at most {max_bytes():,}.")
    try:
        card = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidCard(f"{CARD_FILE} is not valid JSON ({exc}); fix it and release the folder again.") from exc
    if not isinstance(card, dict):
        raise InvalidCard(f"{CARD_FILE} must hold a JSON object, not {type(card).__name__}.")
    return card


def merged(from_file: dict | None, from_request: dict | None) -> dict:
    """The released card with the request's fields on top (objects merged key by key)."""

    def merge(base: dict, top: dict) -> dict:
        out = dict(base)
        for key, value in top.items():
            out[key] = merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
        return out

    return merge(from_file or {}, from_request or {})


def validated(card: dict) -> dict:
    """The card with its defaults, or InvalidCard naming each field to fix."""
    if not isinstance(card, dict):
        raise InvalidCard("The card must be a JSON object.")
    refuse_url_fields(card, "the card")
    size = len(json.dumps(card).encode())
    if size > max_bytes():
        raise InvalidCard(f"The card has {size:,} bytes of JSON; keep it under {max_bytes():,}.")
    problems = sorted(_validator().iter_errors(card), key=lambda e: list(e.absolute_path))
    if problems:
        described = "; ".join(
            f"{'/'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}" for e in problems[:10]
        )
        raise InvalidCard(f"The model card does not match {SCHEMA_PATH.name}: {described}.")
    card = dict(card)
    card.setdefault("intended_use", DEFAULT_INTENDED_USE)
    return card


def check_entrypoint(card: dict, paths: set[str]) -> None:
    """An MLflow pyfunc version has its MLmodel among the registered files, and a folder that is
    one is served as one only when the card says so."""
    entrypoint = card.get("entrypoint")
    if entrypoint == MLMODEL and MLMODEL not in paths:
        raise InvalidCard(
            "The card's entrypoint is MLmodel, but no MLmodel file is at the top of what you register: "
            "register the folder mlflow.<flavor>.save_model wrote (e.g. model/)."
        )
    if entrypoint is None and MLMODEL in paths and "predict.py" not in paths:
        raise InvalidCard(
            'These files are an MLflow model (MLmodel) without a predict.py: set "entrypoint": "MLmodel" '
            "in m2d-model.json (or in the card you send) to serve it with mlflow.pyfunc."
        )
