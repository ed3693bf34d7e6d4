"""Database URLs as people write them (libpq, LiteLLM, hosting dashboards) reach the async drivers."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from gateway.db.engine import make_engine, normalize_url


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("postgresql://u:p%40ss@db:5432/app", "postgresql+asyncpg://u:p%40ss@db:5432/app"),
        ("postgres://u@db/app?sslmode=require", "postgresql+asyncpg://u@db/app?ssl=require"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("sqlite:///./switchyard.db", "sqlite+aiosqlite:///./switchyard.db"),
        ("sqlite+aiosqlite://", "sqlite+aiosqlite://"),
    ],
)
def test_driverless_urls_get_the_async_driver(url: str, normalized: str) -> None:
    assert normalize_url(url) == normalized


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:hunter2@db/app", "unsupported database URL scheme 'mysql': use one of postgresql://"),
        ("postgresql+psycopg2://u:hunter2@db/app", "unsupported database URL scheme 'postgresql+psycopg2'"),
        ("postgresql://u:hunter2@db/app?schema=public", "unsupported PostgreSQL URL parameter(s) schema"),
        ("not a url", "not a database URL"),
    ],
)
def test_unusable_urls_are_one_clear_line(url: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        normalize_url(url)
    assert str(err.value).startswith(message)
    assert "hunter2" not in str(err.value) and "\n" not in str(err.value)


async def test_libpq_style_url_connects_to_postgresql() -> None:
    engine = make_engine("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("select 1"))).scalar() == 1
    finally:
        await engine.dispose()
