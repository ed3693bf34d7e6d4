"""A streamed response that sends its first events and then either stops short or falls silent."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

STALL_S = 60.0


class PartialStream(Response):
    """`stall=False` (die-midstream): returns without finishing the chunked body, so uvicorn closes the
    connection and the client sees a truncated response, a dropped upstream. `stall=True`
    (stall-midstream): waits instead, so the client's read timeout, not the server, ends the call;
    waiting on `receive` rather than sleeping ends the handler as soon as the client hangs up, so no
    task outlives the test server."""

    def __init__(
        self, frames: list[bytes], headers: dict[str, str] | None = None, *, stall: bool, gap_s: float = 0.0
    ) -> None:
        super().__init__(None, 200, headers=headers, media_type="text/event-stream")
        # Without a length, uvicorn frames the body as chunked, so stopping early truncates it.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._frames = frames
        self._stall = stall
        self._gap_s = gap_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        for frame in self._frames:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
            if self._gap_s:
                await asyncio.sleep(self._gap_s)
        if not self._stall:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STALL_S):
                while (await receive())["type"] != "http.disconnect":
                    pass
