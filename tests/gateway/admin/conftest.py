"""An app with just the admin router (no lead's app factory), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.api.admin import router
from gateway.auth import KeyCache
from gateway.db.engine import make_engine, session_factory
from gateway.errors import install_handlers
from tests.gateway.db.databases import db_url, engine, pg_database, sqlite_database

__all__ = ["db_url", "engine", "pg_database", "sqlite_database"]

MASTER = "sk-master"


def build_app(
    master_key: bytes | None,
    sessions: async_sessionmaker[AsyncSession] | None,
    cache: KeyCache | None,
) -> FastAPI:
    app = FastAPI(title="admin-test")
    install_handlers(app)
    app.include_router(router)
    app.state.master_key = master_key
    app.state.sessions = sessions
    app.state.key_cache = cache
    return app


def client_for(app: FastAPI, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1", headers=headers)


def assert_error(r: Any, status: int, type_: str = "invalid_request_error") -> dict[str, Any]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] == type_
    return error


@dataclass
class Admin:
    app: FastAPI
    client: httpx.AsyncClient
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cache: KeyCache


@pytest.fixture
async def admin(db_url: str) -> AsyncIterator[Admin]:
    """The admin app on an emptied database of each backend, with a master-key client."""
    eng = make_engine(db_url)
    sessions = session_factory(eng)
    # A long TTL: a test that sees a change at once sees the invalidation, not an expiry.
    cache = KeyCache(sessions, ttl_s=3600.0, negative_ttl_s=3600.0)
    app = build_app(MASTER.encode(), sessions, cache)
    async with client_for(app, authorization=f"Bearer {MASTER}") as client:
        yield Admin(app, client, eng, sessions, cache)
    await eng.dispose()
