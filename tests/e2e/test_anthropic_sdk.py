"""The official `anthropic` SDK pointed at the gateway: native passthrough to the Anthropic-backed
deployment, and translation to and from the OpenAI shape for the others."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.gateway_harness import CLAUDE_WEATHER_TOOL, GREETINGS, MASTER_KEY, Gateway

HELLO = [{"role": "user", "content": "Say hello to the gateway"}]
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
# native: the anthropic fake behind `claude`; translated: the openai fake / gemini fake
BACKENDS = ["claude", "gpt-4o-mini", "gemini"]


def _headers_ok(headers: httpx.Headers, deployment: str) -> None:
    assert headers["x-switchyard-request-id"].startswith("req_")
    assert headers["x-switchyard-model"] == deployment
    assert headers["x-switchyard-route"]
    assert "x-switchyard-cost-usd" in headers


@pytest.mark.parametrize("model", BACKENDS)
def test_messages_create(claude_client: anthropic.Anthropic, model: str) -> None:
    raw = claude_client.messages.with_raw_response.create(model=model, max_tokens=64, messages=HELLO)
    _headers_ok(raw.headers, model)
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == GREETINGS[model]
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == 3
    assert msg.usage.input_tokens >= 1


def test_routed_messages_read_like_their_openai_twin(
    claude_client: anthropic.Anthropic, client: openai.OpenAI
) -> None:
    """The router sees an Anthropic request as its OpenAI translation: the top-level system prompt and
    the content blocks weigh as they would in chat completions, so both explain the same decision."""
    system = "You are a meticulous tax accountant. Cite the relevant statute for every claim."
    question = "Can I deduct a home office if I also rent a desk at a coworking space?"
    raw = claude_client.messages.with_raw_response.create(
        model="auto",
        max_tokens=64,
        system=system,
        messages=[{"role": "user", "content": [{"type": "text", "text": question}]}],
    )
    twin = client.chat.completions.with_raw_response.create(
        model="auto",
        max_tokens=64,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
    )
    route = raw.headers["x-switchyard-route"]
    assert "difficulty=" in route
    assert route == twin.headers["x-switchyard-route"]


def test_messages_native_passthrough(claude_client: anthropic.Anthropic, gateway: Gateway) -> None:
    before = len(gateway.anthropic_requests)
    msg = claude_client.messages.create(
        model="claude",
        max_tokens=64,
        system="You are terse.",
        messages=HELLO,
        stop_sequences=["ZZZ"],
        metadata={"user_id": "e2e-user"},
        # fields this SDK version no longer names still reach the upstream untouched
        extra_body={"temperature": 0.3, "top_k": 5},
    )
    assert msg.content[0].text == GREETINGS["claude"]
    [sent] = [r["body"] for r in gateway.anthropic_requests[before:]]
    assert sent["model"] == "claude-upstream"
    assert sent["system"] == "You are terse."
    assert sent["messages"] == HELLO
    assert (sent["max_tokens"], sent["temperature"], sent["top_k"]) == (64, 0.3, 5)
    assert sent["stop_sequences"] == ["ZZZ"]
    assert sent["metadata"] == {"user_id": "e2e-user"}
    # the gateway authenticates upstream with its own key, never the client's
    headers = gateway.anthropic_requests[before]["headers"]
    assert headers.get("x-api-key") == "sk-ant-upstream"
    assert MASTER_KEY not in str(headers)


def test_messages_translated_reaches_openai_upstream(
    claude_client: anthropic.Anthropic, gateway: Gateway
) -> None:
    before = len(gateway.openai_requests)
    msg = claude_client.messages.create(
        model="gpt-4o-mini", max_tokens=64, system="Be brief.", messages=HELLO
    )
    assert msg.content[0].text == GREETINGS["gpt-4o-mini"]
    assert msg.model == "gpt-4o-mini"
    [sent] = [r.body for r in gateway.openai_requests[before:]]
    assert sent["model"] == "gpt-4o-mini-upstream"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][-1]["role"] == "user"


def test_messages_translated_parameters(claude_client: anthropic.Anthropic, gateway: Gateway) -> None:
    before = len(gateway.openai_requests)
    msg = claude_client.messages.create(
        model="gpt-4o-mini",
        max_tokens=50,
        messages=ASK_WEATHER,
        stop_sequences=["STOP"],
        tools=[CLAUDE_WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        metadata={"user_id": "u-42"},
        extra_body={"temperature": 0.5, "top_p": 0.9},
    )
    assert msg.stop_reason == "tool_use"
    [sent] = [r.body for r in gateway.openai_requests[before:]]
    assert sent["model"] == "gpt-4o-mini-upstream"
    assert sent["max_tokens"] == 50 or sent.get("max_completion_tokens") == 50
    assert sent["stop"] == ["STOP"]
    assert (sent["temperature"], sent["top_p"]) == (0.5, 0.9)
    assert sent["user"] == "u-42"
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    [tool] = sent["tools"]
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "get_weather"
    assert tool["function"]["parameters"] == CLAUDE_WEATHER_TOOL["input_schema"]


@pytest.mark.parametrize("model", BACKENDS)
def test_messages_stream_usage(claude_client: anthropic.Anthropic, model: str) -> None:
    # the fakes count words: "Say hello to the gateway" is 5 input tokens; every answer is 3 tokens
    with claude_client.messages.stream(model=model, max_tokens=64, messages=HELLO) as stream:
        final = stream.get_final_message()
    assert (final.usage.input_tokens, final.usage.output_tokens) == (5, 3)


@pytest.mark.parametrize("model", BACKENDS)
def test_messages_stream(claude_client: anthropic.Anthropic, model: str) -> None:
    with claude_client.messages.stream(model=model, max_tokens=64, messages=HELLO) as stream:
        _headers_ok(stream.response.headers, model)
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == GREETINGS[model]
    assert final.content[0].type == "text"
    assert final.content[0].text == GREETINGS[model]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3


def test_messages_raw_stream_events(claude_client: anthropic.Anthropic) -> None:
    for model in ("claude", "gpt-4o-mini"):
        events = list(claude_client.messages.create(model=model, max_tokens=64, messages=HELLO, stream=True))
        kinds = [e.type for e in events]
        assert kinds[0] == "message_start"
        assert kinds[-1] == "message_stop"
        assert "message_delta" in kinds
        assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 1


def _tool_result_turns(first: Any) -> list[dict[str, Any]]:
    [use] = [b for b in first.content if b.type == "tool_use"]
    return [
        *ASK_WEATHER,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
        },
    ]


@pytest.mark.parametrize("model", BACKENDS)
def test_tools_round_trip(claude_client: anthropic.Anthropic, model: str) -> None:
    first = claude_client.messages.create(
        model=model, max_tokens=128, messages=ASK_WEATHER, tools=[CLAUDE_WEATHER_TOOL]
    )
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.id
    assert use.input == {"city": "Paris"}

    final = claude_client.messages.create(
        model=model, max_tokens=128, messages=_tool_result_turns(first), tools=[CLAUDE_WEATHER_TOOL]
    )
    assert final.stop_reason == "end_turn"
    assert "".join(b.text for b in final.content if b.type == "text") == "The tool said: sunny"


@pytest.mark.parametrize("model", BACKENDS)
def test_tools_round_trip_streamed(claude_client: anthropic.Anthropic, model: str) -> None:
    with claude_client.messages.stream(
        model=model, max_tokens=128, messages=ASK_WEATHER, tools=[CLAUDE_WEATHER_TOOL]
    ) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather"
    assert use.input == {"city": "Paris"}

    with claude_client.messages.stream(
        model=model, max_tokens=128, messages=_tool_result_turns(first), tools=[CLAUDE_WEATHER_TOOL]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "The tool said: sunny"
    assert final.stop_reason == "end_turn"


# --------------------------------------------------------------------------- errors


def test_wrong_key_is_authentication_error(gateway: Gateway) -> None:
    bad = anthropic.Anthropic(base_url=gateway.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        bad.messages.create(model="claude", max_tokens=16, messages=HELLO)
    assert err.value.status_code == 401
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "authentication_error"


def test_missing_key_is_401_in_anthropic_shape(gateway: Gateway) -> None:
    resp = httpx.post(
        gateway.url + "/v1/messages",
        json={"model": "claude", "max_tokens": 16, "messages": HELLO},
        headers={"anthropic-version": "2023-06-01"},
    )
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"


def test_unknown_model_is_not_found(claude_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as err:
        claude_client.messages.create(model="no-such-model", max_tokens=16, messages=HELLO)
    assert err.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        claude_client.messages.create(model="no-such-model", max_tokens=16, messages=HELLO, stream=True)


def test_missing_max_tokens_is_bad_request(claude_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        claude_client.post(
            "/v1/messages", body={"model": "claude", "messages": HELLO}, cast_to=httpx.Response
        )
    assert err.value.status_code == 400
    assert err.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in err.value.body["error"]["message"]


def test_bad_messages_is_bad_request(claude_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError):
        claude_client.messages.create(model="gpt-4o-mini", max_tokens=16, messages=[])


def test_upstream_errors_keep_anthropic_shape(claude_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as rate:
        claude_client.messages.create(model="fail-429", max_tokens=16, messages=HELLO)
    assert rate.value.body["error"]["type"] == "rate_limit_error"
    assert "retry-after" in rate.value.response.headers
    with pytest.raises(anthropic.InternalServerError):
        claude_client.messages.create(model="fail-500", max_tokens=16, messages=HELLO)


def test_malformed_json_is_400_in_anthropic_shape(gateway: Gateway) -> None:
    resp = httpx.post(
        gateway.url + "/v1/messages",
        content=b'{"model": "claude",',
        headers={"x-api-key": MASTER_KEY, "content-type": "application/json"},
    )
    assert resp.status_code == 400
    doc = resp.json()
    assert doc["type"] == "error" and doc["error"]["type"] == "invalid_request_error"
