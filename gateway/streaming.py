"""Relaying an upstream stream to the client as it arrives, metering it on the way."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from gateway.pipeline.outcome import Outcome
from gateway.usage import StreamCounter
from providers.base import Chunk, UpstreamError, Usage

log = logging.getLogger("switchyard")
DONE = b"data: [DONE]\n\n"


def _error_event(exc: UpstreamError) -> bytes:
    return b"data: " + orjson.dumps(exc.to_openai()) + b"\n\n"


async def relay_openai(
    first: Chunk,
    rest: AsyncIterator[Chunk],
    outcome: Outcome,
    body: dict[str, Any],
    *,
    include_usage: bool,
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None,
    finish: Callable[[Outcome], None],
) -> AsyncIterator[bytes]:
    """OpenAI SSE out. The gateway always asks upstream for usage; the client sees the usage chunk only
    when it asked for it (stream_options.include_usage). A stream that ends without usage is counted."""
    counter = StreamCounter()
    usage: Usage | None = None
    last: dict[str, Any] = first.data
    chunk: Chunk | None = first
    done = False
    try:
        while chunk is not None:
            data = chunk.data
            last = data
            raw_usage = data.get("usage")
            if raw_usage:
                usage = Usage.from_openai(raw_usage)
            counter.observe(data)
            if not raw_usage or data.get("choices") or include_usage:
                yield chunk.raw if convert is None else Chunk.from_data(convert(data)).raw
            chunk = await anext(rest, None)
        if usage is None:
            usage = Usage(outcome.count_prompt(body), counter.tokens())
            outcome.usage_counted = True
            if include_usage:
                synthetic = {
                    "id": last.get("id", ""),
                    "object": last.get("object", "chat.completion.chunk"),
                    "created": last.get("created", 0),
                    "model": last.get("model", ""),
                    "choices": [],
                    "usage": {
                        "prompt_tokens": usage.prompt_tokens,
                        "completion_tokens": usage.completion_tokens,
                        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                    },
                }
                yield Chunk.from_data(convert(synthetic) if convert else synthetic).raw
        done = True
        yield DONE
    except Exception as exc:
        done = True
        yield _error_event(stream_failed(outcome, exc))
    finally:
        await end_stream(
            outcome, usage, lambda: Usage(outcome.count_prompt(body), counter.tokens()), rest, finish, done
        )


class ChatRead:
    """A chat-completions stream as a translating relay reads it: each chunk's data in turn
    (`chunks`), the usage the upstream gave (`given`, None until it comes) and, without it, what the
    gateway counted (`counted`), which `usage` marks as counted at the end."""

    def __init__(
        self, first: Chunk, rest: AsyncIterator[Chunk], outcome: Outcome, routing: dict[str, Any]
    ) -> None:
        self._first: Chunk | None = first
        self._rest = rest
        self._outcome = outcome
        self._routing = routing
        self.counter = StreamCounter()
        self.given: Usage | None = None

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        chunk, self._first = self._first, None
        while chunk is not None:
            if chunk.data.get("usage"):
                self.given = Usage.from_openai(chunk.data["usage"])
            self.counter.observe(chunk.data)
            yield chunk.data
            chunk = await anext(self._rest, None)

    def counted(self) -> Usage:
        return Usage(self._outcome.count_prompt(self._routing), self.counter.tokens())

    def usage(self) -> Usage:
        """The whole stream's: the upstream's, else counted (and so marked)."""
        if self.given is not None:
            return self.given
        self._outcome.usage_counted = True
        return self.counted()


def stream_failed(outcome: Outcome, exc: Exception) -> UpstreamError:
    """How a relay that broke ends: with the upstream's error, or, for an event it could not handle
    (a bug of ours or an upstream's nonsense), a 502. Either way the request is recorded as failed and
    what it streamed so far is billed."""
    if not isinstance(exc, UpstreamError):
        log.exception("upstream stream for %s could not be relayed", outcome.request_id)
        exc = UpstreamError(
            502, "the upstream sent a stream event the gateway could not relay", type="api_error"
        )
    outcome.failed(exc)
    return exc


async def end_stream(
    outcome: Outcome,
    usage: Usage | None,
    counted: Callable[[], Usage],
    rest: AsyncIterator[Any],
    finish: Callable[[Outcome], None],
    done: bool,
) -> None:
    """However a stream ended (done, upstream broke, client went away): bill what was streamed when
    the upstream's own usage never came, finish the outcome, and close the upstream. The outcome is
    finished before the first await: a stream cancelled by a disconnect may not get past it."""
    if not done:
        outcome.client_gone()
    if usage is None:
        usage = counted()
        outcome.usage_counted = True
    outcome.usage = usage
    outcome.latency_s = time.perf_counter() - outcome.started
    finish(outcome)
    await close_quietly(rest)


async def close_quietly(it: AsyncIterator[Any]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        # Closing a broken upstream must not mask the real outcome.
        with contextlib.suppress(Exception):
            await aclose()
