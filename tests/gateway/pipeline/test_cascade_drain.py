"""`Drain` on its own: it reads a stream on while an escalation is awaited, and `stop` hands over the
read in flight without waiting for the drain (an await there took the request's own cancels)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gateway.pipeline.cascade import Drain, Replay
from providers.base import Chunk


async def _chunks(n: int, gap_s: float) -> AsyncIterator[Chunk]:
    for i in range(n):
        await asyncio.sleep(gap_s)
        yield Chunk.from_data({"i": i})


async def test_stop_hands_over_the_read_in_flight_and_appends_nothing_more() -> None:
    rest, held = _chunks(10, 0.02), []
    drain = Drain(rest, held)
    await asyncio.sleep(0.07)  # three chunks read, the fourth in flight
    pending = drain.stop()
    count = len(held)
    assert 2 <= count <= 4 and pending is not None
    await asyncio.sleep(0.1)
    assert len(held) == count, "the drain read on after stop"
    # Replay gives the held chunks, the one in flight, then the rest: every chunk once, in order.
    replay = Replay(list(held), rest, pending)
    assert [c.data["i"] async for c in replay] == list(range(10))
