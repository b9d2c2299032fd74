"""Schemathesis against the gateway's own OpenAPI schema: no 5xx, answers as documented.

The schema comes from ``create_app().openapi()`` (no Redis needed to build it) and is
checked to be the one a running gateway serves. The request/response routes go through
schemathesis's full checks. ``/sse`` never ends, so its fuzzed requests (schema-valid and
schema-violating) are sent here with a stream open: a 200 must start an event stream (read
up to its opening frame, then closed), anything else must be a documented JSON error.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from gateway.http.app import create_app
from gateway.settings import GatewaySettings
from tests.support.processes import GatewayProcess
from tests.support.standalone import standalone_gateway

SCHEMA = schemathesis.openapi.from_dict(create_app(GatewaySettings()).openapi())
FUZZ_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def mode(case: schemathesis.Case) -> GenerationMode | None:
    return case.meta.generation.mode if case.meta is not None else None


@pytest.fixture(scope="module")
def fuzz_gateway() -> Iterator[GatewayProcess]:
    with standalone_gateway() as (gateway, _):
        yield gateway


def test_the_fuzzed_schema_is_the_one_the_gateway_serves(fuzz_gateway: GatewayProcess) -> None:
    served = httpx.get(f"{fuzz_gateway.base_url}/openapi.json", timeout=10).json()
    assert served == SCHEMA.raw_schema


@SCHEMA.exclude(path="/sse").parametrize()
@FUZZ_SETTINGS
def test_routes_answer_fuzzed_requests_as_documented_and_never_5xx(
    case: schemathesis.Case, fuzz_gateway: GatewayProcess
) -> None:
    case.call_and_validate(base_url=fuzz_gateway.base_url, timeout=10)


SSE = SCHEMA["/sse"]["GET"]


@given(
    case=st.one_of(
        SSE.as_strategy(GenerationMode.POSITIVE), SSE.as_strategy(GenerationMode.NEGATIVE)
    )
)
@settings(FUZZ_SETTINGS, max_examples=120)
def test_sse_answers_fuzzed_requests_with_a_stream_or_a_documented_error(
    case: schemathesis.Case, fuzz_gateway: GatewayProcess
) -> None:
    # Sent with requests, schemathesis's own transport, so that odd values (objects,
    # nulls) are serialised into the query exactly as schemathesis means them.
    request = case.as_transport_kwargs(base_url=fuzz_gateway.base_url)
    with requests.request(**request, stream=True, timeout=10) as streamed:
        assert streamed.status_code < 500, streamed.text
        if streamed.status_code == 200:
            # The stream never ends: judge it by its headers and its opening frame.
            body = next(streamed.iter_content(chunk_size=None))
            assert body.startswith(b"retry: "), body[:200]
        else:
            body = streamed.content
    sent = streamed.request
    response = httpx.Response(
        streamed.status_code,
        headers=dict(streamed.headers),
        content=body,
        request=httpx.Request(sent.method or "GET", sent.url or "", headers=dict(sent.headers)),
    )
    response.elapsed = streamed.elapsed
    # The channel limit is a setting (SSE_MAX_CHANNELS), so the schema states it in words and
    # not as maxItems: a schema-valid request may be refused for that reason and no other.
    # Negative cases are still sent for what they are (hostile input: no 5xx, documented
    # errors), but not judged by acceptance: on the wire every query value is a string, so
    # a "negative" one-item array or boolean often reads as a valid channel or cursor.
    case.validate_response(
        response, excluded_checks=[positive_data_acceptance, negative_data_rejection]
    )
    if mode(case) is GenerationMode.POSITIVE and response.status_code != 200:
        assert response.json()["error"]["code"] == "too_many_channels", response.text
