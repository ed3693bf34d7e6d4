"""AnthropicProvider against the fake Anthropic upstream over real loopback HTTP: the happy paths (chat,
streams, tools, usage), native /v1/messages passthrough, and the official SDK reading the fake."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import orjson
import pytest

from providers.anthropic import (
    ANTHROPIC_VERSION,
    AnthropicProvider,
    AnthropicStreamUsage,
    usage_from_anthropic,
)
from providers.base import UpstreamCall, UpstreamError, Usage
from tests.fakes.server import ServerThread
from tests.providers import anthropic_adapter_cases as cases
from tests.providers.anthropic_adapter_cases import chat, collect, make, requests_of

# The shared fixtures, bound as module globals so that pytest finds them here.
server = cases.server
provider = cases.provider

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}

# ------------------------------------------------------------------------------ happy paths


async def test_complete(provider: AnthropicProvider, server: ServerThread) -> None:
    result = await provider.complete(chat(temperature=0.3, user="u1", stream_options={"include_usage": True}))
    assert result.data["object"] == "chat.completion"
    assert result.data["choices"][0]["message"]["content"] == "Hello from anthropic!"
    assert result.data["choices"][0]["finish_reason"] == "stop"
    assert result.usage == Usage(prompt_tokens=3, completion_tokens=3, cached_tokens=0)
    assert orjson.loads(result.body) == result.data
    sent = requests_of(server)[-1]
    assert sent["headers"]["x-api-key"] == "sk-ant-test"
    assert sent["headers"]["anthropic-version"] == ANTHROPIC_VERSION
    assert sent["headers"]["x-team"] == "blue"
    assert sent["body"] == {
        "model": "claude-test",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "hello there world"}],
        "temperature": 0.3,
        "metadata": {"user_id": "u1"},
    }


@pytest.mark.parametrize("suffix", ["/", "/v1", "/v1/"])
async def test_api_base_with_or_without_v1(server: ServerThread, suffix: str) -> None:
    p = make(server.url + suffix)
    try:
        assert (await p.complete(chat())).data["choices"][0]["message"]["content"] == "Hello from anthropic!"
    finally:
        await p.aclose()


async def test_stream(provider: AnthropicProvider) -> None:
    call = chat(stream=True, stream_options={"include_usage": True})
    chunks = await collect(provider.stream(call))
    for chunk in chunks:
        assert chunk.raw == b"data: " + orjson.dumps(chunk.data) + b"\n\n"
    data = [c.data for c in chunks]
    assert len({(d["id"], d["created"], d["model"]) for d in data}) == 1
    assert data[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert (
        "".join(d["choices"][0]["delta"].get("content") or "" for d in data if d["choices"])
        == "Hello from anthropic!"
    )
    assert data[-2]["choices"][0]["finish_reason"] == "stop"
    assert data[-1]["choices"] == []
    assert Usage.from_openai(data[-1]["usage"]) == Usage(prompt_tokens=3, completion_tokens=3)


async def test_cache_usage_is_counted_once(provider: AnthropicProvider) -> None:
    # cached* models report input 3 + cache_read 10 + cache_creation 5.
    result = await provider.complete(chat(model="cached-model"))
    assert result.usage == Usage(
        prompt_tokens=18, completion_tokens=3, cached_tokens=10, cache_write_5m_tokens=5
    )
    assert result.data["usage"]["total_tokens"] == 21
    chunks = await collect(provider.stream(chat(model="cached-model", stream=True)))
    assert Usage.from_openai(chunks[-1].data["usage"]) == Usage(
        prompt_tokens=18, completion_tokens=3, cached_tokens=10, cache_write_5m_tokens=5
    )


async def test_tool_call_then_tool_result(provider: AnthropicProvider, server: ServerThread) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await provider.complete(
        UpstreamCall(body={"model": "m", "messages": messages, "tools": [WEATHER_TOOL]})
    )
    choice = first.data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}

    messages += [choice["message"], {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
    second = await provider.complete(
        UpstreamCall(
            body={"model": "m", "messages": messages, "tools": [WEATHER_TOOL], "tool_choice": "auto"}
        )
    )
    assert second.data["choices"][0]["message"]["content"] == "The tool said: sunny"
    sent = requests_of(server)[-1]["body"]["messages"]
    assert sent[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "sunny"}],
    }


async def test_stream_tool_call(provider: AnthropicProvider) -> None:
    call = UpstreamCall(
        body={
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [WEATHER_TOOL],
            "stream": True,
        }
    )
    data = [c.data for c in await collect(provider.stream(call))]
    pieces = [
        d["choices"][0]["delta"]["tool_calls"][0]
        for d in data
        if d["choices"] and "tool_calls" in d["choices"][0]["delta"]
    ]
    assert pieces[0]["id"].startswith("toolu_") and pieces[0]["function"]["name"] == "get_weather"
    assert "".join(p["function"]["arguments"] for p in pieces) == '{"city": "Paris"}'
    assert data[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_json_mode_and_stop_reasons(provider: AnthropicProvider) -> None:
    json_mode = await provider.complete(chat(response_format={"type": "json_object"}))
    assert orjson.loads(json_mode.data["choices"][0]["message"]["content"]) == {"ok": True}
    truncated = await provider.complete(chat(max_tokens=2))
    assert truncated.data["choices"][0]["finish_reason"] == "length"
    stopped = await provider.complete(chat(stop=" anthropic"))
    assert stopped.data["choices"][0]["message"]["content"] == "Hello from"
    assert stopped.data["choices"][0]["finish_reason"] == "stop"


async def test_client_headers_forwarded_but_never_credentials(
    provider: AnthropicProvider, server: ServerThread
) -> None:
    call = chat()
    call.headers = {
        "anthropic-beta": "prompt-caching-2024-07-31",
        "Authorization": "Bearer sk-sy-client",
        "X-Api-Key": "nope",
    }
    await provider.complete(call)
    headers = requests_of(server)[-1]["headers"]
    assert headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "authorization" not in headers
    assert headers["x-api-key"] == "sk-ant-test"


# ------------------------------------------------------------------------------ native passthrough


def native_body(stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-test",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "be nice", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "one two three four"}],
    }
    if stream:
        body["stream"] = True
    return body


async def direct(server: ServerThread, body: dict[str, Any]) -> bytes:
    headers = {"x-api-key": "k", "anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}
    async with httpx.AsyncClient() as client:
        response = await client.post(server.url + "/v1/messages", content=orjson.dumps(body), headers=headers)
        return response.content


async def test_native_messages_passthrough(provider: AnthropicProvider, server: ServerThread) -> None:
    body = native_body()
    server.app.state.cache.clear()
    result = await provider.messages(body, headers={"anthropic-beta": "x"})
    server.app.state.cache.clear()  # the direct call writes the prompt cache again, as the first did
    assert result.body == await direct(server, body)
    assert result.data["type"] == "message"
    # "be nice" is written to the prompt cache: 2 of the 6 input tokens.
    assert result.usage == Usage(prompt_tokens=6, completion_tokens=3, cache_write_5m_tokens=2)
    assert requests_of(server)[-2]["headers"]["anthropic-beta"] == "x"
    with pytest.raises(UpstreamError) as info:
        await provider.messages({**body, "model": "fail-429"})
    assert info.value.status == 429 and info.value.code == "rate_limit_error"


async def test_native_stream_passthrough(provider: AnthropicProvider, server: ServerThread) -> None:
    body = native_body(stream=True)
    server.app.state.cache.clear()
    chunks = await collect(provider.messages_stream(body))
    server.app.state.cache.clear()
    assert b"".join(c.raw for c in chunks) == await direct(server, body)
    assert [c.data["type"] for c in chunks] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert chunks[2].raw == b'event: ping\ndata: {"type": "ping"}\n\n'
    tracker = AnthropicStreamUsage()
    for chunk in chunks:
        tracker.feed(chunk.data)
    assert tracker.usage == Usage(prompt_tokens=6, completion_tokens=3, cache_write_5m_tokens=2)
    with pytest.raises(UpstreamError) as info:
        await anext(provider.messages_stream({**body, "model": "overloaded-midstream"}))
    assert info.value.status == 529


# ------------------------------------------------------------------------------ pieces


def test_usage_from_anthropic() -> None:
    usage = {
        "input_tokens": 7,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
        "output_tokens": 9,
    }
    assert usage_from_anthropic(usage) == Usage(
        prompt_tokens=127, completion_tokens=9, cached_tokens=100, cache_write_5m_tokens=20
    )
    assert usage_from_anthropic(None) is None


def test_official_sdk_against_fake(server: ServerThread) -> None:
    """The fake speaks the real wire format: the official SDK parses its answers and streams."""
    client = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)
    message = client.messages.create(
        model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].type == "text" and message.content[0].text == "Hello from anthropic!"
    assert message.usage.input_tokens == 1 and message.stop_reason == "end_turn"
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]
    with client.messages.stream(
        model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}], tools=tools
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Paris"}
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="fail-429", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model="claude-test", max_tokens=64, messages=[{"role": "assistant", "content": "x"}]
        )
    client.close()
