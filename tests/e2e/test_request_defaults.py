"""A deployment's `defaults:` fill in what a request leaves out, on every door, and never override
what it says. Checked on what the fake upstreams received."""

from __future__ import annotations

import anthropic
import openai

from tests.e2e.gateway_harness import DEFAULTS, Gateway
from tests.e2e.openai_sdk_cases import HELLO, marker


def test_chat_without_sampling_fields_gets_the_deployments_defaults(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    tag = marker()
    client.chat.completions.create(model="defaulted", messages=HELLO, user=tag)
    [sent] = gateway.openai_sent(tag)
    assert {k: sent.get(k) for k in DEFAULTS} == DEFAULTS
    assert sent["model"] == "gpt-4o-mini"


def test_request_fields_win_over_defaults(client: openai.OpenAI, gateway: Gateway) -> None:
    tag = marker()
    client.chat.completions.create(
        model="defaulted", messages=HELLO, user=tag, temperature=1.5, max_completion_tokens=7
    )
    [sent] = gateway.openai_sent(tag)
    assert (sent["temperature"], sent["top_p"], sent["max_completion_tokens"]) == (1.5, 0.8, 7)
    assert "max_tokens" not in sent  # the request capped its output already, under the other name


def test_streamed_and_legacy_requests_get_defaults_too(client: openai.OpenAI, gateway: Gateway) -> None:
    tag = marker()
    list(client.chat.completions.create(model="defaulted", messages=HELLO, user=tag, stream=True))
    client.completions.create(model="defaulted", prompt="Say hello", user=tag, top_p=0.1)
    streamed, legacy = gateway.openai_sent(tag)
    assert {k: streamed.get(k) for k in DEFAULTS} == DEFAULTS
    assert streamed["stream_options"] == {"include_usage": True}
    assert (legacy["temperature"], legacy["top_p"], legacy["max_tokens"]) == (0.3, 0.1, 50)


def test_embeddings_get_no_sampling_defaults(client: openai.OpenAI, gateway: Gateway) -> None:
    tag = marker()
    client.embeddings.create(model="embed-defaulted", input="hello", user=tag)
    [sent] = gateway.openai_sent(tag)
    assert not set(DEFAULTS) & set(sent)


def test_messages_to_a_native_anthropic_deployment_get_its_defaults(
    claude_client: anthropic.Anthropic, gateway: Gateway
) -> None:
    before = len(gateway.anthropic_requests)
    claude_client.messages.create(model="claude-defaulted", max_tokens=64, messages=HELLO)
    claude_client.messages.create(
        model="claude-defaulted", max_tokens=64, messages=HELLO, extra_body={"temperature": 0.9}
    )
    first, second = [r["body"] for r in gateway.anthropic_requests[before:]]
    # max_tokens is required on this API, so the request's always wins.
    assert (first["temperature"], first["top_k"], first["max_tokens"]) == (0.4, 7, 64)
    assert (second["temperature"], second["top_k"]) == (0.9, 7)


def test_messages_translated_to_an_openai_deployment_get_its_defaults(
    claude_client: anthropic.Anthropic, gateway: Gateway
) -> None:
    before = len(gateway.openai_requests)
    claude_client.messages.create(model="defaulted", max_tokens=64, messages=HELLO)
    [sent] = [r.body for r in gateway.openai_requests[before:]]
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.3, 0.8, 64)
