"""The background purges keep going through database failures: each failed purge is one warning that
carries its exception, the next interval tries again (and purges once the database answers), and a
shutdown cancels the job at once, whatever state the database is in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from gateway.db.engine import make_engine, session_factory
from gateway.db.labels import CapturedPrompt
from gateway.db.migrate import upgrade
from gateway.quality.capture import purge_every
from gateway.responses.store import ResponseStore
from tests.gateway.db.databases import CLOSED_PG_URL

INTERVAL_S = 0.05


async def wait_for(condition: Callable[[], object], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel the job as the lifespan does; it must end promptly, cancelled, not failed."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done and task.cancelled()


def failures(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger and r.levelno >= logging.WARNING]


async def test_an_unreachable_database_is_logged_at_each_failure_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="switchyard.quality")
    engine = make_engine(CLOSED_PG_URL)
    job = asyncio.create_task(purge_every(engine, INTERVAL_S))
    try:
        await wait_for(lambda: len(failures(caplog, "switchyard.quality")) >= 3)
        assert not job.done()  # still running, on to the next interval
    finally:
        await stop(job)
        await engine.dispose()
    for record in failures(caplog, "switchyard.quality"):
        # A warning, with the exception that made the purge fail (one record per failure, no more).
        assert record.levelno == logging.WARNING and record.exc_info is not None
        assert isinstance(record.exc_info[1], Exception)


async def test_the_next_interval_purges_once_the_database_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="switchyard.quality")
    url = f"sqlite+aiosqlite:///{tmp_path / 'switchyard.db'}"
    engine = make_engine(url)
    # An empty database (not migrated yet): every purge raises until the schema is there.
    job = asyncio.create_task(purge_every(engine, INTERVAL_S))
    try:
        await wait_for(lambda: failures(caplog, "switchyard.quality"))
        await upgrade(url)
        now = datetime.now(UTC)
        async with engine.begin() as conn:
            await conn.execute(
                insert(CapturedPrompt),
                [
                    {"request_id": "old", "ts": now, "messages": [], "expires_at": now - timedelta(days=1)},
                    {"request_id": "new", "ts": now, "messages": [], "expires_at": now + timedelta(days=1)},
                ],
            )

        async def left() -> list[str]:
            async with engine.connect() as conn:
                return list((await conn.execute(select(CapturedPrompt.request_id))).scalars())

        deadline = asyncio.get_running_loop().time() + 10
        while await left() != ["new"]:
            assert asyncio.get_running_loop().time() < deadline, "the purge never ran again"
            await asyncio.sleep(INTERVAL_S)
        assert any("purged 1 captured" in r.getMessage() for r in caplog.records)
        assert not job.done()
    finally:
        await stop(job)
        await engine.dispose()


async def test_the_response_store_purge_is_logged_and_stops_on_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="switchyard.responses")
    engine = make_engine(CLOSED_PG_URL)
    store = ResponseStore(session_factory(engine), retention_days=1)
    store.start()
    try:
        await wait_for(lambda: failures(caplog, "switchyard.responses"))
    finally:
        await asyncio.wait_for(store.aclose(), 2)
        await engine.dispose()
    [record] = failures(caplog, "switchyard.responses")
    assert record.levelno == logging.WARNING and record.exc_info is not None
