"""Test databases: a throwaway PostgreSQL database per test session, and SQLite files.

Imported by the conftest files of tests/gateway/db and tests/gateway/accounting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.engine import make_engine
from gateway.db.migrate import upgrade
from gateway.db.models import Base
from tests.stores import create_pg_database, drop_pg_database, pg_url

# Nothing listens here (port 9 is discard; a connect is refused at once on loopback).
CLOSED_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:9/nowhere"


async def truncate_all(engine: AsyncEngine) -> None:
    # Every table the models declare, children first (SQLite deletes one by one).
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))
        else:
            for table in tables:
                await conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(scope="session")
async def pg_database() -> AsyncIterator[str]:
    """URL of a migrated PostgreSQL database made for this test session (dropped at its end)."""
    name = await create_pg_database("db")
    try:
        url = pg_url(name)
        await upgrade(url)
        yield url
    finally:
        await drop_pg_database(name)


@pytest.fixture(scope="session")
async def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("sqlite") / "switchyard.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade(url)
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
async def db_url(
    request: pytest.FixtureRequest, pg_database: str, sqlite_database: str
) -> AsyncIterator[str]:
    """A migrated database on each backend, emptied before the test."""
    url = pg_database if request.param == "postgresql" else sqlite_database
    engine = make_engine(url)
    try:
        await truncate_all(engine)
    finally:
        await engine.dispose()
    yield url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(db_url)
    try:
        yield eng
    finally:
        await eng.dispose()
