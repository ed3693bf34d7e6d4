"""Anthropic SSE out: an Anthropic upstream's events as they are, or an OpenAI stream translated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from gateway.pipeline.door import Finish
from gateway.pipeline.outcome import Outcome
from gateway.streaming import ChatRead, end_stream, stream_failed
from gateway.usage import StreamCounter
from providers.anthropic import usage_from_anthropic
from providers.anthropic_translate_stream import OpenAIStreamToAnthropic, anthropic_error_body, sse_event
from providers.base import Chunk, UpstreamError, Usage, token_count


def _error_event(exc: UpstreamError) -> bytes:
    return sse_event("error", anthropic_error_body(exc.status, exc.message, exc.code))


async def relay_native(
    first: Chunk,
    rest: AsyncIterator[Chunk],
    outcome: Outcome,
    as_openai: dict[str, Any],
    model: str,
    finish: Finish,
) -> AsyncIterator[bytes]:
    counter = StreamCounter()
    # The usage as the events give it, later figures over earlier ones: message_start's input side
    # (cache reads and writes with it), message_delta's output (and, from newer APIs, the input side
    # again, where a null means "not given here", not zero).
    given: dict[str, Any] = {}
    started = False
    completion: int | None = None
    chunk: Chunk | None = first
    done = False
    try:
        while chunk is not None:
            data = chunk.data
            kind = data.get("type")
            if kind == "message_start":
                message = data.get("message")
                u = message.get("usage") if isinstance(message, dict) else None
                started = isinstance(u, dict)
                given.update({k: v for k, v in u.items() if v is not None} if isinstance(u, dict) else {})
            elif kind == "message_delta" and isinstance(u := data.get("usage"), dict):
                given.update({k: v for k, v in u.items() if v is not None})
                completion = token_count(u.get("output_tokens"), None)
            elif kind == "content_block_delta" and isinstance(delta := data.get("delta"), dict):
                counter.parts.append(str(delta.get("text") or delta.get("partial_json") or ""))
            yield chunk.raw
            chunk = await anext(rest, None)
        done = True
    except Exception as exc:
        done = True
        yield _error_event(stream_failed(outcome, exc))
    finally:
        read = usage_from_anthropic(given) if started else None
        usage = None if read is None or completion is None else replace(read, completion_tokens=completion)

        def counted() -> Usage:
            out = completion if completion is not None else counter.tokens()
            if read is not None:
                return replace(read, completion_tokens=out)
            return Usage(outcome.count_prompt(as_openai), out)

        await end_stream(outcome, usage, counted, rest, finish, done)


async def relay_translated(
    first: Chunk,
    rest: AsyncIterator[Chunk],
    outcome: Outcome,
    as_openai: dict[str, Any],
    model: str,
    finish: Finish,
) -> AsyncIterator[bytes]:
    converter = OpenAIStreamToAnthropic(model)
    read = ChatRead(first, rest, outcome, as_openai)
    done = False
    try:
        async for data in read.chunks():
            for event in converter.feed(data):
                yield event
        if read.given is None:
            usage = read.usage()
            converter.usage = {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            }
        done = True
        for event in converter.finish():
            yield event
    except Exception as exc:
        done = True
        yield _error_event(stream_failed(outcome, exc))
    finally:
        await end_stream(outcome, read.given, read.counted, rest, finish, done)
