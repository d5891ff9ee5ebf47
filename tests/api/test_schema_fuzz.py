"""Every operation of the OpenAPI schema, called with generated inputs, never answers a server error
and answers in the shape the schema promises."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from m2d.wsgi import application

pytestmark = pytest.mark.services

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)


@pytest.fixture
def researcher_token(make_researcher, row):
    from accounts.services import api_token_create

    researcher = make_researcher()
    row(researcher.user)
    row(researcher.user, status="succeeded", metrics={"loss": 0.5})
    return api_token_create(by=researcher.user).key


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, researcher_token):
    case.call_and_validate(
        headers={"Authorization": f"Token {researcher_token}"},
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
    )
