"""The spend writer on a thread of its own, with its own event loop and database engine.

Encoding a batch of records and talking to the database is CPU work; on the request loop it showed as
tail latency (a 500-record batch stalls a loop for several milliseconds). Here the request path only
appends a record to an inbox (`submit`: a deque append, atomic under the GIL, O(1)); the writer's loop
drains it every `PUMP_INTERVAL_S`. Waking the writer thread per record would hand the GIL across on
every request, right before the response goes out.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from datetime import date
from decimal import Decimal
from typing import Any

from gateway.accounting.record import RequestRecord, cost_of
from gateway.accounting.writer import SpendWriter

PUMP_INTERVAL_S = 0.05


class WriterThread:
    def __init__(self, url: str, **options: Any) -> None:
        self._url = url
        self._options = options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: SpendWriter | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._inbox: deque[RequestRecord] = deque()
        self._pump: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, name="spend-writer", daemon=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._writer = SpendWriter(self._url, **self._options)
            loop.run_until_complete(self._writer.start())
        except BaseException as exc:  # handed to start(), in the caller's thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._pump = loop.create_task(self._pump_loop(self._writer))
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _pump_loop(self, writer: SpendWriter) -> None:
        while True:
            self._drain(writer)
            await asyncio.sleep(PUMP_INTERVAL_S)

    def _drain(self, writer: SpendWriter) -> None:
        inbox = self._inbox
        while inbox:
            writer.submit(inbox.popleft())

    async def _stop_writer(self, writer: SpendWriter) -> None:
        if self._pump is not None:
            self._pump.cancel()
        self._drain(writer)
        await writer.stop()

    async def start(self) -> None:
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self._error is not None:
            raise self._error

    def submit(self, record: RequestRecord) -> None:
        self._inbox.append(record)

    async def stop(self) -> None:
        """Flush everything (or spill it to the spool), then end the thread."""
        if self._loop is None or self._writer is None or not self._thread.is_alive():
            return
        done = asyncio.run_coroutine_threadsafe(self._stop_writer(self._writer), self._loop)
        try:
            await asyncio.wrap_future(done)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join)

    async def unflushed_cost(
        self, *, team_id: str | None = None, key_id: str | None = None, since: date
    ) -> Decimal:
        """Cost of this team's or key's records (from UTC day `since` on) not yet in the database.
        The inbox is read before the writer: a record passing between them meanwhile counts twice
        (a budget refuses a little early), never not at all."""
        queued = cost_of(list(self._inbox), team_id=team_id, key_id=key_id, since=since)
        loop, writer = self._loop, self._writer
        if loop is None or writer is None or not self._thread.is_alive():
            return queued

        async def held() -> Decimal:
            return writer.unflushed_cost(team_id=team_id, key_id=key_id, since=since)

        return queued + await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(held(), loop))

    def stats(self) -> dict[str, int]:
        return self._writer.stats() if self._writer is not None else {}
