"""Hourly rollups on PostgreSQL and SQLite: written by the real spend writer they equal the log, exactly
(savings included); percentiles from their histograms are within a bucket of the exact figures;
reporting time zones move requests between days, never in or out of a range; a failed or repeated
write counts nothing twice."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting import store
from gateway.accounting.histogram import bucket_of, difficulty_bucket
from gateway.accounting.record import RequestRecord
from gateway.accounting.rollups import (
    InvalidZoneError,
    histograms,
    offsets,
    percentiles,
    totals,
    window,
)
from gateway.accounting.store import write_records
from gateway.accounting.writer import SpendWriter
from gateway.db.engine import session_factory
from gateway.db.models import RequestLog
from tests.gateway.accounting.helpers import (
    START,
    assert_rollups_match,
    failed,
    random_records,
    wait_for,
)
from tests.gateway.db.databases import CLOSED_PG_URL

FAST = {"flush_interval_s": 0.05, "retry_min_s": 0.05, "retry_max_s": 0.2}


async def write_with_writer(engine: AsyncEngine, records: list[RequestRecord], spool: Path) -> SpendWriter:
    writer = SpendWriter(engine, spool_dir=spool, batch_size=37, **FAST)
    await writer.start()
    for r in records:
        writer.submit(r)
    await writer.stop()
    return writer


def sums(records: list[RequestRecord]) -> dict[str, Any]:
    priced = [r for r in records if r.cost_usd is not None and r.baseline_cost_usd is not None]
    return {
        "requests": len(records),
        "errors": sum(failed(r) for r in records),
        "rate_limited": sum(r.error_type == "rate_limit_error" for r in records),
        "budget_refused": sum(r.error_type == "budget_exceeded" for r in records),
        "prompt_tokens": sum(r.prompt_tokens for r in records),
        "completion_tokens": sum(r.completion_tokens for r in records),
        "cached_tokens": sum(r.cached_tokens for r in records),
        "cost_usd": sum((r.cost_usd or Decimal(0) for r in records), Decimal(0)),
        "savings_usd": sum((r.baseline_cost_usd - r.cost_usd for r in priced), Decimal(0)),  # type: ignore[operator]
        "unpriced": len(records) - len(priced),
    }


def whole(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum of totals() rows, in sums()' terms."""
    fields = ("requests", "errors", "rate_limited", "budget_refused", "prompt_tokens")
    fields += ("completion_tokens", "cached_tokens", "cost_usd", "savings_usd", "unpriced")
    return {f: sum((r[f] for r in rows), Decimal(0) if f.endswith("usd") else 0) for f in fields}


async def test_rollups_written_by_the_writer_equal_the_log(engine: AsyncEngine, tmp_path: Path) -> None:
    records = random_records(1500, seed=1)
    writer = await write_with_writer(engine, records, tmp_path)
    assert writer.written == len(records)
    await assert_rollups_match(engine, records)

    # And the query module, against the log as the database holds it.
    async with engine.connect() as conn:
        logged = [
            RequestRecord(**{k: v for k, v in row.items()})
            for row in (await conn.execute(select(RequestLog.__table__))).mappings()
        ]
    assert {r.request_id: r.baseline_cost_usd for r in logged} == {
        r.request_id: r.baseline_cost_usd for r in records
    }
    w = window(START - timedelta(hours=1), START + timedelta(hours=61))
    async with session_factory(engine)() as session:
        [everything] = await totals(session, w)
        assert everything == {**everything, **sums(logged)}
        for by in (["team"], ["key"], ["model"], ["tier"], ["error_type"], ["day", "team", "model"]):
            rows = await totals(session, w, group_by=by)  # type: ignore[arg-type]
            assert whole(rows) == sums(logged), by
            assert len({tuple(r[g] for g in by) for r in rows}) == len(rows)
        team_a = await totals(session, w, team_id="team-a", group_by=["model"])
        assert whole(team_a) == sums([r for r in logged if r.team_id == "team-a"])
        top = await totals(session, w, group_by=["key"], top=2)
        assert [r["cost_usd"] for r in top] == sorted((r["cost_usd"] for r in top), reverse=True)
        assert len(top) == 2
        assert {r["all_cost_usd"] for r in top} == {everything["cost_usd"]}  # every key's, not the two


