"""schemathesis against the gateway's own OpenAPI document (admin and /v1), on a real gateway and database.

Every operation gets EXAMPLES generated requests (positive and negative, derandomized so a failure
reproduces); `-m slow` runs SLOW_EXAMPLES. Checks: no 5xx, the status, content type and body each
declared in the document, and an answer within the client timeout (no hang).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.fuzz.fuzz_harness import AUTH, FuzzGateway

EXAMPLES = 30
SLOW_EXAMPLES = 300
TIMEOUT_S = 10.0
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="session")
def gateway_schema(fuzz_gateway: FuzzGateway) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(fuzz_gateway.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("gateway_schema")
_SETTINGS = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": list(HealthCheck),
}


def _call(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=TIMEOUT_S)


@schema.parametrize()
@settings(max_examples=EXAMPLES, **_SETTINGS)
def test_every_operation_answers_as_documented(case: schemathesis.Case) -> None:
    _call(case)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=SLOW_EXAMPLES, **_SETTINGS)
def test_every_operation_answers_as_documented_at_length(case: schemathesis.Case) -> None:
    _call(case)
