"""The spend writer: request records from the hot path into the database, in batches, never lost.

submit() only appends to a deque. A flusher task writes batches (by size or interval) with
store.write_records; while the database is unreachable the records wait in memory, past a bound they
spill to fsync'd files (spool.Spool), and a retry loop with backoff replays those when the database
answers again, this process's and any left by a previous one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections import defaultdict, deque
from datetime import date
from decimal import Decimal
from pathlib import Path

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.record import RequestRecord, cost_of
from gateway.accounting.spool import Claim, Spool
from gateway.accounting.store import is_bad_data, write_records
from gateway.db.engine import make_engine

log = logging.getLogger("switchyard.accounting")

DEFAULT_SPOOL_DIR = "./switchyard-spool"
# How often to look for spill files left by other (dead) processes sharing the spool directory.
_RESCAN_S = 30.0


class SpendWriter:
    def __init__(
        self,
        engine: AsyncEngine | str,
        *,
        spool_dir: Path | str = DEFAULT_SPOOL_DIR,
        batch_size: int = 500,
        flush_interval_s: float = 0.5,
        max_buffer: int = 50_000,
        retry_min_s: float = 0.5,
        retry_max_s: float = 30.0,
        stop_timeout_s: float = 15.0,
        concurrency: int | None = None,
    ) -> None:
        """`engine` is shared (the caller disposes of it) or a URL (the writer makes and disposes one).

        `concurrency`: batches in flight at once (default 2 on PostgreSQL, where encoding one batch
        overlaps the server's work on another; 1 on SQLite, which has one writer anyway).
        """
        if batch_size < 1 or max_buffer < batch_size:
            raise ValueError("need 1 <= batch_size <= max_buffer")
        self._owns_engine = isinstance(engine, str)
        self._engine = make_engine(engine) if isinstance(engine, str) else engine
        sqlite = self._engine.dialect.name == "sqlite"
        self._concurrency = max(1, concurrency or (1 if sqlite else 2))
        self._spool = Spool(spool_dir)
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._max_buffer = max_buffer
        self._retry_min, self._retry_max = retry_min_s, retry_max_s
        self._stop_timeout = stop_timeout_s

        self._pending: deque[RequestRecord] = deque()
        self._inflight: dict[int, list[RequestRecord]] = {}
        self._wake = asyncio.Event()
        self._overflow = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._spool_lock = asyncio.Lock()
        self._flushers: list[asyncio.Task[None]] = []
        self._spiller: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False
        self._spool_dirty = False
        self._db_up = True
        self._spooled = 0
        # Cost of records spilled and not replayed, per (team, key, day), for budget reseeds. Replaying
        # another process's spill subtracts too (floored at 0): an undercount reconciling repairs.
        self._spooled_cost: defaultdict[tuple[str | None, str | None, date], Decimal] = defaultdict(Decimal)

        self.written = 0  # rows newly inserted into request_log
        self.duplicates = 0  # records skipped because their request_id was already logged
        self.spilled = 0  # records written to spill files
        self.replayed = 0  # records read back from spill files and committed
        self.rejected = 0  # records the database refused as invalid (kept in rejected-*.jsonl)
        self.corrupt = 0  # unreadable spill-file lines skipped (a torn tail after a crash)
        self.failures = 0  # batch writes that failed for want of a database

    # -- hot path ---------------------------------------------------------------------------------

    def submit(self, record: RequestRecord) -> None:
        """Queue one record. O(1), never blocks; call it from the event loop's thread."""
        if self._closed:
            # Stragglers after stop(): straight to disk (a small synchronous write, shutdown only).
            try:
                self._spool.append([record])
                self._spool.seal()  # unlocked at once: a later writer in this process may replay it
            except OSError as exc:
                log.error("spend writer: record %s lost after stop: %s", record.request_id, exc)
                return
            self.spilled += 1
            return
        pending = self._pending
        pending.append(record)
        if len(pending) >= self._batch_size:
            self._wake.set()
            if len(pending) > self._max_buffer:
                self._overflow.set()

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background tasks; returns at once even when the database is down."""
        if self._flushers:
            return
        self._spool_dirty = bool(await asyncio.to_thread(self._spool.segments))
        self._flushers = [
            asyncio.create_task(self._flush_loop(i), name=f"spend-writer-flush-{i}")
            for i in range(self._concurrency)
        ]
        self._spiller = asyncio.create_task(self._spill_loop(), name="spend-writer-spill")

    async def stop(self) -> None:
        """Write everything out: to the database when it answers (spill files included), else to disk."""
        if self._closed:
            return
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
        self._overflow.set()
        if self._flushers:
            done = asyncio.gather(*self._flushers, return_exceptions=True)
            try:
                await asyncio.wait_for(asyncio.shield(done), self._stop_timeout)
            except TimeoutError:
                log.warning("spend writer: database too slow at shutdown, spilling the rest to disk")
                for task in self._flushers:
                    task.cancel()
                await done
        if self._spiller is not None:
            await asyncio.gather(self._spiller, return_exceptions=True)
        # Whatever the database did not take. The in-flight batch may have committed just before a
        # cancel: spilling it too is harmless, replay skips what is already logged.
        leftovers = [r for batch in self._inflight.values() for r in batch]
        leftovers.extend(self._pending)
        self._inflight, self._pending = {}, deque()
        if leftovers and not await self._spill(leftovers):
            log.error("spend writer: %d records could not be written anywhere", len(leftovers))
        await asyncio.to_thread(self._spool.seal)
        self._closed = True
        if self._owns_engine:
            await self._engine.dispose()

    def stats(self) -> dict[str, int]:
        """Counters for /metrics. `pending`: records not yet in the database that this process knows of."""
        return {
            "written": self.written,
            "duplicates": self.duplicates,
            "spilled": self.spilled,
            "replayed": self.replayed,
            "rejected": self.rejected,
            "corrupt": self.corrupt,
            "failures": self.failures,
            "buffered": self._buffered(),
            "spooled": self._spooled,
            "pending": self._buffered() + self._spooled,
            "db_up": int(self._db_up),
        }

    def unflushed_cost(
        self, *, team_id: str | None = None, key_id: str | None = None, since: date
    ) -> Decimal:
        """Cost of the records for this team or key (from UTC day `since` on) that this process holds
        and the database has not got yet: queued, in a batch being written, or spilled to disk. Call
        it on the writer's event loop."""
        held = itertools.chain(self._pending, *self._inflight.values())
        total = cost_of(held, team_id=team_id, key_id=key_id, since=since)
        for (team, key, day), cost in self._spooled_cost.items():
            if day >= since and (team_id is None or team == team_id) and (key_id is None or key == key_id):
                total += cost
        return total

    @property
    def concurrency(self) -> int:
        return self._concurrency

    def _buffered(self) -> int:
        return len(self._pending) + sum(len(b) for b in self._inflight.values())

    # -- flushing ---------------------------------------------------------------------------------

    async def _flush_loop(self, worker: int) -> None:
        """One of `concurrency` loops taking live batches; loop 0 also replays spill files."""
        lead = worker == 0
        delay = self._retry_min
        loop = asyncio.get_running_loop()
        rescan_at = loop.time() + _RESCAN_S
        while True:
            if not self._stopping:
                await self._wait_for_work()
            if self._stopping and not self._pending and not (lead and self._spool_dirty):
                return
            try:
                if lead and loop.time() >= rescan_at:
                    rescan_at = loop.time() + _RESCAN_S
                    found = await asyncio.to_thread(self._spool.segments)
                    self._spool_dirty = self._spool_dirty or bool(found)
                ok = await self._flush_once(worker)
            except Exception:
                # A bug or a spool-directory error must not end the loop: records would pile up unseen.
                log.exception("spend writer: flush loop error")
                ok = False
            if ok:
                delay = self._retry_min
                continue
            if self._stopping:
                return
            # asyncio.timeout rather than wait_for, which on 3.11 can lose a cancel (gateway/live/sync.py).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop_requested.wait()
            delay = min(delay * 2, self._retry_max)

    async def _wait_for_work(self) -> None:
        while not self._stopping and len(self._pending) < self._batch_size:
            self._wake.clear()
            try:
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            except TimeoutError:
                if self._pending or self._spool_dirty:
                    return

    async def _flush_once(self, worker: int) -> bool:
        """One live batch, then (loop 0) the spill files if any; False when the database is down."""
        if self._pending and not await self._write_live_batch(worker):
            return False
        if worker == 0 and self._spool_dirty:
            return await self._replay()
        return True

    async def _write_live_batch(self, worker: int) -> bool:
        n = min(self._batch_size, len(self._pending))
        popleft = self._pending.popleft
        batch = self._inflight[worker] = [popleft() for _ in range(n)]
        # No finally: a batch cancelled mid-write (stop() timing out) stays in _inflight for stop() to spill.
        ok = await self._write(batch)
        del self._inflight[worker]
        if not ok:
            self._pending.extendleft(reversed(batch))
            if len(self._pending) > self._max_buffer:
                self._overflow.set()
        return ok

    async def _write(self, batch: list[RequestRecord]) -> bool:
        """Commit a batch; True when done (written, or refused as invalid), False on an outage."""
        try:
            async with self._engine.begin() as conn:
                new = await write_records(conn, batch)
        except Exception as exc:
            if not is_bad_data(exc):
                self.failures += 1
                if self._db_up:
                    log.warning("spend writer: database unavailable, buffering records: %s", exc)
                self._db_up = False
                return False
            if len(batch) == 1:
                await self._reject(batch[0], exc)
                return True
            # Find the bad record(s) by halving, so the rest of the batch still lands.
            mid = len(batch) // 2
            return await self._write(batch[:mid]) and await self._write(batch[mid:])
        if not self._db_up:
            log.warning("spend writer: database back, writing buffered records")
        self._db_up = True
        self.written += new
        self.duplicates += len(batch) - new
        return True

    async def _reject(self, record: RequestRecord, exc: BaseException) -> None:
        self.rejected += 1
        log.error("spend writer: database refused record %s: %s", record.request_id, exc)
        path = self._spool.directory / f"rejected-{os.getpid()}.jsonl"
        try:
            payload = record.to_json()
        except (AttributeError, TypeError, ValueError):
            # Too broken to serialise field by field: keep it as text rather than stall the writer.
            payload = {"request_id": str(record.request_id), "record": repr(record)}
        line = orjson.dumps(payload, default=str) + b"\n"
        try:
            await asyncio.to_thread(_append_line, path, line)
        except OSError as err:
            log.error("spend writer: could not keep rejected record %s: %s", record.request_id, err)

    # -- spilling and replay ----------------------------------------------------------------------

    async def _spill_loop(self) -> None:
        while not self._stopping:
            await self._overflow.wait()
            self._overflow.clear()
            while not self._stopping and len(self._pending) > self._max_buffer:
                # The newest go to disk; a batch's worth of slack so one record does not mean one write.
                n = min(len(self._pending), len(self._pending) - self._max_buffer + self._batch_size)
                pop = self._pending.pop
                chunk = [pop() for _ in range(n)]
                chunk.reverse()
                if not await self._spill(chunk):
                    self._pending.extend(chunk)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await self._stop_requested.wait()

    async def _spill(self, records: list[RequestRecord]) -> bool:
        async with self._spool_lock:
            try:
                await asyncio.to_thread(self._spool.append, records)
            except Exception as exc:
                # Disk full, permissions: keep the records in memory and try again later.
                log.error("spend writer: cannot spill to %s: %s", self._spool.directory, exc)
                return False
        self.spilled += len(records)
        self._spooled += len(records)
        self._count_spooled(records, 1)
        self._spool_dirty = True
        return True

    def _count_spooled(self, records: list[RequestRecord], sign: int) -> None:
        costs = self._spooled_cost
        for r in records:
            if r.cost_usd:
                where = (r.team_id, r.key_id, r.ts.date())
                costs[where] = max(Decimal(0), costs[where] + sign * r.cost_usd)
                if not costs[where]:
                    del costs[where]

    async def _probe(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            self.failures += 1
            return False
        return True

    async def _replay(self) -> bool:
        if not self._db_up and not await self._probe():
            return False
        self._spool_dirty = False
        async with self._spool_lock:
            await asyncio.to_thread(self._spool.seal)
        for path in await asyncio.to_thread(self._spool.segments):
            claim = await asyncio.to_thread(self._spool.claim, path)
            if claim is None:
                continue  # a live process is still appending to it
            try:
                ok = await self._replay_segment(claim)
            finally:
                await asyncio.to_thread(claim.release)
            if not ok:
                self._spool_dirty = True
                return False
        return True

    async def _replay_segment(self, claim: Claim) -> bool:
        batches = claim.batches(self._batch_size)
        try:
            while (batch := await asyncio.to_thread(next, batches, None)) is not None:
                if not await self._write(batch):
                    return False
                self.replayed += len(batch)
                self._spooled = max(0, self._spooled - len(batch))
                self._count_spooled(batch, -1)
                # Keep live records moving while a long spill file replays.
                if len(self._pending) >= self._batch_size and not await self._write_live_batch(0):
                    return False
        finally:
            batches.close()
        self.corrupt += claim.corrupt
        await asyncio.to_thread(claim.remove)
        log.info("spend writer: replayed and removed %s", claim.path.name)
        return True


def _append_line(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
