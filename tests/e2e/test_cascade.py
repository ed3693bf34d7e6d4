"""Cascade routing end to end through both official SDKs: the cheap candidate (the OpenAI fake's
`conf-<p>` models, real-shaped logprobs) answers first; unsure (0.41 < 0.6), the request goes to
`claude` (the Anthropic fake, large), sure (0.9), its own answer is kept. The client receives only the
final answer, without logprobs it did not ask for."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.e2e.gateway_harness import GREETINGS, Gateway

HELLO = [{"role": "user", "content": "Say hello to the gateway"}]
CHEAP = "tok0 tok1 tok2 tok3 tok4 tok5"
ESCALATED = "cascade=escalated; conf=0.41<0.60"
KEPT = "cascade=kept; conf=0.90>=0.60"


def _cheap_calls(gateway: Gateway, before: int) -> list[dict]:
    return [
        r.body
        for r in gateway.openai_requests[before:]
        if r.body and r.body.get("model", "").startswith("conf-")
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_escalated(client: openai.OpenAI, gateway: Gateway, stream: bool) -> None:
    before = len(gateway.openai_requests)
    raw = client.chat.completions.with_raw_response.create(
        model="auto-cascade-unsure", messages=HELLO, stream=stream
    )
    assert ESCALATED in raw.headers["x-switchyard-route"]
    assert raw.headers["x-switchyard-model"] == "claude"
    if stream:
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert all(c.choices[0].logprobs is None for c in chunks if c.choices)
    else:
        answer = raw.parse()
        text = answer.choices[0].message.content
        assert answer.choices[0].logprobs is None
    assert text == GREETINGS["claude"]
    assert [b["logprobs"] for b in _cheap_calls(gateway, before)] == [True]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_kept(client: openai.OpenAI, stream: bool) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto-cascade-sure", messages=HELLO, stream=stream
    )
    assert KEPT in raw.headers["x-switchyard-route"]
    assert raw.headers["x-switchyard-model"] == "cascade-sure"
    if stream:
        chunks = list(raw.parse())
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == CHEAP
        assert all(c.choices[0].logprobs is None for c in chunks if c.choices)
    else:
        answer = raw.parse()
        assert answer.choices[0].message.content == CHEAP and answer.choices[0].logprobs is None


def test_openai_sdk_client_logprobs_are_the_kept_answers(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="auto-cascade-sure", messages=HELLO, logprobs=True, top_logprobs=3
    )
    tokens = answer.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == CHEAP
    assert all(len(t.top_logprobs) == 3 and t.bytes == list(t.token.encode()) for t in tokens)
    assert sum(2.718281828459045**t.logprob for t in tokens) / len(tokens) == pytest.approx(0.9)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_escalated(claude_client: anthropic.Anthropic, gateway: Gateway, stream: bool) -> None:
    before = len(gateway.openai_requests)
    if stream:
        with claude_client.messages.stream(
            model="auto-cascade-unsure", max_tokens=64, messages=HELLO
        ) as events:
            text = "".join(events.text_stream)
            headers = events.response.headers
    else:
        raw = claude_client.messages.with_raw_response.create(
            model="auto-cascade-unsure", max_tokens=64, messages=HELLO
        )
        headers, text = raw.headers, raw.parse().content[0].text
    assert ESCALATED in headers["x-switchyard-route"] and headers["x-switchyard-model"] == "claude"
    assert text == GREETINGS["claude"]
    assert [b["logprobs"] for b in _cheap_calls(gateway, before)] == [True]


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_kept(claude_client: anthropic.Anthropic, stream: bool) -> None:
    if stream:
        with claude_client.messages.stream(
            model="auto-cascade-sure", max_tokens=64, messages=HELLO
        ) as events:
            text = "".join(events.text_stream)
            headers = events.response.headers
            usage = events.get_final_message().usage
    else:
        raw = claude_client.messages.with_raw_response.create(
            model="auto-cascade-sure", max_tokens=64, messages=HELLO
        )
        message = raw.parse()
        headers, text, usage = raw.headers, message.content[0].text, message.usage
    assert KEPT in headers["x-switchyard-route"] and headers["x-switchyard-model"] == "cascade-sure"
    assert text == CHEAP and usage.output_tokens == 6
