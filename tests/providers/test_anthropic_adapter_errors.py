"""AnthropicProvider failures against the fake Anthropic upstream: HTTP errors, flaky upstreams, timeouts,
connect errors, error events inside streams, requests refused before sending, and the Anthropic-shaped
error body."""

from __future__ import annotations

import pytest

from providers.anthropic import AnthropicProvider
from providers.anthropic_translate_stream import anthropic_error_body
from providers.base import Chunk, Endpoint, UpstreamCall, UpstreamError
from tests.fakes.server import ServerThread, closed_port
from tests.providers import anthropic_adapter_cases as cases
from tests.providers.anthropic_adapter_cases import chat, make, requests_of

# The shared fixtures, bound as module globals so that pytest finds them here.
server = cases.server
provider = cases.provider


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


def test_anthropic_error_body() -> None:
    assert anthropic_error_body(429, "slow down") == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    assert anthropic_error_body(502, "x", "api_connection_error")["error"]["type"] == "api_error"
    assert anthropic_error_body(529, "x", "overloaded_error")["error"]["type"] == "overloaded_error"
    assert anthropic_error_body(422, "x")["error"]["type"] == "invalid_request_error"
