"""The Responses door when its upstream answers 200 with something that is not a Response: the client
gets an OpenAI error or a stream that ends in `response.failed`, never a 500 or a hang, and the request
is recorded with a status that says what happened, billed from what the gateway counted itself.

The faults are the OpenAI fake's malformed 200s (`tests.fakes.responses_faults`), served natively by
the `native-<fault>` deployments; `die-midstream` is a chat upstream that drops the connection."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.e2e.gateway_harness import Gateway, error_of


def _request_id(resp: httpx.Response) -> str:
    rid = resp.headers["x-switchyard-request-id"]
    assert rid.startswith("req_")
    return rid


@pytest.mark.parametrize("fault", ["resp-not-json", "resp-list", "resp-no-output"])
def test_a_200_that_is_not_a_response_is_a_502(raw: httpx.Client, gateway: Gateway, fault: str) -> None:
    resp = raw.post("/v1/responses", json={"model": f"native-{fault}", "input": "Say hello to me"})
    assert resp.status_code == 502, resp.text
    error = error_of(resp)
    assert error["type"] == "api_error", error  # as the chat doors answer a malformed 200
    row = gateway.record(_request_id(resp))
    assert row.status == 502 and (row.prompt_tokens, row.completion_tokens) == (0, 0)
    assert not row.cost_usd


def test_usage_that_is_not_token_counts_is_counted_not_billed(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    raw = client.responses.with_raw_response.create(model="native-resp-bad-usage", input="Say hello to me")
    resp = raw.parse()
    # The body is the upstream's, usage included, as the chat doors pass theirs; only the bill is ours.
    assert resp.output_text == "Hello from openai!"
    row = gateway.record(_request_id(raw.http_response))
    assert row.status == 200 and row.tokens_estimated
    assert 0 < row.prompt_tokens < 100 and 0 < row.completion_tokens < 100


def test_streamed_usage_that_is_not_token_counts_is_counted(client: openai.OpenAI, gateway: Gateway) -> None:
    raw = client.responses.with_raw_response.create(
        model="native-resp-bad-usage", input="Say hello to me", stream=True
    )
    events = list(raw.parse())
    assert events[-1].type == "response.completed"
    row = gateway.record(_request_id(raw.http_response))
    assert row.status == 200 and row.tokens_estimated
    assert 0 < row.prompt_tokens < 100 and 0 < row.completion_tokens < 100


def test_a_stream_that_opens_with_an_error_is_an_error(client: openai.OpenAI, gateway: Gateway) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(model="native-resp-error-first", input="Say hello to me", stream=True)
    assert caught.value.status_code >= 500
    assert "boom" in caught.value.message
    row = gateway.record(_request_id(caught.value.response))
    assert row.status == caught.value.status_code and row.completion_tokens == 0


@pytest.mark.parametrize(
    ("fault", "kinds"),
    [
        ("resp-failed-first", ["response.failed"]),
        ("resp-error-midstream", ["error", "response.failed"]),
        ("resp-no-completed", ["error", "response.failed"]),
        ("resp-garbage-event", ["error", "response.failed"]),
    ],
)
def test_a_stream_that_breaks_ends_in_response_failed(
    client: openai.OpenAI, gateway: Gateway, fault: str, kinds: list[str]
) -> None:
    raw = client.responses.with_raw_response.create(
        model=f"native-{fault}", input="Say hello to me", stream=True
    )
    events = list(raw.parse())
    assert [e.type for e in events[-len(kinds) :]] == kinds, [e.type for e in events]
    assert [e.type for e in events].count("error") == kinds.count("error"), "one error event, not two"
    assert events[-1].response.status == "failed"  # type: ignore[union-attr]
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
    row = gateway.record(_request_id(raw.http_response))
    assert row.status == 502, (row.status, row.error_type)


def test_a_translated_stream_that_drops_ends_in_response_failed(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    raw = client.responses.with_raw_response.create(
        model="die-midstream", input="Say hello to me", stream=True
    )
    events = list(raw.parse())
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1].response.status == "failed"  # type: ignore[union-attr]
    assert "Hello" in "".join(e.delta for e in events if e.type == "response.output_text.delta")
    row = gateway.record(_request_id(raw.http_response))
    assert row.status == 502 and row.completion_tokens > 0
