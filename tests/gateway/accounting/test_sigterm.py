"""A writer process stopped by SIGTERM mid-load leaves exactly the records it acknowledged."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import orjson
from sqlalchemy import func, select

from gateway.db.engine import make_engine
from gateway.db.models import DailySpend, RequestLog
from tests.gateway.accounting.helpers import spill_files
from tests.gateway.db.databases import truncate_all

REPO = Path(__file__).resolve().parents[3]


async def test_sigterm_mid_load_loses_and_doubles_nothing(pg_database: str, tmp_path: Path) -> None:
    engine = make_engine(pg_database)
    await truncate_all(engine)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.gateway.accounting.sigterm_child",
        pg_database,
        str(tmp_path),
        "sigterm",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
        await asyncio.sleep(1.0)  # under load: batches are in flight and more are queued
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    report = orjson.loads(out.splitlines()[-1])
    acknowledged = report["acknowledged"]
    assert acknowledged > 1000, report

    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(func.count()).select_from(RequestLog))).scalar_one()
            requests = (await conn.execute(select(func.sum(DailySpend.requests)))).scalar_one()
    finally:
        await engine.dispose()
    assert rows == acknowledged and requests == acknowledged, report
    assert report["stats"]["pending"] == 0 and report["stats"]["spilled"] == 0
    assert spill_files(tmp_path) == []
