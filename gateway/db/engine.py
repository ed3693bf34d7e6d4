"""Async engines for PostgreSQL (asyncpg) and SQLite (aiosqlite), and session factories."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

_SUPPORTED = ("postgresql+asyncpg", "sqlite+aiosqlite")
# Driverless schemes (as LiteLLM, libpq and most hosting dashboards write them) and the driver each gets.
_DRIVER_FOR = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}
# Query parameters asyncpg takes (anything else fails at the first connect, not at start-up); libpq's
# `sslmode` is asyncpg's `ssl`, with the same values.
_PG_PARAMS = ("ssl", "target_session_attrs", "passfile", "prepared_statement_cache_size")
# SQLSTATEs of a server that is there but not taking work now: connection exceptions (class 08),
# too many connections, starting up or shutting down. Retrying later can succeed; a wrong password,
# a missing database or a syntax error cannot, and must not be mistaken for an outage.
_TRANSIENT_SQLSTATES = ("08", "53300", "57P01", "57P02", "57P03")


def normalize_url(url: str | URL) -> str:
    """`postgresql://`, `postgres://` and `sqlite://` URLs with their async driver; ValueError (with a
    message that never shows the password) for a URL or a scheme Switchyard cannot use."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise ValueError("not a database URL (expected e.g. postgresql://user:pass@host:5432/db)") from None
    parsed = parsed.set(drivername=_DRIVER_FOR.get(parsed.drivername, parsed.drivername))
    if parsed.drivername not in _SUPPORTED:
        accepted = ", ".join(f"{s}://" for s in (*_DRIVER_FOR, *_SUPPORTED))
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}: use one of {accepted}")
    if parsed.drivername == "postgresql+asyncpg" and parsed.query:
        query = dict(parsed.query)
        if "sslmode" in query:
            query.setdefault("ssl", query.pop("sslmode"))
        unknown = sorted(set(query) - set(_PG_PARAMS))
        if unknown:
            raise ValueError(
                f"unsupported PostgreSQL URL parameter(s) {', '.join(unknown)}: accepted are sslmode, "
                + ", ".join(_PG_PARAMS)
            )
        parsed = parsed.set(query=query)
    return parsed.render_as_string(hide_password=False)


def make_engine(
    url: str,
    *,
    pool_size: int | None = None,
    connect_timeout: float = 10.0,
    command_timeout: float = 60.0,
    echo: bool = False,
) -> AsyncEngine:
    """An AsyncEngine for a PostgreSQL (asyncpg) or SQLite (aiosqlite) URL (see `normalize_url`).

    Timeouts bound how long a write can hang on an unreachable server, so the spend writer notices
    an outage and spills instead of waiting forever.
    """
    parsed = make_url(normalize_url(url))
    # Error messages and echo never show bound parameters: key hashes are among them.
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    if parsed.drivername == "postgresql+asyncpg":
        engine = create_async_engine(
            parsed,
            pool_size=pool_size or 10,
            max_overflow=10,
            pool_timeout=connect_timeout,
            # Connections die with a server restart; a stale one costs a failed request otherwise.
            pool_pre_ping=True,
            pool_recycle=1800,
            connect_args={
                "timeout": connect_timeout,
                "command_timeout": command_timeout,
                # The dashboard's rollup queries cost enough for the planner to JIT-compile them, which
                # took 400 ms for a 30 ms query (30 days of a team by key); nothing here gains by it.
                "server_settings": {"jit": "off"},
            },
            **kwargs,
        )
        return engine

    memory = parsed.database in (None, "", ":memory:") or "mode=memory" in str(parsed)
    if memory:
        # Every connection to :memory: would be a new empty database: share one.
        engine = create_async_engine(
            parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}, **kwargs
        )
    else:
        engine = create_async_engine(
            parsed,
            pool_size=pool_size or 5,
            max_overflow=5,
            connect_args={"timeout": connect_timeout},
            **kwargs,
        )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas(memory, connect_timeout))
    return engine


def _sqlite_pragmas(memory: bool, busy_timeout_s: float) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        if not memory:
            # WAL: readers (admin, auth) never block the spend writer, nor it them.
            _use_wal(cursor, busy_timeout_s)
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


def _use_wal(cursor: Any, timeout_s: float) -> None:
    """Switching a new file to WAL needs it to itself, and SQLite answers "database is locked" at once
    (no busy wait) while another process holds it, as when several workers start together: retry."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # the async adapter re-wraps sqlite3's OperationalError
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (no lazy refresh in async code)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def is_unreachable(exc: BaseException) -> bool:
    """True when `exc` says the database could not be reached (or not now), not that it refused us."""
    if isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        state = str(getattr(exc.orig, "sqlstate", None) or "")
        return state.startswith(_TRANSIENT_SQLSTATES)
    return False
