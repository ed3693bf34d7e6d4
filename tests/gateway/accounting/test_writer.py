"""The spend writer on PostgreSQL and SQLite: exact rows, exact aggregates, nothing lost or doubled."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.record import RequestRecord
from gateway.accounting.spool import Spool
from gateway.accounting.store import write_records
from gateway.accounting.writer import SpendWriter
from gateway.db.engine import make_engine
from tests.gateway.accounting.helpers import (
    assert_logged_exactly,
    expected_daily,
    fetch_daily,
    fetch_log,
    make_record,
    spill_files,
    wait_for,
)
from tests.gateway.db.databases import CLOSED_PG_URL

FAST = {"flush_interval_s": 0.05, "retry_min_s": 0.05, "retry_max_s": 0.2}


def rejected_ids(spool: Path) -> list[str]:
    return [orjson.loads(line)["request_id"] for p in spool.glob("rejected-*.jsonl") for line in p.open("rb")]


async def submit_concurrently(writer: SpendWriter, records: list[RequestRecord], tasks: int = 20) -> None:
    async def one(part: list[RequestRecord]) -> None:
        for i, r in enumerate(part):
            writer.submit(r)
            if i % 7 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(one(records[t::tasks]) for t in range(tasks)))


async def test_concurrent_submits_land_exactly_once_with_exact_sums(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    records = [make_record(i) for i in range(3000)]
    writer = SpendWriter(engine, spool_dir=tmp_path, batch_size=200, **FAST)
    await writer.start()
    await submit_concurrently(writer, records)
    await writer.stop()

    assert_logged_exactly(await fetch_log(engine), records)
    assert await fetch_daily(engine) == expected_daily(records)
    stats = writer.stats()
    assert stats["written"] == 3000 and stats["pending"] == 0 and stats["spilled"] == 0
    assert spill_files(tmp_path) == []


async def test_replaying_the_same_records_writes_nothing_twice(engine: AsyncEngine, tmp_path: Path) -> None:
    records = [make_record(i) for i in range(400)]
    first = SpendWriter(engine, spool_dir=tmp_path, batch_size=100, **FAST)
    await first.start()
    for r in records:
        first.submit(r)
    await first.stop()

    more = [make_record(i, run="more") for i in range(400, 450)]
    second = SpendWriter(engine, spool_dir=tmp_path, batch_size=100, **FAST)
    await second.start()
    for r in [*records, *more, *records[:10]]:  # duplicates across and within batches
        second.submit(r)
    await second.stop()

    assert_logged_exactly(await fetch_log(engine), records + more)
    assert await fetch_daily(engine) == expected_daily(records + more)
    assert second.written == 50 and second.duplicates == 410

    async with engine.begin() as conn:
        assert await write_records(conn, records[:50] + records[:50]) == 0
    assert await fetch_daily(engine) == expected_daily(records + more)


async def test_a_record_the_database_refuses_does_not_hold_up_the_rest(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    records = [make_record(i) for i in range(300)]
    bad = make_record(10_000, run="bad")
    bad.cost_usd = Decimal("1e12")  # beyond NUMERIC(20, 10) / the SQLite integer column
    writer = SpendWriter(engine, spool_dir=tmp_path, batch_size=100, **FAST)
    await writer.start()
    for r in [*records[:150], bad, *records[150:]]:
        writer.submit(r)
    await writer.stop()

    assert_logged_exactly(await fetch_log(engine), records)
    assert await fetch_daily(engine) == expected_daily(records)
    assert writer.rejected == 1
    assert rejected_ids(tmp_path) == [bad.request_id]


async def test_records_refused_before_reaching_the_database_are_set_aside_too(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Bad values the driver or our checks refuse (no SQLSTATE) count as bad data, not as an outage."""
    records = [make_record(i) for i in range(40)]
    naive = make_record(20_000, run="naive")
    naive.ts = naive.ts.replace(tzinfo=None)
    wrong_type = make_record(20_001, run="type")
    wrong_type.prompt_tokens = "many"  # type: ignore[assignment]
    not_a_time = make_record(20_002, run="ts")
    not_a_time.ts = "yesterday"  # type: ignore[assignment]
    bad = [naive, wrong_type, not_a_time]
    writer = SpendWriter(engine, spool_dir=tmp_path, batch_size=50, **FAST)
    await writer.start()
    for r in [*records[:20], *bad, *records[20:]]:
        writer.submit(r)
    await writer.stop()

    assert_logged_exactly(await fetch_log(engine), records)
    assert await fetch_daily(engine) == expected_daily(records)
    assert sorted(rejected_ids(tmp_path)) == sorted(r.request_id for r in bad)
    assert writer.failures == 0


