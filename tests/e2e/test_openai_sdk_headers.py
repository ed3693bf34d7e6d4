"""The gateway's own response headers as the `openai` SDK sees them: the routing decision
(`x-switchyard-route`, `x-switchyard-model`), the exact cost and the request id."""

from __future__ import annotations

from decimal import Decimal

import httpx
import openai
import pytest

from tests.e2e.gateway_harness import GREETINGS, expected_cost
from tests.e2e.openai_sdk_cases import HELLO, REQUEST_ID

# --------------------------------------------------------------------------- routing headers


def test_chat_through_a_route(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    resp = raw.parse()
    assert resp.choices[0].message.content == GREETINGS["gpt-4o-mini"]
    assert raw.headers["x-switchyard-model"] == "gpt-4o-mini"
    route = raw.headers["x-switchyard-route"]
    # The decision explains itself: tier, difficulty, per-tier success, the knob, the fallback ladder.
    for part in ("route=auto", "tier=small", "model=gpt-4o-mini", "difficulty=", "p=small:", "q=0.50"):
        assert part in route, route
    assert "fallback=claude" in route


def test_route_honours_the_min_tier_header(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, extra_headers={"x-switchyard-min-tier": "large"}
    )
    assert raw.headers["x-switchyard-model"] == "claude"
    assert "pins=" in raw.headers["x-switchyard-route"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="auto", messages=HELLO, extra_headers={"x-switchyard-min-tier": "huge"}
        )


# --------------------------------------------------------------------------- response headers


def _check_headers(headers: httpx.Headers, deployment: str, *, cost: str | None = None) -> None:
    assert REQUEST_ID.match(headers["x-switchyard-request-id"]), headers
    assert headers["x-switchyard-model"] == deployment
    assert headers["x-switchyard-route"]
    assert "x-switchyard-cost-usd" in headers
    if cost is not None:
        assert headers["x-switchyard-cost-usd"] == cost


def test_cost_header_is_exact(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "one two three four five"}]
    raw = client.chat.completions.with_raw_response.create(model="priced", messages=messages)
    resp = raw.parse()
    usage = resp.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 3)
    expected = expected_cost(usage.prompt_tokens, usage.completion_tokens)
    assert expected == Decimal("0.000011")
    assert raw.headers["x-switchyard-cost-usd"] == "0.000011"
    assert Decimal(raw.headers["x-switchyard-cost-usd"]) == expected
    _check_headers(raw.headers, "priced")
    assert raw.headers["x-switchyard-route"] == "direct"


def test_headers_on_every_proxied_endpoint(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="claude", messages=HELLO)
    _check_headers(raw.headers, "claude")
    raw = client.chat.completions.with_raw_response.create(model="gemini", messages=HELLO)
    _check_headers(raw.headers, "gemini")
    raw = client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="hi there")
    _check_headers(raw.headers, "gpt-3.5-turbo-instruct")
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="one two")
    # prompt 2 tokens at 0.15 USD / Mtok
    _check_headers(raw.headers, "text-embedding-3-small", cost="0.0000003")
    with client.chat.completions.with_streaming_response.create(
        model="priced", messages=HELLO, stream=True
    ) as streamed:
        _check_headers(streamed.headers, "priced")
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)


def test_request_ids_are_unique(client: openai.OpenAI) -> None:
    ids = {
        client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO).headers[
            "x-switchyard-request-id"
        ]
        for _ in range(3)
    }
    assert len(ids) == 3