async def test_savings_are_exact(engine: AsyncEngine) -> None:
    base = random_records(4, seed=2)
    a, b, c, d = base
    a.cost_usd, a.baseline_cost_usd = Decimal("0.0000000001"), Decimal("0.3000000003")
    b.cost_usd, b.baseline_cost_usd = Decimal("0.1"), Decimal("0.0999999999")  # routing cost more
    c.cost_usd, c.baseline_cost_usd = Decimal("0.25"), None  # strongest candidate unpriced
    d.cost_usd, d.baseline_cost_usd = None, Decimal("0.5")  # deployment unpriced
    for r in base:
        r.ts, r.team_id, r.status, r.error_type = START, "team-s", 200, None
    async with engine.begin() as conn:
        await write_records(conn, base)
    w = window(START, START + timedelta(hours=1))
    async with session_factory(engine)() as session:
        [row] = await totals(session, w, team_id="team-s")
    assert row["cost_usd"] == Decimal("0.3500000001")
    assert row["savings_usd"] == Decimal("0.3000000003") - Decimal("0.0000000001") - Decimal("0.0000000001")
    assert row["baseline_cost_usd"] - row["cost_usd"] == row["savings_usd"]
    assert row["unpriced"] == 2


async def test_percentiles_come_within_a_bucket_of_the_exact_ones(engine: AsyncEngine) -> None:
    records = random_records(2000, seed=3)
    async with engine.begin() as conn:
        for i in range(0, len(records), 300):  # several batches: the maps are merged in the database
            await write_records(conn, records[i : i + 300])
    w = window(START, START + timedelta(hours=60))
    async with session_factory(engine)() as session:
        by_model = await percentiles(session, w, group_by=["model"], qs=(0.5, 0.95, 0.99))
        ttft = await percentiles(session, w, "ttft", team_id="team-a", qs=(0.5, 0.95))
        difficulty = await histograms(session, w, "difficulty")
    assert by_model, "some latencies"
    for row in by_model:
        values = sorted(
            r.latency_ms
            for r in records
            if not failed(r) and (r.deployment or r.requested_model) == row["model"]
        )
        assert row["count"] == len(values)
        for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            exact = values[max(1, math.ceil(q * len(values))) - 1]
            assert abs(bucket_of(row[name]) - bucket_of(exact)) <= 1, (row, name, exact)
    values = sorted(
        r.ttft_ms for r in records if r.team_id == "team-a" and not failed(r) and r.ttft_ms is not None
    )  # type: ignore[misc]
    [row] = ttft
    assert row["count"] == len(values)
    assert abs(bucket_of(row["p95"]) - bucket_of(values[math.ceil(0.95 * len(values)) - 1])) <= 1
    [row] = difficulty
    assert row["buckets"] == Counter(
        difficulty_bucket(r.difficulty) for r in records if r.difficulty is not None
    )


async def test_a_time_zone_moves_requests_between_days_and_keeps_the_range_total(engine: AsyncEngine) -> None:
    late = random_records(3, seed=4, hours=1)
    for r, ts in zip(
        late,
        ("2026-03-01T23:30:00+00:00", "2026-03-01T12:00:00+00:00", "2026-03-02T12:00:00+00:00"),
        strict=True,
    ):
        r.ts = datetime.fromisoformat(ts)
    async with engine.begin() as conn:
        await write_records(conn, late)
    async with session_factory(engine)() as session:
        utc = await totals(session, window(date(2026, 3, 1), date(2026, 3, 3)), group_by=["day"])
        berlin = await totals(
            session, window(date(2026, 3, 1), date(2026, 3, 3), "Europe/Berlin"), group_by=["day"]
        )
        # 23:30 UTC is 00:30 in Berlin the next day.
        assert [(r["day"], r["requests"]) for r in utc] == [(date(2026, 3, 1), 2), (date(2026, 3, 2), 1)]
        assert [(r["day"], r["requests"]) for r in berlin] == [(date(2026, 3, 1), 1), (date(2026, 3, 2), 2)]
        assert whole(utc) == whole(berlin) == sums(late)
        # A range of one Berlin day.
        [one] = await totals(session, window(date(2026, 3, 2), date(2026, 3, 3), "Europe/Berlin"))
        assert one["requests"] == 2
        hours = await totals(
            session, window(date(2026, 3, 2), date(2026, 3, 3), "Europe/Berlin"), group_by=["hour"]
        )
        assert [r["hour"].isoformat() for r in hours] == [
            "2026-03-02T00:00:00+01:00",
            "2026-03-02T13:00:00+01:00",
        ]


