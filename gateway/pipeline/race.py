"""Waiting on an upstream call while watching the client and, when it runs beside the call, the
limiter's admission."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from starlette.requests import Request

from providers.base import Chunk, Endpoint, Provider, UpstreamCall, midstream_error

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before an answer was ready; the upstream call was cancelled."""


async def open_stream(events: AsyncIterator[Chunk]) -> tuple[Chunk, AsyncIterator[Chunk]]:
    """Wait for the first event so that a failure before it can still be retried elsewhere."""
    it = aiter(events)
    try:
        first = await anext(it)
    except StopAsyncIteration:
        raise midstream_error("upstream closed the stream before sending anything") from None
    return first, it


async def open_chat_stream(provider: Provider, routing: dict[str, Any]) -> tuple[Chunk, AsyncIterator[Chunk]]:
    """A translating door's chat-completions stream (routing: the request as chat), with the usage
    chunk asked for so that the bill is the upstream's."""
    upstream = {
        **provider.deployment.upstream_body(routing),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return await open_stream(provider.stream(UpstreamCall(upstream, Endpoint.CHAT)))


async def race_disconnect(
    request: Request, work: Awaitable[T], gate: asyncio.Future[None] | None = None
) -> T:
    """Run `work` while watching the client: a disconnect cancels the upstream call. `gate` is an
    admission running beside it: a refusal that comes before the answer cancels the call and is
    raised; otherwise the gate has finished by the time this returns or raises, and a refusal in it
    is for the caller to apply once it has counted the answer (Gate.confirm)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    pending: set[asyncio.Future[Any]] = {task, watcher}
    if gate is not None:
        pending.add(gate)
    try:
        while True:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if gate in done:
                if gate.exception() is None:
                    gate = None  # admitted: only the call is left to wait for
                elif task not in done:
                    task.cancel()
                    gate.result()
            if task in done or watcher in done:
                break
        if gate is not None:
            await asyncio.wait((gate,))
    except asyncio.CancelledError:
        task.cancel()
        if gate is not None:
            gate.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientGone


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
