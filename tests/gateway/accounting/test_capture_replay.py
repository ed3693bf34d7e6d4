"""A batch of captured requests written twice (a flush retried after its commit went through, a spill
file replayed after a crash, the same record twice in one batch) leaves one captured row per request,
as first written: captures are written only for the log rows a batch newly adds, and their table is
keyed on request_id."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.record import Capture, RequestRecord
from gateway.accounting.spool import Spool
from gateway.accounting.store import write_records
from gateway.accounting.writer import SpendWriter
from gateway.db.labels import CapturedPrompt
from tests.gateway.accounting.helpers import expected_daily, fetch_daily, fetch_log, make_record, spill_files

EXPIRES = datetime.now(UTC) + timedelta(days=30)


def captured(i: int) -> RequestRecord:
    """Record i, captured when i is even."""
    record = make_record(i, run="cap")
    if i % 2:
        return record
    answer = b'{"choices": [{"message": {"role": "assistant", "content": "answer %d"}}]}' % i
    return dataclasses.replace(
        record, capture=Capture([{"role": "user", "content": f"question {i}"}], answer, EXPIRES)
    )


async def fetch_captures(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(CapturedPrompt.__table__))).mappings().all()
    return sorted((dict(r) for r in rows), key=lambda r: r["request_id"])


def assert_captured_once(rows: list[dict[str, Any]], records: list[RequestRecord]) -> None:
    wanted = sorted((r for r in records if r.capture is not None), key=lambda r: r.request_id)
    assert [r["request_id"] for r in rows] == [r.request_id for r in wanted]
    for row, record in zip(rows, wanted, strict=True):
        assert record.capture is not None
        assert row["messages"] == record.capture.messages
        assert row["answer"] == f"answer {record.request_id.split('-')[1]}"


async def test_a_batch_written_twice_captures_each_request_once(engine: AsyncEngine) -> None:
    records = [captured(i) for i in range(40)]
    async with engine.begin() as conn:
        assert await write_records(conn, records) == 40
    # The retry of a flush whose commit went through, this time with one record twice in it.
    async with engine.begin() as conn:
        assert await write_records(conn, [*records, records[0]]) == 0
    assert_captured_once(await fetch_captures(engine), records)
    assert len(await fetch_log(engine)) == 40
    assert await fetch_daily(engine) == expected_daily(records)


async def test_a_replayed_spill_file_adds_no_capture_twice(engine: AsyncEngine, tmp_path: Path) -> None:
    records = [captured(i) for i in range(60)]
    # A crash after the first 40 were committed, before the spill file holding them was removed.
    async with engine.begin() as conn:
        await write_records(conn, records[:40])
    spool = Spool(tmp_path)
    spool.append(records)
    spool.seal()
    writer = SpendWriter(engine, spool_dir=tmp_path, flush_interval_s=0.05, retry_min_s=0.05)
    await writer.start()
    await writer.stop()
    assert (writer.replayed, writer.written, writer.duplicates) == (60, 20, 40)
    assert spill_files(tmp_path) == []
    assert_captured_once(await fetch_captures(engine), records)