@pytest.mark.parametrize(
    ("tz", "first", "last"),
    [
        ("Europe/Berlin", date(2026, 3, 27), date(2026, 3, 31)),  # clocks go forward on the 29th
        ("America/New_York", date(2026, 10, 30), date(2026, 11, 3)),  # and back on Nov 1
        ("Asia/Kolkata", date(2026, 5, 1), date(2026, 5, 4)),  # +05:30
        ("Australia/Lord_Howe", date(2026, 4, 3), date(2026, 4, 7)),  # +11 -> +10:30
    ],
)
async def test_days_in_a_zone_are_its_hours_wherever_they_start(
    engine: AsyncEngine, tz: str, first: date, last: date
) -> None:
    """One request at the middle of every UTC hour around a change of offset: each local day holds the
    hours that start in it, and the days add up to the range."""
    zone = ZoneInfo(tz)
    begin = datetime.combine(first, datetime.min.time(), zone).astimezone(UTC) - timedelta(hours=3)
    records = random_records(24 * 6, seed=5, hours=1)
    for i, r in enumerate(records):
        r.ts = begin.replace(minute=0, second=0, microsecond=0) + timedelta(hours=i, minutes=30)
    async with engine.begin() as conn:
        await write_records(conn, records)
    w = window(first, last, tz)
    async with session_factory(engine)() as session:
        rows = await totals(session, w, group_by=["day"])
        [everything] = await totals(session, w)
    want: Counter[date] = Counter()
    for r in records:
        hour = r.ts.replace(minute=0)
        if w.start <= hour < w.end:
            want[hour.astimezone(zone).date()] += 1
    assert {r["day"]: r["requests"] for r in rows} == dict(want)
    assert everything["requests"] == sum(want.values())
    assert [r["day"] for r in rows] == [first + timedelta(days=i) for i in range((last - first).days)]
    if tz == "Europe/Berlin":
        assert want[date(2026, 3, 29)] == 23
    if tz == "America/New_York":
        assert want[date(2026, 11, 1)] == 25


def test_windows_and_offsets() -> None:
    w = window(date(2026, 3, 28), date(2026, 3, 31), "Europe/Berlin")
    assert (w.start, w.end) == (datetime(2026, 3, 27, 23, tzinfo=UTC), datetime(2026, 3, 30, 22, tzinfo=UTC))
    assert w.hours == 71
    assert offsets(w) == [(w.start, 60), (datetime(2026, 3, 29, 1, tzinfo=UTC), 120)]
    assert window(date(2026, 3, 2), date(2026, 3, 3)).previous() == window(date(2026, 3, 1), date(2026, 3, 2))
    prev = w.previous()
    assert (prev.local_start.date(), prev.local_end.date()) == (date(2026, 3, 25), date(2026, 3, 28))
    kolkata = window(date(2026, 5, 1), date(2026, 5, 2), "Asia/Kolkata")  # midnight = 18:30 UTC
    assert kolkata.start == datetime(2026, 4, 30, 19, tzinfo=UTC) and kolkata.hours == 24
    aware = window(datetime(2026, 5, 1, 10, 15, tzinfo=UTC), datetime(2026, 5, 1, 12, tzinfo=UTC))
    assert (aware.start.hour, aware.end.hour) == (11, 12)
    with pytest.raises(InvalidZoneError):
        window(date(2026, 5, 1), date(2026, 5, 2), "Mars/Olympus")
    with pytest.raises(ValueError):
        window(date(2026, 5, 2), date(2026, 5, 2))
    with pytest.raises(ValueError):
        window(date(2020, 1, 1), date(2026, 1, 1))


async def test_a_failed_write_leaves_nothing_and_the_retry_counts_once(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollups commit with the log rows or not at all: a batch that fails after its log INSERT
    (here, in the rollups) is retried whole by the writer and counted once."""
    records = random_records(300, seed=7)
    real = store.rollups
    failures = iter([True, False, True])

    def flaky(new: Any) -> Any:
        if next(failures, False):
            raise ConnectionResetError("connection lost mid-batch")  # an outage, not bad data
        return real(new)

    monkeypatch.setattr(store, "rollups", flaky)
    writer = SpendWriter(engine, spool_dir=tmp_path, batch_size=37, **FAST)
    await writer.start()
    for r in records:
        writer.submit(r)
    await wait_for(lambda: writer.written == len(records), what="the retries")
    await writer.stop()
    assert writer.failures >= 2 and writer.written == len(records) and writer.duplicates == 0
    await assert_rollups_match(engine, records)

    # Replaying everything (a spill file replayed after a crash): already logged, nothing added.
    async with engine.begin() as conn:
        assert await write_records(conn, records) == 0
    await assert_rollups_match(engine, records)


async def test_spilled_records_replay_into_the_rollups(engine: AsyncEngine, tmp_path: Path) -> None:
    records = random_records(200, seed=8)
    down = SpendWriter(CLOSED_PG_URL, spool_dir=tmp_path, batch_size=50, stop_timeout_s=1.0, **FAST)
    await down.start()
    for r in records:
        down.submit(r)
    await down.stop()
    assert down.written == 0 and down.spilled == len(records)

    up = SpendWriter(engine, spool_dir=tmp_path, batch_size=50, **FAST)
    await up.start()
    up.submit(records[0])  # also live: counted once
    await up.stop()
    assert up.replayed == len(records)
    await assert_rollups_match(engine, records)
