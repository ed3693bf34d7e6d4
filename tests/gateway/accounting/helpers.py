"""Records to write, what the database should then hold, and a TCP proxy to fake an outage."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.histogram import bucket_of, difficulty_bucket
from gateway.accounting.record import RequestRecord
from gateway.db.models import Base, DailySpend, RequestLog

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
        cache_write_5m_tokens=i % 11,
        cache_write_1h_tokens=i % 5,
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
    sums = (
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "cost_usd",
        "errors",
    )
    return {tuple(r[k] for k in key): tuple(r[s] for s in sums) for r in rows}


def expected_daily(records: list[RequestRecord]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    acc: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, 0, 0, 0, Decimal(0), 0])
    for r in records:
        model = r.deployment or r.requested_model
        a = acc[(r.ts.date(), r.team_id or "", r.key_id or "", model, r.tier or "")]
        a[0] += 1
        a[1] += r.prompt_tokens
        a[2] += r.completion_tokens
        a[3] += r.cached_tokens
        a[4] += r.cache_write_5m_tokens + r.cache_write_1h_tokens
        a[5] += r.cost_usd or 0
        a[6] += r.status >= 400 or r.error_type is not None
    return {k: tuple(v) for k, v in acc.items()}


def assert_logged_exactly(log: dict[str, dict[str, Any]], records: list[RequestRecord]) -> None:
    assert set(log) == {r.request_id for r in records}
    for r in records:
        row = log[r.request_id]
        for field in ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "latency_ms"):
            assert row[field] == getattr(r, field), (field, row, r)
        for field in ("cache_write_5m_tokens", "cache_write_1h_tokens"):
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


# -- random records and the hourly rollups they make -------------------------------------------

START = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
ERRORS = [  # (status, error_type, weight)
    (200, None, 80),
    (429, "rate_limit_error", 5),
    (429, "budget_exceeded", 5),
    (502, "upstream_error", 4),
    (499, "client_disconnected", 3),
    (500, None, 2),
    (200, "odd", 1),
]


def money(rng: random.Random, top: int = 10**9) -> Decimal:
    """Up to $0.1, ten decimal places: float arithmetic anywhere would show."""
    return Decimal(rng.randrange(0, top)).scaleb(-10)


def random_records(n: int, seed: int, *, start: datetime = START, hours: int = 60) -> list[RequestRecord]:
    rng = random.Random(seed)
    teams = {"team-a": ["ka1", "ka2"], "team-b": ["kb1"], None: [None]}
    models = [("gpt-4o-mini", "small"), ("claude-sonnet", "large"), ("smollm2", "local"), (None, None)]
    out = []
    for i in range(n):
        team = rng.choice(list(teams))
        key = rng.choice(teams[team])
        deployment, tier = rng.choice(models)
        status, error_type, _ = rng.choices(ERRORS, weights=[e[2] for e in ERRORS])[0]
        routed = rng.random() < 0.7
        cost = None if rng.random() < 0.05 else money(rng)
        if not routed:
            baseline = cost
        elif rng.random() < 0.05:
            baseline = None
        else:  # usually dearer; cheaper now and then (a fallback to a dearer deployment)
            baseline = max(Decimal(0), (cost or Decimal(0)) + money(rng) - money(rng, 10**8))
        latency = math.exp(rng.gauss(6, 1.5))
        if i % 97 == 0:
            latency = rng.choice([0.2, 1.0, 700_000.0])
        streamed = rng.random() < 0.5
        out.append(
            RequestRecord(
                request_id=f"{seed}-{i}",
                ts=start + timedelta(seconds=rng.randrange(hours * 3600), microseconds=rng.randrange(10**6)),
                team_id=team,
                key_id=key,
                requested_model="auto" if routed else (deployment or "unknown-model"),
                route="auto" if routed else None,
                deployment=deployment,
                provider=None if deployment is None else "openai",
                tier=tier,
                difficulty=rng.choice([0.0, 1.0, rng.random()]) if routed else None,
                status=status,
                error_type=error_type,
                prompt_tokens=rng.randrange(5000),
                completion_tokens=rng.randrange(2000),
                cached_tokens=rng.randrange(100),
                cache_write_5m_tokens=rng.randrange(50),
                cache_write_1h_tokens=rng.randrange(20),
                cost_usd=cost,
                latency_ms=latency,
                ttft_ms=latency * rng.random() if streamed else None,
                streamed=streamed,
                fallbacks=0,
                baseline_cost_usd=baseline,
            )
        )
    return out


def failed(r: RequestRecord) -> bool:
    return r.status >= 400 or r.error_type is not None


ROLLUP_KEYS = {  # each hourly and daily rollup's key columns, as gateway.db.models defines them
    "hourly_spend": ("hour", "team_id", "key_id", "model", "tier", "error_type"),
    "hourly_team_spend": ("hour", "team_id", "model", "tier", "error_type"),
    "hourly_model_spend": ("hour", "model", "tier", "error_type"),
    "hourly_team_totals": ("hour", "team_id"),
    "daily_key_totals": ("day", "team_id", "key_id"),
    "daily_team_spend": ("day", "team_id", "model", "tier", "error_type"),
    "daily_model_spend": ("day", "model", "tier", "error_type"),
    "daily_team_totals": ("day", "team_id"),
}
WITHOUT_HISTOGRAMS = {"hourly_team_totals", "daily_key_totals", "daily_team_totals"}
HISTOGRAMS = ("latency_hist", "ttft_hist", "difficulty_hist")


def expected_hourly(
    records: list[RequestRecord], table: str = "hourly_spend"
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """An hourly or daily rollup as a plain reading of the records (independent of grains.rollups)."""
    names = ROLLUP_KEYS[table]
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        error = (r.error_type or f"http_{r.status}") if failed(r) else ""
        cell = {
            "hour": r.ts.replace(minute=0, second=0, microsecond=0),
            "day": r.ts.date(),
            "team_id": r.team_id or "",
            "key_id": r.key_id or "",
            "model": r.deployment or r.requested_model,
            "tier": r.tier or "",
            "error_type": error,
        }
        row = out.setdefault(
            tuple(cell[n] for n in names),
            {
                "requests": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cached_tokens": 0,
                "cache_write_tokens": 0,
                "cost_usd": Decimal(0),
                "baseline_cost_usd": Decimal(0),
                "unpriced": 0,
                "errors": 0,
                "rate_limited": 0,
                "budget_refused": 0,
                **({h: Counter() for h in HISTOGRAMS} if table not in WITHOUT_HISTOGRAMS else {}),
            },
        )
        row["requests"] += 1
        row["prompt_tokens"] += r.prompt_tokens
        row["completion_tokens"] += r.completion_tokens
        row["cached_tokens"] += r.cached_tokens
        row["cache_write_tokens"] += r.cache_write_5m_tokens + r.cache_write_1h_tokens
        row["cost_usd"] += r.cost_usd or 0
        if r.cost_usd is None or r.baseline_cost_usd is None:
            row["unpriced"] += 1
            row["baseline_cost_usd"] += r.cost_usd or 0
        else:
            row["baseline_cost_usd"] += r.baseline_cost_usd
        row["errors"] += failed(r)
        row["rate_limited"] += error == "rate_limit_error"
        row["budget_refused"] += error == "budget_exceeded"
        if "latency_hist" not in row:
            continue
        if not failed(r):
            row["latency_hist"][bucket_of(r.latency_ms)] += 1
            if r.ttft_ms is not None:
                row["ttft_hist"][bucket_of(r.ttft_ms)] += 1
        if r.difficulty is not None:
            row["difficulty_hist"][difficulty_bucket(r.difficulty)] += 1
    for row in out.values():
        for h in HISTOGRAMS:
            if h in row:
                row[h] = dict(row[h]) or None
    return out


async def fetch_hourly(
    engine: AsyncEngine, table: str = "hourly_spend"
) -> dict[tuple[Any, ...], dict[str, Any]]:
    t = Base.metadata.tables[table]
    async with engine.connect() as conn:
        rows = (await conn.execute(select(t))).mappings().all()
    key = ROLLUP_KEYS[table]
    out = {}
    for r in rows:
        row = {c: v for c, v in r.items() if c not in key}
        for h in HISTOGRAMS:
            if row.get(h) is not None:
                row[h] = {int(b): n for b, n in row[h].items()}
        out[tuple(r[c] for c in key)] = row
    return out


async def assert_rollups_match(engine: AsyncEngine, records: list[RequestRecord]) -> None:
    """Every hourly and daily rollup, and daily_spend, is exactly what the records add up to."""
    for table in ROLLUP_KEYS:
        assert await fetch_hourly(engine, table) == expected_hourly(records, table), table
    assert await fetch_daily(engine) == expected_daily(records)
