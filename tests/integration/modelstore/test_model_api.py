"""The model store's management API on the real stack (database, export storage local and S3):
register from a release, describe, move the default, retire; every bad request refused with
nothing stored; what each researcher may see; token scopes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from modelstore import blobs
from modelstore.models import ModelEvent, ModelVersion

from .conftest import CARD, PREDICT, WEIGHTS, sha256, snapshot

MODELS = "/api/v1/models"


def register(client, submission, name="clam-malignancy", paths=("model/",), **extra):
    body = {"name": name, "source": {"submission": submission.pk, "paths": list(paths)}, **extra}
    return client.post(MODELS, body, format="json")


def test_register_describe_default_retire(store, approved, released, api):
    owner = approved["owner"]
    submission = released()
    client = api(owner)

    answer = register(client, submission, label="1.0", source_sha={})
    assert answer.status_code == 400 and answer.json()["type"] == "invalid_request"  # unknown field named
    answer = register(client, submission, label="1.0", card={"not_for": "screening without a radiologist"})
    assert answer.status_code == 201, answer.json()
    first = answer.json()
    assert answer["Location"] == "/api/v1/models/clam-malignancy/1"
    assert (first["name"], first["version"], first["label"], first["state"]) == (
        "clam-malignancy",
        1,
        "1.0",
        "registered",
    )
    assert first["aliases"] == ["default"]
    files = {f["path"]: f for f in first["files"]}
    assert sorted(files) == ["m2d-model.json", "predict.py", "weights.pt"]
    assert files["weights.pt"] == {"path": "weights.pt", "size": len(WEIGHTS), "sha256": sha256(WEIGHTS)}
    card = first["card"]
    # The released card, with the request's fields on top and the platform's facts filled in.
    assert card["entrypoint"] == "predict.py:Model" and [i["name"] for i in card["inputs"]] == [
        "LCC",
        "LMLO",
        "RCC",
        "RMLO",
    ]
    assert card["not_for"] == "screening without a radiologist" and card["intended_use"] == "research use only"
    assert card["training_data"]["submission"] == submission.pk
    assert card["training_data"]["fingerprint"] == submission.export.dataset_fingerprint
    assert first["metrics_source"] == "recorded after the run"
    assert first["provenance_url"].endswith(reverse("exports:provenance", args=[submission.pk]))
    # The bytes are in the store, by hash, and read from there (not from the export area).
    assert blobs.blob_key(sha256(WEIGHTS)) in blobs.stored_keys()
    assert blobs.read(blobs.blob_key(sha256(PREDICT)), 1000) == PREDICT

    second = register(client, released(), paths=["model/weights.pt", "model/predict.py"]).json()
    assert second["version"] == 2 and second["aliases"] == []
    assert sorted(f["path"] for f in second["files"]) == ["model/predict.py", "model/weights.pt"]

    listing = client.get(MODELS).json()
    assert listing["next_page_token"] is None
    assert listing["models"] == [
        {
            "name": "clam-malignancy",
            "owner": owner.username,
            "dataset": "clam",
            "task": "malignancy",
            "default_version": 1,
            "visibility": "private",
            "url": "http://testserver/api/v1/models/clam-malignancy",
        }
    ]
    described = client.get(f"{MODELS}/clam-malignancy").json()
    assert described["aliases"] == {"default": 1} and [v["version"] for v in described["versions"]] == [1, 2]
    assert [v["version"] for v in client.get(f"{MODELS}/clam-malignancy/all").json()] == [1, 2]
    assert client.get(f"{MODELS}/clam-malignancy/2").json()["files"] == second["files"]

    # The default goes last: 409 while another version is registered.
    refused = client.delete(f"{MODELS}/clam-malignancy/1")
    assert refused.status_code == 409 and refused.json()["type"] == "conflict"
    assert "make another version the default" in refused.json()["message"]
    answer = client.put(f"{MODELS}/clam-malignancy/2/set-default")
    assert answer.status_code == 200 and answer.json() == {"status": 'Default version of "clam-malignancy" is now 2'}
    assert client.put(f"{MODELS}/clam-malignancy/aliases/best", {"version": 1}, format="json").status_code == 200
    assert client.get(f"{MODELS}/clam-malignancy").json()["aliases"] == {"best": 1, "default": 2}
    # A version may be named by an alias wherever the API takes one.
    assert client.get(f"{MODELS}/clam-malignancy/best").json()["version"] == 1
    assert client.get(f"{MODELS}/clam-malignancy/default").json()["version"] == 2
    assert client.get(f"{MODELS}/clam-malignancy/nothing").status_code == 404
    assert client.put(f"{MODELS}/clam-malignancy/aliases/all", {"version": 1}, format="json").status_code == 400
    cannot = client.delete(f"{MODELS}/clam-malignancy/aliases/default")
    assert cannot.status_code == 409 and "only" not in cannot.json()["type"]
    assert client.delete(f"{MODELS}/clam-malignancy/1").json() == {"status": 'Version 1 of "clam-malignancy" retired'}
    retired = client.get(f"{MODELS}/clam-malignancy/1").json()
    assert retired["state"] == "retired" and retired["aliases"] == []  # free aliases go with it
    assert client.delete(f"{MODELS}/clam-malignancy/1").status_code == 409
    assert client.put(f"{MODELS}/clam-malignancy/1/set-default").status_code == 409
    # Files of a retired version stay, for audit.
    assert blobs.blob_key(sha256(PREDICT)) in blobs.stored_keys()
    # The default may go once it is the last one.
    assert client.delete(f"{MODELS}/clam-malignancy/2").status_code == 200

    trail = list(ModelEvent.objects.values_list("action", "by__username", "version__number"))
    assert trail == [
        ("registered", owner.username, 1),
        ("registered", owner.username, 2),
        ("default_set", owner.username, 2),
        ("alias_set", owner.username, 1),
        ("retired", owner.username, 1),
        ("retired", owner.username, 2),
    ]


def _card_too_big() -> dict:
    return {"summary": "x" * 2000, "warnings": ["y" * 2000] * 40}


REFUSALS = [
    # (what, request changes, status, type)
    ("bad name", {"name": "ClamModel"}, 400, "invalid_name"),
    ("name without hyphen", {"name": "clam"}, 400, "invalid_name"),
    ("parent path", {"paths": ["model/../scratch.bin"]}, 400, "invalid_path"),
    ("absolute path", {"paths": ["/etc/passwd"]}, 400, "invalid_path"),
    ("backslash path", {"paths": ["model\\weights.pt"]}, 400, "invalid_path"),
    ("url field", {"url": "https://example.org/model.mar"}, 400, "invalid_request"),
    ("url in the source", {"source_extra": {"url": "https://example.org/m.mar"}}, 400, "invalid_request"),
    ("url in the card", {"card": {"x-origin": {"url": "https://example.org"}}}, 400, "invalid_request"),
    ("invalid card", {"card": {"inputs": [{"name": "LCC", "datatype": "PNG"}]}}, 400, "invalid_card"),
    ("unknown card field", {"card": {"intended_uses": "typo"}}, 400, "invalid_card"),
    ("card over the cap", {"card": _card_too_big()}, 400, "invalid_card"),
    ("changed hash", {"sha256": {"model/weights.pt": "0" * 64}}, 400, "hash_mismatch"),
    ("held file", {"paths": ["scratch.bin"]}, 404, "not_found"),
    ("missing file", {"paths": ["model/nothing.pt"]}, 404, "not_found"),
    ("missing submission", {"submission": 10**9}, 404, "not_found"),
    ("bad visibility", {"visibility": "public"}, 400, "invalid_request"),
]


@pytest.mark.parametrize(("what", "change", "code", "kind"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_registrations_store_nothing(store, approved, released, api, what, change, code, kind):
    submission = released()
    client = api(approved["owner"])
    assert register(client, submission, name="clam-taken").status_code == 201
    before = snapshot()
    change = json.loads(json.dumps(change))  # the table is shared by the local and S3 runs
    source = {"submission": change.pop("submission", submission.pk), "paths": change.pop("paths", ["model/"])}
    if "sha256" in change:
        source["sha256"] = change.pop("sha256")
    source.update(change.pop("source_extra", {}))
    body = {"name": "clam-malignancy", "source": source, **change}
    answer = client.post(MODELS, body, format="json")
    assert (answer.status_code, answer.json()["type"]) == (code, kind), answer.json()
    assert answer.json()["code"] == code and len(answer.json()["message"]) > 20
    assert snapshot() == before


def test_refusals_of_ownership_release_and_conflict(store, approved, released, api, finished_submission):
    owner, other = approved["owner"], approved["other"]
    submission = released()
    client = api(owner)
    assert register(client, submission, label="v1").status_code == 201
    before = snapshot()
    # Another researcher's submission, and a name someone else owns.
    answer = register(api(other), submission, name="clam-other")
    assert (answer.status_code, answer.json()["type"]) == (403, "forbidden")
    answer = register(api(other), released(owner=other))
    assert (answer.status_code, answer.json()["type"]) == (409, "conflict")
    before = snapshot()
    # Nothing released yet.
    unreleased = finished_submission(owner, {"model/weights.pt": WEIGHTS})
    answer = register(client, unreleased, name="clam-early")
    assert (answer.status_code, answer.json()["type"]) == (403, "not_released")
    # The same label twice.
    answer = register(client, submission, label="v1")
    assert (answer.status_code, answer.json()["type"]) == (409, "conflict")
    assert snapshot() == before


def test_a_link_in_the_release_is_refused(store, approved, released, api, settings):
    if store != "local":
        pytest.skip("links exist only in a local export root")
    submission = released()
    target = settings.M2D_EXPORT_ROOT / str(submission.pk) / "model" / "weights.pt"
    target.unlink()
    target.symlink_to(settings.M2D_EXPORT_ROOT / str(submission.pk) / "notes.txt")
    before = snapshot()
    answer = register(api(approved["owner"]), submission)
    assert (answer.status_code, answer.json()["type"]) == (400, "invalid_path"), answer.json()
    assert "link" in answer.json()["message"]
    assert snapshot() == before


def test_bytes_changed_after_release_are_refused_and_nothing_kept(store, approved, released, api, settings):
    submission = released()
    entry = submission.export.entries.get(path="model/weights.pt")
    from exports import storage

    storage.export_storage().delete(entry.storage_key)
    storage.export_storage().save(entry.storage_key, __import__("io").BytesIO(b"swapped weights"))
    before = snapshot()
    answer = register(api(approved["owner"]), submission)
    assert (answer.status_code, answer.json()["type"]) == (400, "hash_mismatch"), answer.json()
    # The other files were copied before the bad one was met; they are gone again.
    assert snapshot() == before


VISIBILITY = [
    # visibility, (other approved researcher, signed-in outsider) sees it
    ("private", (False, False)),
    ("approved", (True, False)),
    ("signed_in", (True, True)),
]


@pytest.mark.parametrize(("visibility", "seen"), VISIBILITY)
def test_who_sees_a_model(store, approved, released, api, visibility, seen):
    owner, other, outsider, admin = approved["owner"], approved["other"], approved["outsider"], approved["admin2"]
    assert register(api(owner), released(), visibility=visibility).status_code == 201
    # The outsider is signed in but not an approved researcher: no token, a browser session.
    browser = APIClient()
    browser.force_login(outsider)
    clients = [api(other), browser]
    for client, sees in zip(clients, seen, strict=True):
        listing = client.get(MODELS).json()["models"]
        assert [m["name"] for m in listing] == (["clam-malignancy"] if sees else [])
        for path in ("clam-malignancy", "clam-malignancy/1", "clam-malignancy/all", "clam-malignancy/default"):
            answer = client.get(f"{MODELS}/{path}")
            assert answer.status_code == (200 if sees else 404), path
            missing = client.get(f"{MODELS}/{path.replace('malignancy', 'nothing')}")
            if not sees:  # invisible answers exactly like missing
                assert answer.json()["type"] == missing.json()["type"] == "model_not_found"
        # Seeing is not managing.
        answer = client.put(f"{MODELS}/clam-malignancy/1/set-default")
        assert answer.status_code == (403 if sees else 404)
        assert client.delete(f"{MODELS}/clam-malignancy/1").status_code == (403 if sees else 404)
    staff = APIClient()
    staff.force_login(admin)
    assert staff.get(f"{MODELS}/clam-malignancy").status_code == 200
    assert ModelVersion.objects.get().state == "registered"


def test_token_scopes(store, approved, released, api):
    owner = approved["owner"]
    submission = released()
    reader = api(owner, scopes=["models:read"])
    answer = register(reader, submission)
    assert (answer.status_code, answer.json()["type"]) == (403, "forbidden")
    assert "models:manage" in answer.json()["message"]
    manager = api(owner, scopes=["models:manage"])  # the reader's token stops working: one token each
    assert register(manager, submission).status_code == 201
    answer = manager.get(MODELS)
    assert (answer.status_code, answer.json()["type"]) == (403, "forbidden") and "models:read" in answer.json()[
        "message"
    ]
    assert api(owner, scopes=["predict"]).get(f"{MODELS}/clam-malignancy").status_code == 403
    everything = api(owner)
    assert everything.get(f"{MODELS}/clam-malignancy").status_code == 200
    # Submitting code needs no scope: tokens made before scopes went on working.
    no_scope = api(owner, scopes=[])
    assert no_scope.get("/api/v1/submissions/").status_code == 200
    from accounts.services import AccountError, api_token_create

    with pytest.raises(AccountError, match="Unknown token scope admin"):
        api_token_create(by=owner, scopes=["models:read", "admin"])
    assert no_scope.get("/api/v1/submissions/").status_code == 200  # the refusal left the token in use
    anonymous = APIClient()
    answer = anonymous.get(MODELS)
    assert (answer.status_code, answer.json()["type"]) == (401, "unauthenticated")


def test_paging_and_the_card_schema(store, approved, released, api):
    client = api(approved["owner"])
    submission = released()
    names = [f"clam-task{n}" for n in range(5)]
    for name in names:
        assert register(client, submission, name=name).status_code == 201
    seen, token = [], None
    while True:
        page = client.get(MODELS, {"limit": 2, **({"next_page_token": token} if token else {})}).json()
        seen += [m["name"] for m in page["models"]]
        token = page["next_page_token"]
        if token is None:
            break
        assert not token.isdigit()  # a cursor, not an offset
    assert seen == names
    huge = register(client, submission, name="clam-huge", card={"x-blob": "x" * 1024 * 1024})
    assert (huge.status_code, huge.json()["type"]) == (413, "body_too_large")
    assert client.get(MODELS, {"next_page_token": "garbage!"}).status_code == 400
    assert client.get(MODELS, {"limit": 0}).status_code == 400
    schema = client.get("/api/v1/model-card.schema.json")
    assert schema.status_code == 200 and json.loads(schema.content)["title"].startswith("M2D model card")
    assert CARD["entrypoint"] in json.dumps(client.get(f"{MODELS}/clam-task0/1").json())


def test_orphan_blobs_are_swept_and_referenced_ones_kept(store, approved, released, api):
    from io import BytesIO

    from modelstore.services import model_blobs_sweep

    assert register(api(approved["owner"]), released()).status_code == 201
    kept = blobs.stored_keys()
    orphan = blobs.blob_key("f" * 64)
    blobs.model_storage().save(orphan, BytesIO(b"left by a crash"))
    assert model_blobs_sweep() == []  # too young: it may be a registration's, copying now
    assert model_blobs_sweep(older_than=timedelta(0)) == [orphan]
    assert blobs.stored_keys() == kept


def test_search_filters_and_sorting_by_a_metric(store, approved, released):
    from modelstore.selectors import visible_models
    from modelstore.services import model_register

    owner = approved["owner"]
    for name, metrics in [("clam-low", {"auc": 0.61}), ("clam-high", {"auc": 0.93}), ("clam-none", {})]:
        submission = released()
        submission.metrics = metrics
        submission.save(update_fields=["metrics"])
        model_register(by=owner, submission=submission, paths=["model/"], name=name, visibility="signed_in")
    names = lambda models: [m.name for m in models]  # noqa: E731
    assert names(visible_models(owner, sort="-metric:auc")) == ["clam-high", "clam-low", "clam-none"]
    assert names(visible_models(owner, sort="metric:auc")) == ["clam-low", "clam-high", "clam-none"]
    assert names(visible_models(approved["other"], sort="-created")) == ["clam-none", "clam-high", "clam-low"]
    assert names(visible_models(owner, query="HIGH")) == ["clam-high"]
    assert names(visible_models(owner, query="four CLaM views", task="low")) == ["clam-low"]
    assert names(visible_models(owner, owner=approved["other"].username)) == []
    assert [m.default_version for m in visible_models(owner, dataset="clam")] == [1, 1, 1]
