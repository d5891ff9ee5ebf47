"""The model store's operations answer as the OpenAPI at /api/v1/schema/ says, on real data: each
operation is called with a model that exists (and, negatively, with generated inputs by
test_schema_fuzz), and every answer is checked against the schema."""

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from m2d.wsgi import application
from tests.conftest import make_zip
from tests.integration.modelstore import conftest as store_fixtures

export_storage, finished_submission, s3_server, users = (
    store_fixtures.export_storage,
    store_fixtures.finished_submission,
    store_fixtures.s3_server,
    store_fixtures.users,
)
store, approved, released, api = (
    store_fixtures.store,
    store_fixtures.approved,
    store_fixtures.released,
    store_fixtures.api,
)
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture
def token(store, approved, released):
    from accounts.services import api_token_create
    from modelstore.services import model_register

    owner = approved["owner"]
    submission = released()
    for _ in range(2):
        model_register(by=owner, submission=submission, paths=["model/"], name="clam-schema")
    model_register(by=owner, submission=submission, paths=["model/"], name="clam-other")
    token = api_token_create(by=owner).key
    return {"token": token, "submission": submission.pk}


JOB = "00000000-0000-4000-8000-000000000000"
CASES = {"cases": make_zip({"a.png": b"\x89PNG\r\n\x1a\n"}).getvalue()}
# (method, path, path parameters, body) in the order they can run against one model.
CALLS = [
    ("GET", "/api/v1/models", {}, None),
    ("GET", "/api/v1/model-card.schema.json", {}, None),
    ("POST", "/api/v1/models", {}, "register"),
    ("POST", "/api/v1/models", {}, "refused"),
    ("GET", "/api/v1/models/{name}", {"name": "clam-schema"}, None),
    ("GET", "/api/v1/models/{name}", {"name": "clam-nothing"}, None),
    ("GET", "/api/v1/models/{name}/all", {"name": "clam-schema"}, None),
    ("GET", "/api/v1/models/{name}/{version}", {"name": "clam-schema", "version": 2}, None),
    ("PUT", "/api/v1/models/{name}/{version}/set-default", {"name": "clam-schema", "version": 2}, None),
    (
        "PUT",
        "/api/v1/models/{name}/{version}",
        {"name": "clam-schema", "version": 2, "?": {"min_worker": 2, "max_worker": 1}},
        None,
    ),
    ("PUT", "/api/v1/models/{name}/{version}", {"name": "clam-schema", "version": 2, "?": {"min_worker": 0}}, None),
    ("PUT", "/api/v1/models/{name}/aliases/{alias}", {"name": "clam-schema", "alias": "best"}, {"version": 1}),
    ("PUT", "/api/v1/models/{name}/aliases/{alias}", {"name": "clam-schema", "alias": "best"}, {"version": 9}),
    ("GET", "/api/v1/models/{name}/{version}/predictions", {"name": "clam-schema", "version": 2}, None),
    ("POST", "/api/v1/models/{name}/{version}/batch-jobs", {"name": "clam-schema", "version": 2}, "cases"),
    (
        "GET",
        "/api/v1/models/{name}/{version}/batch-jobs/{job}",
        {"name": "clam-schema", "version": 2, "job": JOB},
        None,
    ),
    (
        "GET",
        "/api/v1/models/{name}/{version}/batch-jobs/{job}/results",
        {"name": "clam-schema", "version": 2, "job": JOB},
        None,
    ),
    ("DELETE", "/api/v1/models/{name}/aliases/{alias}", {"name": "clam-schema", "alias": "best"}, None),
    ("DELETE", "/api/v1/models/{name}/aliases/{alias}", {"name": "clam-schema", "alias": "default"}, None),
    ("DELETE", "/api/v1/models/{name}/{version}", {"name": "clam-schema", "version": 2}, None),
    ("DELETE", "/api/v1/models/{name}/{version}", {"name": "clam-schema", "version": 1}, None),
]


def test_model_operations_answer_as_documented(token, settings):
    settings.M2D_QUEUE_OPS = "schema-tests-start-no-workers"
    for method, path, parameters, body in CALLS:
        if body == "register":
            body = {"name": "clam-schema", "source": {"submission": token["submission"], "paths": ["model/"]}}
        elif body == "refused":
            body = {"name": "Bad Name", "source": {"submission": token["submission"], "paths": ["model/"]}}
        parameters = dict(parameters)
        kwargs = {"path_parameters": parameters, "query": parameters.pop("?", None)}
        if body == "cases":  # version 2 is scaled to 0 workers by now: 409
            kwargs.update(body=CASES, media_type="multipart/form-data")
        elif body is not None:
            kwargs.update(body=body, media_type="application/json")
        case = schema[path][method].Case(**kwargs)
        response = case.call_and_validate(headers={"Authorization": f"Token {token['token']}"}, checks=CHECKS)
        assert response.status_code < 500, (method, path, response.text[:300])
        if kwargs.get("media_type") == "multipart/form-data":
            assert response.json()["type"] == "not_deployed", response.text[:300]


def test_every_model_operation_is_documented():
    documented = {(method.upper(), path) for path, item in schema.raw_schema["paths"].items() for method in item}
    assert {(m, p) for m, p, _, _ in CALLS} <= documented
    assert sum(1 for _, p in documented if p.startswith("/api/v1/model")) == 15
