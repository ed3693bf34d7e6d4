"""A streamed response that sends its first events, then falls silent until the client gives up."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

STALL_S = 60.0


class StallingStream(Response):
    """For the `stall-midstream` fault: the client's read timeout, not the server, must end the call.
    Waiting on `receive` (rather than sleeping) ends the handler as soon as the client hangs up, so
    no task outlives the test server."""

    def __init__(self, frames: list[bytes], headers: dict[str, str] | None = None) -> None:
        super().__init__(None, 200, headers=headers, media_type="text/event-stream")
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._frames = frames

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        for frame in self._frames:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STALL_S):
                while (await receive())["type"] != "http.disconnect":
                    pass
