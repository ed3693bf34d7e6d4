"""Anthropic stream parsing: the SSE decoder over split reads and mixed line endings, and AnthropicProvider
streams from a scripted upstream that sends exact bytes (odd read boundaries, errors after content, broken
and stalled streams)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from providers.anthropic import AnthropicProvider
from providers.anthropic_sse import SSEDecoder
from providers.base import Chunk, UpstreamError
from tests.fakes.server import ServerThread
from tests.providers.anthropic_adapter_cases import chat, collect, make


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
