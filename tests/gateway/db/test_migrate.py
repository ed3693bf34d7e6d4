"""Migrations build the models' schema on PostgreSQL and SQLite, and is_current tells the truth."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from gateway.accounting.store import write_records
from gateway.db.engine import make_engine
from gateway.db.migrate import (
    SchemaNotCurrentError,
    alembic_config,
    current_revision,
    ensure_schema,
    ensure_schema_or_defer,
    head_revision,
    is_current,
    upgrade,
)
from gateway.db.models import Base
from tests.gateway.accounting.helpers import assert_rollups_match, random_records
from tests.gateway.db.databases import CLOSED_PG_URL
from tests.stores import PG_PREFIX, create_pg_database, drop_pg_database, pg_url

REPO = Path(__file__).resolve().parents[3]
TABLES = {
    "teams",
    "api_keys",
    "request_log",
    "daily_spend",
    "hourly_spend",
    "hourly_team_spend",
    "hourly_model_spend",
    "hourly_team_totals",
    "daily_key_totals",
    "daily_team_spend",
    "daily_model_spend",
    "daily_team_totals",
    "audit_log",
    "config_versions",
    "feedback",
    "shadow_verdicts",
    "captured_prompts",
    "stored_responses",
    "alembic_version",
}


@pytest.fixture(params=["postgresql", "sqlite"])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database nothing has touched yet."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    name = await create_pg_database("migrate")
    try:
        yield pg_url(name)
    finally:
        await drop_pg_database(name)


async def _schema_diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()


async def test_upgrade_builds_the_models_schema_and_is_current_follows(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        assert await current_revision(engine) is None
        assert await is_current(engine) is False

        await upgrade(empty_url)
        assert await current_revision(engine) == head_revision()
        assert await is_current(engine) is True
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert tables == TABLES
        assert await _schema_diff(empty_url) == []

        await upgrade(empty_url)  # a second run is a no-op
        assert await is_current(engine) is True

        # A database at any other revision is not current.
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
        assert await is_current(engine) is False
    finally:
        await engine.dispose()


async def test_ensure_schema_migrates_sqlite_and_refuses_stale_postgresql(empty_url: str) -> None:
    if empty_url.startswith("sqlite"):
        await ensure_schema(empty_url)
        engine = make_engine(empty_url)
        try:
            assert await is_current(engine)
        finally:
            await engine.dispose()
        return
    with pytest.raises(SchemaNotCurrentError, match="switchyard migrate"):
        await ensure_schema(empty_url)
    await upgrade(empty_url)
    await ensure_schema(empty_url)


async def test_start_check_defers_only_a_postgresql_that_does_not_answer(empty_url: str) -> None:
    """A refused connection is an outage (start, check later); a server that answers with the wrong
    schema, or without the database, is a misconfiguration and still stops the start."""
    assert await ensure_schema_or_defer(CLOSED_PG_URL) is False
    if empty_url.startswith("sqlite"):
        assert await ensure_schema_or_defer(empty_url) is True
        return
    with pytest.raises(SchemaNotCurrentError, match="switchyard migrate"):
        await ensure_schema_or_defer(empty_url)
    with pytest.raises(SQLAlchemyError, match="does not exist"):
        await ensure_schema_or_defer(pg_url(f"{PG_PREFIX}no_such_database"))
    await upgrade(empty_url)
    assert await ensure_schema_or_defer(empty_url) is True


async def test_alembic_cli_runs_from_the_ini_in_migrations(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    ini = str(REPO / "migrations" / "alembic.ini")
    # From another directory: nothing may depend on the cwd.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        "-c",
        ini,
        "-x",
        f"url={url}",
        "upgrade",
        "head",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    engine = make_engine(url)
    try:
        assert await is_current(engine)
    finally:
        await engine.dispose()


async def test_workers_migrating_at_once_take_turns(empty_url: str) -> None:
    await asyncio.gather(*(upgrade(empty_url) for _ in range(3)))
    engine = make_engine(empty_url)
    try:
        assert await is_current(engine)
    finally:
        await engine.dispose()


async def test_0004_sums_the_hours_already_stored_into_the_daily_rollups(empty_url: str) -> None:
    """An upgrade from 0003 fills the daily rollups from the hourly ones (histograms merged), so the
    two grains agree on the days logged before it."""
    await upgrade(empty_url)
    # Without cache writes: the downgrade to 0003 drops their columns (0005) with what they held.
    records = [
        replace(r, cache_write_5m_tokens=0, cache_write_1h_tokens=0)
        for r in random_records(400, seed=11, hours=80)
    ]
    engine = make_engine(empty_url)
    try:
        async with engine.begin() as conn:
            await write_records(conn, records)

        def downgrade(conn: Connection) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")

        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.connect() as conn:
            assert "daily_team_spend" not in await conn.run_sync(lambda c: inspect(c).get_table_names())
        await upgrade(empty_url)
        await assert_rollups_match(engine, records)
    finally:
        await engine.dispose()
