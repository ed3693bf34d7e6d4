"""Responses SSE out, metered on the way: an OpenAI upstream's typed events as they came (the few
that carry the whole response rewritten to echo the request), or a chat stream turned into them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from gateway.pipeline.door import Finish
from gateway.pipeline.outcome import Outcome
from gateway.responses.stream import RESPONSE_EVENTS, ChatToEvents, failed_events
from gateway.streaming import end_stream, stream_failed
from gateway.usage import StreamCounter
from providers.base import Chunk, Usage

Keep = Callable[[dict[str, Any]], Awaitable[None]]
Echo = Callable[[dict[str, Any]], dict[str, Any]]
_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_DELTAS = frozenset({"response.output_text.delta", "response.function_call_arguments.delta"})


async def relay_native(
    first: Chunk,
    rest: AsyncIterator[Chunk],
    outcome: Outcome,
    routing: dict[str, Any],
    shell: dict[str, Any],
    echo: Echo,
    keep: Keep,
    finish: Finish,
) -> AsyncIterator[bytes]:
    """`shell` is what a failure reports as the response until the upstream has sent its own."""
    counter = StreamCounter()
    usage: Usage | None = None
    latest = shell
    final: dict[str, Any] | None = None
    sequence = 0
    chunk: Chunk | None = first
    done = False
    try:
        while chunk is not None:
            data = chunk.data
            kind = data.get("type")
            if isinstance(data.get("sequence_number"), int):
                sequence = data["sequence_number"]
            if kind in RESPONSE_EVENTS and isinstance(data.get("response"), dict):
                latest = echo(data["response"])
                if kind in _FINAL:
                    final = latest
                    usage = Usage.from_responses(latest.get("usage"))
                yield (
                    b"event: "
                    + kind.encode()
                    + b"\ndata: "
                    + orjson.dumps({**data, "response": latest})
                    + b"\n\n"
                )
            else:
                if kind in _DELTAS and isinstance(data.get("delta"), str):
                    counter.parts.append(data["delta"])
                yield chunk.raw
            chunk = await anext(rest, None)
        done = True
    except Exception as exc:
        done = True
        final = None
        for event in failed_events(latest, stream_failed(outcome, exc), sequence + 1):
            yield event
    finally:
        counted = lambda: Usage(outcome.count_prompt(routing), counter.tokens())  # noqa: E731
        await end_stream(outcome, usage, counted, rest, finish, done)
    if final is not None and final.get("status") != "failed":
        await keep(final)


async def relay_translated(
    first: Chunk,
    rest: AsyncIterator[Chunk],
    outcome: Outcome,
    routing: dict[str, Any],
    converter: ChatToEvents,
    keep: Keep,
    finish: Finish,
) -> AsyncIterator[bytes]:
    counter = StreamCounter()
    usage: Usage | None = None
    chunk: Chunk | None = first
    done = completed = False
    try:
        for event in converter.start():
            yield event
        while chunk is not None:
            if chunk.data.get("usage"):
                usage = Usage.from_openai(chunk.data["usage"])
            counter.observe(chunk.data)
            for event in converter.feed(chunk.data):
                yield event
            chunk = await anext(rest, None)
        if usage is None:
            usage = Usage(outcome.count_prompt(routing), counter.tokens())
            outcome.usage_counted = True
        done = True
        for event in converter.finish(usage):
            yield event
        completed = True
    except Exception as exc:
        done = True
        for event in converter.failed(stream_failed(outcome, exc)):
            yield event
    finally:
        counted = lambda: Usage(outcome.count_prompt(routing), counter.tokens())  # noqa: E731
        await end_stream(outcome, usage, counted, rest, finish, done)
    if completed:
        await keep(converter.response)
