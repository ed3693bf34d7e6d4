"""AnthropicProvider against the fake Anthropic upstream over real loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from providers.anthropic import (
    ANTHROPIC_VERSION,
    AnthropicProvider,
    AnthropicStreamUsage,
    usage_from_anthropic,
)
from providers.anthropic_sse import SSEDecoder
from providers.anthropic_translate_stream import anthropic_error_body
from providers.base import Chunk, Endpoint, UpstreamCall, UpstreamError, Usage
from providers.deployment import Deployment
from tests.fakes.anthropic_upstream import create_app
from tests.fakes.server import ServerThread, closed_port

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread(create_app()) as srv:
        yield srv


def requests_of(server: ServerThread) -> list[dict[str, Any]]:
    return server.app.state.requests


def make(server_url: str, **overrides: Any) -> AnthropicProvider:
    fields: dict[str, Any] = {
        "name": "claude",
        "provider": "anthropic",
        "model": "claude-test",
        "api_base": server_url,
        "api_key": "sk-ant-test",
        "headers": {"x-team": "blue"},
        "timeout": 5.0,
        "connect_timeout": 1.0,
    }
    fields.update(overrides)
    return AnthropicProvider(Deployment(**fields))


@pytest.fixture
async def provider(server: ServerThread) -> AsyncIterator[AnthropicProvider]:
    p = make(server.url)
    yield p
    await p.aclose()


def chat(model: str = "claude-test", content: str = "hello there world", **extra: Any) -> UpstreamCall:
    return UpstreamCall(body={"model": model, "messages": [{"role": "user", "content": content}], **extra})


async def collect(stream: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in stream]


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
    assert result.usage == Usage(prompt_tokens=18, completion_tokens=3, cached_tokens=10)
    assert result.data["usage"]["total_tokens"] == 21
    chunks = await collect(provider.stream(chat(model="cached-model", stream=True)))
    assert Usage.from_openai(chunks[-1].data["usage"]) == Usage(
        prompt_tokens=18, completion_tokens=3, cached_tokens=10
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


# ------------------------------------------------------------------------------ failures


@pytest.mark.parametrize(
    ("model", "status", "kind", "retryable"),
    [
        ("fail-400", 400, "invalid_request_error", False),
        ("fail-401", 401, "authentication_error", False),
        ("fail-429", 429, "rate_limit_error", True),
        ("fail-500", 500, "api_error", True),
    ],
)
async def test_http_errors(
    provider: AnthropicProvider, model: str, status: int, kind: str, retryable: bool
) -> None:
    with pytest.raises(UpstreamError) as info:
        await provider.complete(chat(model=model))
    err = info.value
    assert (err.status, err.retryable, err.code) == (status, retryable, kind)
    assert err.message.startswith("fake: ")
    if status == 429:
        assert err.retry_after == 0.0
    # A stream fails the same way, from its first __anext__.
    stream = provider.stream(chat(model=model, stream=True))
    with pytest.raises(UpstreamError) as info:
        await anext(stream)
    assert (info.value.status, info.value.retryable) == (status, retryable)


async def test_flaky_then_ok(provider: AnthropicProvider) -> None:
    for _ in range(2):
        with pytest.raises(UpstreamError) as info:
            await provider.complete(chat(model="flaky-2-adapter"))
        assert info.value.status == 500 and info.value.retryable
    assert (await provider.complete(chat(model="flaky-2-adapter"))).usage is not None


async def test_hang_times_out(server: ServerThread) -> None:
    p = make(server.url, timeout=0.3)
    try:
        with pytest.raises(UpstreamError) as info:
            await p.complete(chat(model="hang"))
        assert (info.value.status, info.value.type, info.value.retryable) == (504, "timeout_error", True)
        with pytest.raises(UpstreamError) as info:
            await anext(p.stream(chat(model="hang", stream=True)))
        assert info.value.type == "timeout_error"
    finally:
        await p.aclose()


async def test_closed_port_is_a_connect_error() -> None:
    p = make(f"http://127.0.0.1:{closed_port()}")
    try:
        with pytest.raises(UpstreamError) as info:
            await p.complete(chat())
        assert (info.value.status, info.value.type, info.value.retryable) == (
            502,
            "api_connection_error",
            True,
        )
        with pytest.raises(UpstreamError) as info:
            await anext(p.stream(chat(stream=True)))
        assert info.value.type == "api_connection_error"
    finally:
        await p.aclose()


async def test_die_midstream_raises_after_some_chunks(provider: AnthropicProvider) -> None:
    received: list[Chunk] = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in provider.stream(chat(model="die-midstream", stream=True)):
            received.append(chunk)
    assert "interrupted" in info.value.message and info.value.status == 502
    assert "".join(c.data["choices"][0]["delta"].get("content") or "" for c in received) == "Hello from"


async def test_error_event_before_content_is_raised_first(provider: AnthropicProvider) -> None:
    # Anthropic's overloaded_error inside a 200 stream, right after message_start: nothing was yielded,
    # so the gateway can still retry.
    stream = provider.stream(chat(model="overloaded-midstream", stream=True))
    with pytest.raises(UpstreamError) as info:
        await anext(stream)
    assert (info.value.status, info.value.code, info.value.retryable) == (529, "overloaded_error", True)


async def test_error_event_after_content_is_midstream(provider: AnthropicProvider) -> None:
    received: list[Chunk] = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in provider.stream(chat(model="overloaded-late", stream=True)):
            received.append(chunk)
    assert received and info.value.code == "overloaded_error" and info.value.retryable
    assert info.value.message == "Overloaded"  # the upstream's own words, relayed unchanged


async def test_untranslatable_requests_fail_before_sending(
    provider: AnthropicProvider, server: ServerThread
) -> None:
    before = len(requests_of(server))
    with pytest.raises(UpstreamError) as info:
        await provider.complete(chat(n=3))
    assert (info.value.status, info.value.param, info.value.retryable) == (400, "n", False)
    with pytest.raises(UpstreamError) as info:
        await anext(provider.stream(chat(n=3, stream=True)))
    assert info.value.status == 400
    with pytest.raises(UpstreamError) as info:
        await provider.complete(UpstreamCall(body={"model": "m", "prompt": "x"}, endpoint=Endpoint.TEXT))
    assert info.value.status == 400
    with pytest.raises(UpstreamError) as info:
        await provider.embed(UpstreamCall(body={"model": "m", "input": "x"}, endpoint=Endpoint.EMBED))
    assert (info.value.status, info.value.type) == (400, "invalid_request_error")
    assert len(requests_of(server)) == before


async def test_upstream_validation_error_keeps_status(provider: AnthropicProvider) -> None:
    bad = UpstreamCall(body={"model": "m", "messages": [{"role": "assistant", "content": "I start"}]})
    with pytest.raises(UpstreamError) as info:
        await provider.complete(bad)
    assert (info.value.status, info.value.retryable) == (400, False)
    assert "first message" in info.value.message


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
    result = await provider.messages(body, headers={"anthropic-beta": "x"})
    assert result.body == await direct(server, body)
    assert result.data["type"] == "message"
    assert result.usage == Usage(prompt_tokens=6, completion_tokens=3)
    assert requests_of(server)[-2]["headers"]["anthropic-beta"] == "x"
    with pytest.raises(UpstreamError) as info:
        await provider.messages({**body, "model": "fail-429"})
    assert info.value.status == 429 and info.value.code == "rate_limit_error"


async def test_native_stream_passthrough(provider: AnthropicProvider, server: ServerThread) -> None:
    body = native_body(stream=True)
    chunks = await collect(provider.messages_stream(body))
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
    assert tracker.usage == Usage(prompt_tokens=6, completion_tokens=3)
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
    assert usage_from_anthropic(usage) == Usage(prompt_tokens=127, completion_tokens=9, cached_tokens=100)
    assert usage_from_anthropic(None) is None


def test_sse_decoder_split_reads_and_line_endings() -> None:
    stream = (
        b": comment\n"
        b'event: message_start\ndata: {"a":1}\n\n'
        b'event: ping\r\ndata: {"type": "ping"}\r\n\r\n'
        b"event: multi\rdata: line1\rdata: line2\r\r"
        b"\n\n"
        b'event: last\ndata: {"z":0}'
    )
    for size in (1, 2, 3, 7, len(stream)):
        decoder = SSEDecoder()
        events = []
        for i in range(0, len(stream), size):
            events += decoder.feed(stream[i : i + size])
        events += decoder.flush()
        assert [(e.event, e.data) for e in events] == [
            ("message_start", b'{"a":1}'),
            ("ping", b'{"type": "ping"}'),
            ("multi", b"line1\nline2"),
            ("last", b'{"z":0}'),
        ]
        assert events[0].raw == b': comment\nevent: message_start\ndata: {"a":1}\n\n'
        assert events[1].raw == b'event: ping\r\ndata: {"type": "ping"}\r\n\r\n'


@pytest.fixture(scope="module")
def script_server() -> Iterator[ServerThread]:
    """An upstream that answers 200 with exactly the pieces in `app.state.pieces` (see `scripted`)."""

    async def messages(request: Request) -> StreamingResponse:
        pieces: tuple[bytes, ...] = request.app.state.pieces
        stall: float = request.app.state.stall

        async def body() -> AsyncIterator[bytes]:
            for piece in pieces:
                yield piece
                # A pause between writes so the pieces tend to arrive as separate reads.
                await asyncio.sleep(0.001)
            await asyncio.sleep(stall)

        return StreamingResponse(body(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])
    with ServerThread(app) as srv:
        yield srv


def scripted(
    server: ServerThread, *pieces: bytes, stall: float = 0.0, timeout: float = 5.0
) -> AnthropicProvider:
    """A provider whose upstream answers 200 with exactly these stream pieces, then goes silent for
    `stall` seconds before it ends the stream."""
    server.app.state.pieces = pieces
    server.app.state.stall = stall
    return make(server.url, name="c", model="m", api_key="k", headers={}, timeout=timeout)


def crlf_event(name: str, data: dict[str, Any], end: bytes = b"\r\n\r\n") -> bytes:
    return b"event: " + name.encode() + b"\r\ndata: " + orjson.dumps(data) + end


START = crlf_event(
    "message_start", {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 2}}}
)
BLOCK = crlf_event(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
)
DELTA = crlf_event(
    "content_block_delta",
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
)
OVERLOADED = crlf_event(
    "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
)
END = crlf_event(
    "message_delta",
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}},
) + crlf_event("message_stop", {"type": "message_stop"}, end=b"")  # no final blank line: still accepted


async def test_stream_parsing_is_robust_to_read_boundaries(script_server: ServerThread) -> None:
    whole = START + BLOCK + DELTA + END
    p = scripted(script_server, *(whole[i : i + 5] for i in range(0, len(whole), 5)))
    data = [c.data for c in await collect(p.stream(chat(stream=True)))]
    await p.aclose()
    assert [d["choices"][0]["delta"].get("content") for d in data[:-1]] == ["", "Hi", None]
    assert data[-1]["usage"]["prompt_tokens"] == 2


async def test_error_after_content_in_the_same_read_yields_the_content_first(
    script_server: ServerThread,
) -> None:
    p = scripted(script_server, START + BLOCK + DELTA + OVERLOADED)
    received: list[Chunk] = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in p.stream(chat(stream=True)):
            received.append(chunk)
    await p.aclose()
    assert [c.data["choices"][0]["delta"].get("content") for c in received] == ["", "Hi"]
    assert info.value.code == "overloaded_error" and info.value.retryable


@pytest.mark.parametrize(
    ("pieces", "status"),
    [
        ((START, BLOCK, DELTA), 502),  # closed cleanly but before message_stop
        ((START, b"event: content_block_delta\ndata: {not json\n\n"), 502),
        ((START, BLOCK, OVERLOADED), 529),
    ],
)
async def test_broken_streams(script_server: ServerThread, pieces: tuple[bytes, ...], status: int) -> None:
    p = scripted(script_server, *pieces)
    with pytest.raises(UpstreamError) as info:
        await collect(p.stream(chat(stream=True)))
    await p.aclose()
    assert info.value.status == status and info.value.retryable


async def test_stall_after_content_is_midstream_not_a_timeout_answer(script_server: ServerThread) -> None:
    p = scripted(script_server, START + BLOCK + DELTA, stall=2.0, timeout=0.3)
    received: list[Chunk] = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in p.stream(chat(stream=True)):
            received.append(chunk)
    await p.aclose()
    assert [c.data["choices"][0]["delta"].get("content") for c in received] == ["", "Hi"]
    assert (info.value.status, info.value.retryable) == (502, True)
    assert "interrupted" in info.value.message


def test_anthropic_error_body() -> None:
    assert anthropic_error_body(429, "slow down") == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    assert anthropic_error_body(502, "x", "api_connection_error")["error"]["type"] == "api_error"
    assert anthropic_error_body(529, "x", "overloaded_error")["error"]["type"] == "overloaded_error"
    assert anthropic_error_body(422, "x")["error"]["type"] == "invalid_request_error"


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
