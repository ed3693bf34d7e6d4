"""The usage of an Anthropic stream relayed as it is: message_start's input side, cache reads and
writes by lifetime included, and message_delta's output; a null in message_delta (newer APIs repeat
the input side there, null where they do not know it) erases nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.pipeline.anthropic_relay import relay_native
from gateway.pipeline.outcome import Outcome
from providers.base import Chunk, Usage

START = {
    "type": "message_start",
    "message": {
        "usage": {
            "input_tokens": 3,
            "cache_read_input_tokens": 10,
            "cache_creation_input_tokens": 6,
            "cache_creation": {"ephemeral_5m_input_tokens": 2, "ephemeral_1h_input_tokens": 4},
            "output_tokens": 1,
        }
    },
}
TEXT = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}


async def _rest(events: list[dict[str, Any]]) -> AsyncIterator[Chunk]:
    for e in events:
        yield Chunk(raw=b"event\n\n", data=e)


async def _relay(events: list[dict[str, Any]]) -> Outcome:
    outcome = Outcome("req_test", "claude", "messages")
    finished: list[Outcome] = []
    chunks = [c async for c in _rest(events)]
    relayed = [
        b async for b in relay_native(chunks[0], _rest(events[1:]), outcome, {}, "claude", finished.append)
    ]
    assert len(relayed) == len(events) and finished == [outcome]
    return outcome


async def test_cache_reads_and_writes_by_lifetime_reach_the_usage() -> None:
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 5, "input_tokens": 3, "cache_read_input_tokens": None},
    }
    outcome = await _relay([START, TEXT, delta, {"type": "message_stop"}])
    assert outcome.usage == Usage(19, 5, cached_tokens=10, cache_write_5m_tokens=2, cache_write_1h_tokens=4)
    assert not outcome.usage_counted


async def test_a_stream_cut_before_message_delta_keeps_the_input_side_and_counts_the_rest() -> None:
    outcome = await _relay([START, TEXT])
    assert outcome.usage_counted
    assert outcome.usage is not None
    assert (
        outcome.usage.prompt_tokens,
        outcome.usage.cached_tokens,
        outcome.usage.cache_write_1h_tokens,
    ) == (
        19,
        10,
        4,
    )
    assert outcome.usage.completion_tokens == 1  # "hi", counted
