"""A loopback server speaking just enough RESP to fake a slow, dying or refusing Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable


@contextlib.asynccontextmanager
async def fake_redis(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], object],
) -> AsyncIterator[str]:
    """A loopback server speaking just enough RESP; `handle` gets the connection's ordinal."""
    count = [0]

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count[0] += 1
        await handle(reader, writer, count[0])  # type: ignore[misc]

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.close()
