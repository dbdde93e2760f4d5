"""The API fuzzed from its own OpenAPI schema (schemathesis): whatever a client sends, no 5xx,
and every answer is one the schema documents (status code, content type, body)."""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.schemas import APIOperation

from api.main import create_app
from devstack.stack import DevStack

OPERATIONS = [
    (method.upper(), path)
    for path, methods in create_app().openapi()["paths"].items()
    for method in methods
]
EXAMPLES = 50
"""Per operation: enough to reach every parameter's edges, bounded to keep `make test` quick.
(Order ids are generated, never a placed order's: ``GET /orders/{id}?wait=60`` is a 404 at
once, not a minute's wait. Linking operations to placed orders would need ``wait`` capped.)"""


@schemathesis.check
def strict_json(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """A JSON answer parses with a strict parser: no NaN or Infinity, which Python's parser
    takes from a request and its encoder would write back into an error."""
    if response.headers.get("content-type", [""])[0].startswith("application/json"):
        json.loads(response.text, parse_constant=_not_json)


def _not_json(constant: str) -> None:
    raise AssertionError(f"the body is not strict JSON: it holds {constant}")


CHECKS = [
    strict_json,
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
]
"""Every check but "schema-valid data is accepted": some rules are beyond JSON Schema (a cursor
is opaque; control characters are refused in free text; a country code is trimmed and
upper-cased before its pattern applies), so such requests rightly get a 422 naming the field."""


@pytest.fixture(scope="module")
def api_schema(dev_stack: DevStack) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{dev_stack.api_url}/openapi.json")


@pytest.fixture(scope="module")
def auth_api_schema(anonymous: httpx.Client) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{anonymous.base_url}/openapi.json")


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_generated_request_gets_an_answer_the_schema_allows(
    api_schema: schemathesis.BaseSchema, as_operator: dict[str, str], method: str, path: str
) -> None:
    # As the operator, so that operator actions get past the token to the code behind it.
    fuzz(api_schema[path][method], as_operator)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_without_a_token_every_answer_is_one_the_schema_allows(
    auth_api_schema: schemathesis.BaseSchema, method: str, path: str
) -> None:
    """The API requiring tokens, called with none: its 401s (and their WWW-Authenticate) and
    the public routes' answers, as documented."""
    fuzz(auth_api_schema[path][method], {}, examples=EXAMPLES // 5)


def fuzz(operation: APIOperation, headers: dict[str, str], examples: int = EXAMPLES) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answered_as_documented(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS, headers=headers)

    answered_as_documented()
