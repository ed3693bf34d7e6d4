"""Incremental SSE parsing shared by the adapters: events may be split across network reads."""

from __future__ import annotations

from collections.abc import AsyncIterator


async def sse_events(pieces: AsyncIterator[bytes]) -> AsyncIterator[tuple[bytes | None, bytes]]:
    """Yield (event name or None, data) per SSE event; multi-line `data:` fields are joined by \\n."""
    buf = b""
    async for piece in pieces:
        buf += piece
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        while True:
            end = buf.find(b"\n\n")
            if end < 0:
                break
            block, buf = buf[:end], buf[end + 2 :]
            parsed = _parse_block(block)
            if parsed is not None:
                yield parsed
    if buf.strip():
        parsed = _parse_block(buf)
        if parsed is not None:
            yield parsed


def _parse_block(block: bytes) -> tuple[bytes | None, bytes] | None:
    event: bytes | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            event = line[6:].strip()
    if not data:
        return None
    return event, b"\n".join(data)