async def test_postgres_batches_refuse_to_run_outside_a_transaction(pg_database: str) -> None:
    """The COPY stage empties at every commit: under autocommit the rows would vanish as duplicates."""
    eng = make_engine(pg_database)
    try:
        async with eng.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            with pytest.raises(RuntimeError, match="transaction"):
                await write_records(auto, [make_record(30_000, run="autocommit")])
    finally:
        await eng.dispose()


@pytest.fixture
def unreachable_url(db_url: str, tmp_path: Path) -> str:
    if db_url.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path / 'no-such-dir' / 'x.db'}"
    return CLOSED_PG_URL


async def test_outage_spills_to_disk_and_the_next_writer_replays_it_once(
    db_url: str, unreachable_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    records = [make_record(i) for i in range(1000)]
    down = SpendWriter(unreachable_url, spool_dir=spool, batch_size=50, max_buffer=100, **FAST)
    await down.start()
    await submit_concurrently(down, records, tasks=5)
    await wait_for(lambda: down.spilled >= 850, what="the overflow to spill")
    await down.stop()
    assert down.spilled == 1000 and down.written == 0 and down.failures > 0
    assert spill_files(spool) and await fetch_log(engine) == {}

    up = SpendWriter(db_url, spool_dir=spool, batch_size=200, **FAST)
    await up.start()
    await up.stop()
    assert up.replayed == 1000 and up.written == 1000 and up.corrupt == 0
    assert_logged_exactly(await fetch_log(engine), records)
    assert await fetch_daily(engine) == expected_daily(records)
    assert spill_files(spool) == []


async def test_leftovers_of_a_crash_replay_exactly_once(engine: AsyncEngine, tmp_path: Path) -> None:
    records = [make_record(i) for i in range(300)]
    # The crash came after the first 100 were committed but before their spill file was removed...
    async with engine.begin() as conn:
        await write_records(conn, records[:100])
    spool = Spool(tmp_path)
    spool.append(records[:200])
    spool.seal()
    spool.append(records[200:])
    # ...and in the middle of a write: a torn last line.
    spool.seal()
    with spill_files(tmp_path)[-1].open("ab") as f:
        f.write(orjson.dumps(make_record(999, run="torn").to_json())[:40])

    writer = SpendWriter(engine, spool_dir=tmp_path, **FAST)
    await writer.start()
    await writer.stop()
    assert writer.replayed == 300 and writer.written == 200 and writer.duplicates == 100
    assert writer.corrupt == 1
    assert_logged_exactly(await fetch_log(engine), records)
    assert await fetch_daily(engine) == expected_daily(records)
    assert spill_files(tmp_path) == []


async def test_two_processes_replaying_one_spool_share_it(engine: AsyncEngine, tmp_path: Path) -> None:
    records = [make_record(i) for i in range(1000)]
    spool = Spool(tmp_path)
    for i in range(0, 1000, 125):
        spool.append(records[i : i + 125])
        spool.seal()
    writers = [SpendWriter(engine, spool_dir=tmp_path, batch_size=50, **FAST) for _ in range(2)]
    await asyncio.gather(*(w.start() for w in writers))
    await asyncio.gather(*(w.stop() for w in writers))
    assert sum(w.replayed for w in writers) == 1000
    assert sum(w.written for w in writers) == 1000
    assert_logged_exactly(await fetch_log(engine), records)
    assert await fetch_daily(engine) == expected_daily(records)


async def test_submit_after_stop_goes_to_disk(engine: AsyncEngine, tmp_path: Path) -> None:
    writer = SpendWriter(engine, spool_dir=tmp_path, **FAST)
    await writer.start()
    await writer.stop()
    late = make_record(1, run="late")
    writer.submit(late)
    assert writer.spilled == 1 and spill_files(tmp_path)
    follower = SpendWriter(engine, spool_dir=tmp_path, **FAST)
    await follower.start()
    await follower.stop()
    assert_logged_exactly(await fetch_log(engine), [late])
