"""The conformance suite, chat and tools: completions, streams, system messages, JSON mode and tool-call
round trips, for every adapter of `conformance_matrix`."""

from __future__ import annotations

import json
from typing import Any

import orjson

from providers.base import UpstreamResponse
from tests.providers import conformance_matrix as matrix
from tests.providers.conformance_matrix import (
    USER,
    WEATHER_TOOL,
    Adapter,
    MakeProvider,
    assistant_echo,
    chat,
    check_chunk_framing,
    check_usage_tail,
    collect,
    finish_reasons,
    message_of,
    stream_text,
    stream_tool_calls,
)

# The shared fixtures, bound as module globals so that pytest finds them here.
adapter = matrix.adapter
make = matrix.make
_known_failures = matrix._known_failures


# ---------------------------------------------------------------- chat


async def test_chat_complete(make: MakeProvider) -> None:
    provider = make()
    resp = await provider.complete(chat(provider, [USER]))
    assert isinstance(resp, UpstreamResponse)
    assert orjson.loads(resp.body) == resp.data
    choice = resp.data["choices"][0]
    message = message_of(resp)
    assert message["role"] == "assistant"
    assert message["content"].startswith("Hello from ")
    assert choice["finish_reason"] == "stop"
    assert choice["index"] == 0
    assert resp.data.get("id")
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 3
    assert resp.usage.prompt_tokens == 4
    assert resp.data["usage"]["prompt_tokens"] == 4 and resp.data["usage"]["completion_tokens"] == 3


async def test_chat_stream(make: MakeProvider) -> None:
    provider = make()
    expected = message_of(await provider.complete(chat(provider, [USER])))["content"]
    chunks = await collect(provider.stream(chat(provider, [USER], stream=True)))
    check_chunk_framing(chunks)
    assert all(c.data.get("object") == "chat.completion.chunk" for c in chunks), [c.data for c in chunks]
    assert stream_text(chunks) == expected
    assert sum(1 for c in chunks if stream_text([c])) >= 2, "the answer arrived in one piece"
    assert finish_reasons(chunks) == ["stop"]
    usage = check_usage_tail(chunks)
    assert usage["completion_tokens"] == 3 and usage["prompt_tokens"] == 4


async def test_system_message(make: MakeProvider, adapter: Adapter) -> None:
    provider = make()
    before = len(adapter.recorded())
    messages = [{"role": "system", "content": "You are a terse pirate."}, USER]
    resp = await provider.complete(chat(provider, messages))
    assert message_of(resp)["content"].startswith("Hello from ")
    assert resp.usage is not None and resp.usage.prompt_tokens == 9, "system text not counted upstream"
    sent = adapter.recorded()[before:]
    assert "You are a terse pirate." in json.dumps(sent, default=str)


async def test_json_mode(make: MakeProvider) -> None:
    provider = make()
    resp = await provider.complete(chat(provider, [USER], response_format={"type": "json_object"}))
    assert json.loads(message_of(resp)["content"]) == {"ok": True}


# ---------------------------------------------------------------- tools


async def test_tool_round_trip(make: MakeProvider) -> None:
    provider = make()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = await provider.complete(chat(provider, messages, tools=[WEATHER_TOOL]))
    choice = first.data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert first.usage is not None

    messages += [
        assistant_echo(choice["message"]),
        {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21C"},
    ]
    second = await provider.complete(chat(provider, messages, tools=[WEATHER_TOOL]))
    assert message_of(second)["content"] == "The tool said: Sunny, 21C"
    assert second.data["choices"][0]["finish_reason"] == "stop"


async def test_tool_call_stream(make: MakeProvider) -> None:
    provider = make()
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    chunks = await collect(provider.stream(chat(provider, messages, stream=True, tools=[WEATHER_TOOL])))
    check_chunk_framing(chunks)
    (call,) = stream_tool_calls(chunks)
    assert call["id"] and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert finish_reasons(chunks) == ["tool_calls"]
    check_usage_tail(chunks)


async def test_tool_choice_none(make: MakeProvider) -> None:
    provider = make()
    resp = await provider.complete(chat(provider, [USER], tools=[WEATHER_TOOL], tool_choice="none"))
    message = message_of(resp)
    assert message["content"].startswith("Hello from ") and not message.get("tool_calls")
