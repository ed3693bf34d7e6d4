"""Responses SSE out, metered on the way: an OpenAI upstream's typed events as they came (the few
that carry the whole response rewritten to echo the request), or a chat stream turned into them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from gateway.pipeline.door import Finish
from gateway.pipeline.outcome import Outcome
from gateway.responses.stream import RESPONSE_EVENTS, ChatToEvents, failed_events
from gateway.streaming import ChatRead, end_stream, stream_failed
from gateway.usage import StreamCounter
from providers.base import Chunk, UpstreamError, Usage, midstream_error

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
    failed = False  # the final event was response.failed, whatever its response's status says
    # An `error` event relayed as it came: the stream has failed, and the client has been told why.
    errored: dict[str, Any] | None = None
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
                    failed = kind == "response.failed" or latest.get("status") == "failed"
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
                elif kind == "error":
                    errored = data
                yield chunk.raw
            chunk = await anext(rest, None)
        if final is None:
            # A clean end of stream without a final event would leave the client waiting on a response
            # that never finishes: it is a broken stream like a dropped connection.
            if errored is not None:
                raise _failure({"error": errored})
            raise midstream_error("the upstream ended the stream before the response finished")
        if failed:
            # The client has the upstream's own response.failed; the record says it failed too.
            outcome.failed(_failure(final))
        done = True
    except Exception as exc:
        done = True
        final = None
        # After the upstream's own error event only its response.failed is missing: it takes the next
        # sequence number, where the left-out error event would have taken it.
        start = sequence if errored is not None else sequence + 1
        events = failed_events(latest, stream_failed(outcome, exc), start)
        for event in events[1:] if errored is not None else events:
            yield event
    finally:
        counted = lambda: Usage(outcome.count_prompt(routing), counter.tokens())  # noqa: E731
        await end_stream(outcome, usage, counted, rest, finish, done)
    if final is not None and not failed:
        await keep(final)


def _failure(response: dict[str, Any]) -> UpstreamError:
    """A response the upstream itself reported failed, as the error it is recorded with."""
    error = response.get("error") if isinstance(response.get("error"), dict) else {}
    message = str(error.get("message") or "the upstream reported the response failed")
    code = error.get("code")
    return UpstreamError(502, message, type="api_error", code=None if code is None else str(code))


async def relay_translated(
    first: Chunk,
    rest: AsyncIterator[Chunk],
    outcome: Outcome,
    routing: dict[str, Any],
    converter: ChatToEvents,
    keep: Keep,
    finish: Finish,
) -> AsyncIterator[bytes]:
    read = ChatRead(first, rest, outcome, routing)
    done = completed = False
    try:
        for event in converter.start():
            yield event
        async for data in read.chunks():
            for event in converter.feed(data):
                yield event
        usage = read.usage()
        done = True
        for event in converter.finish(usage):
            yield event
        completed = True
    except Exception as exc:
        done = True
        for event in converter.failed(stream_failed(outcome, exc)):
            yield event
    finally:
        await end_stream(outcome, read.given, read.counted, rest, finish, done)
    if completed:
        await keep(converter.response)
