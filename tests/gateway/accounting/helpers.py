"""Records to write, what the database should then hold, and a TCP proxy to fake an outage."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.record import RequestRecord
from gateway.db.models import DailySpend, RequestLog

BASE_TS = datetime(2026, 3, 1, 23, 59, 0, tzinfo=UTC)


def make_record(i: int, *, run: str | None = None) -> RequestRecord:
    """Record number i: spread over two days, three teams (one absent), keys, models and tiers."""
    deployment = None if i % 11 == 0 else ("gpt-4o-mini", "claude-sonnet", "local")[i % 3]
    return RequestRecord(
        request_id=f"{run or 'r'}-{i}-{uuid.uuid4().hex[:6]}",
        ts=BASE_TS + timedelta(seconds=i % 120),
        team_id=None if i % 7 == 0 else f"team{i % 3}",
        key_id=None if i % 7 == 0 else f"key{i % 5}",
        requested_model="auto",
        route="auto",
        deployment=deployment,
        provider=None if deployment is None else "openai",
        tier=None if deployment is None else ("small", "large", "local")[i % 3],
        difficulty=None if i % 4 == 0 else (i % 100) / 100,
        status=502 if i % 13 == 0 else 200,
        error_type="upstream_error" if i % 13 == 0 else None,
        prompt_tokens=100 + i,
        completion_tokens=7 * i % 1000,
        cached_tokens=i % 17,
        # Ten decimal places, so float arithmetic anywhere would show.
        cost_usd=None if i % 9 == 0 else Decimal(i * 1_234_567 + 1).scaleb(-10),
        latency_ms=1000.25 + i,
        ttft_ms=None if i % 2 else 12.5 + i / 4,
        streamed=i % 2 == 0,
        fallbacks=i % 3,
        tokens_estimated=i % 10 == 0,
    )


def spill_files(spool: Path) -> list[Path]:
    return sorted(spool.glob("spill-*")) if spool.exists() else []


async def fetch_log(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(RequestLog.__table__))).mappings().all()
    return {r["request_id"]: dict(r) for r in rows}


async def fetch_daily(engine: AsyncEngine) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    t = DailySpend.__table__
    async with engine.connect() as conn:
        rows = (await conn.execute(select(t))).mappings().all()
    key = ("day", "team_id", "key_id", "model", "tier")
    sums = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "errors")
    return {tuple(r[k] for k in key): tuple(r[s] for s in sums) for r in rows}


def expected_daily(records: list[RequestRecord]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    acc: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0), 0])
    for r in records:
        model = r.deployment or r.requested_model
        a = acc[(r.ts.date(), r.team_id or "", r.key_id or "", model, r.tier or "")]
        a[0] += 1
        a[1] += r.prompt_tokens
        a[2] += r.completion_tokens
        a[3] += r.cached_tokens
        a[4] += r.cost_usd or 0
        a[5] += r.status >= 400
    return {k: tuple(v) for k, v in acc.items()}


def assert_logged_exactly(log: dict[str, dict[str, Any]], records: list[RequestRecord]) -> None:
    assert set(log) == {r.request_id for r in records}
    for r in records:
        row = log[r.request_id]
        for field in ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "latency_ms"):
            assert row[field] == getattr(r, field), (field, row, r)
        for field in ("ttft_ms", "status", "team_id", "key_id", "deployment", "tier", "streamed"):
            assert row[field] == getattr(r, field), (field, row, r)
        assert row["ts"] == r.ts and row["tokens_estimated"] == r.tokens_estimated


async def wait_for(predicate: Any, within_s: float = 20.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class TcpProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<target>; down() refuses and cuts connections until up()."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))
