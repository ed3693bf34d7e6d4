"""Test databases: a throwaway PostgreSQL database per test session, and SQLite files.

Imported by the conftest files of tests/gateway/db and tests/gateway/accounting.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.db.engine import make_engine
from gateway.db.migrate import upgrade

PG_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"
# Nothing listens here (port 9 is discard; a connect is refused at once on loopback).
CLOSED_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:9/nowhere"


def pg_url(name: str) -> str:
    return f"{PG_SERVER}/{name}"


async def create_pg_database(prefix: str = "switchyard_test") -> str:
    """A new, empty, uniquely named database; returns its name."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(pg_url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return name


async def drop_pg_database(name: str) -> None:
    admin = create_async_engine(pg_url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def truncate_all(engine: AsyncEngine) -> None:
    tables = ("request_log", "daily_spend", "audit_log", "api_keys", "teams")
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))
        else:
            for table in tables:
                await conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(scope="session")
async def pg_database() -> AsyncIterator[str]:
    """URL of a migrated PostgreSQL database made for this test session (dropped at its end)."""
    name = await create_pg_database()
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
