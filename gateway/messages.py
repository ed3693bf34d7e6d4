"""Anthropic's Messages API in front of any deployment: native bytes when the deployment is Anthropic,
translated to and from the OpenAI shape otherwise."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.auth import Principal
from gateway.control import Denied
from gateway.errors import bad_request
from gateway.outcome import Outcome
from gateway.proxy import SSE_HEADERS, ClientGone, Proxy, new_request_id, open_stream
from gateway.streaming import end_stream
from gateway.usage import StreamCounter
from gateway.validate import model_of, stream_flag
from providers.anthropic_translate import (
    TranslationError,
    anthropic_request_to_openai,
    openai_response_to_anthropic,
)
from providers.anthropic_translate_stream import OpenAIStreamToAnthropic, anthropic_error_body, sse_event
from providers.base import Chunk, Endpoint, Provider, UpstreamCall, UpstreamError, UpstreamResponse, Usage


def _native(provider: Provider) -> bool:
    return hasattr(provider, "messages_stream")


def _check(body: dict[str, Any]) -> None:
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise bad_request("messages: must be a non-empty array", param="messages")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise bad_request("max_tokens: a positive integer is required", param="max_tokens")


async def messages(proxy: Proxy, request: Request, body: dict[str, Any], principal: Principal) -> Response:
    model = model_of(body)
    _check(body)
    outcome = Outcome(new_request_id(), model, "messages", principal=principal)
    stream = stream_flag(body)
    try:
        as_openai = anthropic_request_to_openai(body)
    except TranslationError as exc:
        raise bad_request(exc.message, param=exc.param) from None
    # Routing reads the OpenAI shape: the top-level `system` and content blocks count as they would there.
    names = proxy.resolve(request, model, as_openai, outcome)
    try:
        await proxy.admit(outcome, names, as_openai)
        if stream:
            return await _stream(proxy, request, body, as_openai, names, outcome)
        return await _complete(proxy, request, body, as_openai, names, outcome)
    except Denied as denied:
        return proxy.deny(outcome, denied, anthropic=True)
    except UpstreamError as exc:
        return proxy.fail(outcome, exc, anthropic=True)
    except ClientGone:
        return proxy.gone(outcome)


async def _complete(
    proxy: Proxy,
    request: Request,
    body: dict[str, Any],
    as_openai: dict[str, Any],
    names: list[str],
    outcome: Outcome,
) -> Response:
    async def invoke(provider: Provider) -> tuple[bool, UpstreamResponse]:
        if _native(provider):
            return True, await provider.messages({**body, "model": provider.deployment.model})  # type: ignore[attr-defined]
        call = UpstreamCall({**as_openai, "model": provider.deployment.model}, Endpoint.CHAT)
        return False, await provider.complete(call)

    served = await proxy.dispatch(request, names, invoke, outcome)
    native, resp = served.result
    usage = resp.usage
    message = resp.data if native else openai_response_to_anthropic(resp.data, body["model"])
    payload = resp.body if native else orjson.dumps(message)
    if usage is None:
        outcome.usage_counted = True
        usage = Usage(outcome.count_prompt(as_openai), _count_anthropic(message))
    proxy.settle(outcome, usage)
    proxy.admitted(outcome)
    proxy.finish(outcome)
    return Response(payload, media_type="application/json", headers=outcome.headers())


def _count_anthropic(message: dict[str, Any]) -> int:
    counter = StreamCounter()
    for block in message.get("content") or ():
        if block.get("type") == "text":
            counter.parts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            counter.parts.append(block.get("name", "") + orjson.dumps(block.get("input", {})).decode())
    return counter.tokens()


async def _stream(
    proxy: Proxy,
    request: Request,
    body: dict[str, Any],
    as_openai: dict[str, Any],
    names: list[str],
    outcome: Outcome,
) -> Response:
    async def invoke(provider: Provider) -> tuple[bool, tuple[Chunk, AsyncIterator[Chunk]]]:
        model = provider.deployment.model
        if _native(provider):
            return True, await open_stream(provider.messages_stream({**body, "model": model}))  # type: ignore[attr-defined]
        upstream = {**as_openai, "model": model, "stream": True, "stream_options": {"include_usage": True}}
        return False, await open_stream(provider.stream(UpstreamCall(upstream, Endpoint.CHAT)))

    served = await proxy.dispatch(request, names, invoke, outcome)
    native, (first, rest) = served.result
    await proxy.refuse_stream(outcome, rest, as_openai)
    outcome.streamed = True
    outcome.ttft_s = time.perf_counter() - outcome.started
    relay = _relay_native if native else _relay_translated
    events = relay(first, rest, outcome, as_openai, body["model"], proxy.finish)
    return StreamingResponse(
        events, media_type="text/event-stream", headers={**SSE_HEADERS, **outcome.headers(cost_pending=True)}
    )


def _error_event(exc: UpstreamError) -> bytes:
    return sse_event("error", anthropic_error_body(exc.status, exc.message, exc.code))


async def _relay_native(
    first: Chunk,
    rest: AsyncIterator[Chunk],
    outcome: Outcome,
    as_openai: dict[str, Any],
    model: str,
    finish: Callable[[Outcome], None],
) -> AsyncIterator[bytes]:
    counter = StreamCounter()
    prompt: int | None = None
    cached = 0
    completion: int | None = None
    chunk: Chunk | None = first
    try:
        while chunk is not None:
            data = chunk.data
            kind = data.get("type")
            if kind == "message_start":
                u = (data.get("message") or {}).get("usage") or {}
                cached = int(u.get("cache_read_input_tokens") or 0)
                prompt = (
                    int(u.get("input_tokens") or 0) + cached + int(u.get("cache_creation_input_tokens") or 0)
                )
            elif kind == "message_delta" and (data.get("usage") or {}).get("output_tokens") is not None:
                completion = int(data["usage"]["output_tokens"])
            elif kind == "content_block_delta":
                delta = data.get("delta") or {}
                counter.parts.append(delta.get("text") or delta.get("partial_json") or "")
            yield chunk.raw
            chunk = await anext(rest, None)
    except UpstreamError as exc:
        outcome.failed(exc)
        yield _error_event(exc)
    finally:
        usage = None if prompt is None or completion is None else Usage(prompt, completion, cached)

        def counted() -> Usage:
            return Usage(
                prompt if prompt is not None else outcome.count_prompt(as_openai),
                completion if completion is not None else counter.tokens(),
                cached,
            )

        await end_stream(outcome, usage, counted, rest, finish)


async def _relay_translated(
    first: Chunk,
    rest: AsyncIterator[Chunk],
    outcome: Outcome,
    as_openai: dict[str, Any],
    model: str,
    finish: Callable[[Outcome], None],
) -> AsyncIterator[bytes]:
    converter = OpenAIStreamToAnthropic(model)
    counter = StreamCounter()
    usage: Usage | None = None
    chunk: Chunk | None = first
    try:
        while chunk is not None:
            if chunk.data.get("usage"):
                usage = Usage.from_openai(chunk.data["usage"])
            counter.observe(chunk.data)
            for event in converter.feed(chunk.data):
                yield event
            chunk = await anext(rest, None)
        if usage is None:
            usage = Usage(outcome.count_prompt(as_openai), counter.tokens())
            outcome.usage_counted = True
            converter.usage = {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            }
        for event in converter.finish():
            yield event
    except UpstreamError as exc:
        outcome.failed(exc)
        yield _error_event(exc)
    finally:
        await end_stream(
            outcome, usage, lambda: Usage(outcome.count_prompt(as_openai), counter.tokens()), rest, finish
        )
