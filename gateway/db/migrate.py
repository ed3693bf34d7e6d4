"""Schema migrations, run from code: `switchyard migrate`, and the server's start-up check.

The Alembic scripts live inside the package (gateway/db/migrations) so that an installed gateway
finds them wherever it runs; migrations/alembic.ini points the alembic CLI at the same folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.engine import is_unreachable, make_engine

log = logging.getLogger("switchyard")

SCRIPT_LOCATION = Path(__file__).resolve().with_name("migrations")
# pg_advisory_xact_lock key held while migrating (any constant unique to this application).
_MIGRATION_LOCK = 0x5377_6974_6368


class SchemaNotCurrentError(RuntimeError):
    """The database is not at the schema this gateway needs."""


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    return cfg


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads, expected one: {heads}")
    return heads[0]


async def upgrade(url: str, revision: str = "head") -> None:
    """Apply every migration up to `revision` (alembic upgrade head) on the database at `url`."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_upgrade_sync, revision)
            await conn.commit()
    finally:
        await engine.dispose()


def _upgrade_sync(conn: Connection, revision: str) -> None:
    # Several processes may start at once (workers of one server): the first migrates, the others
    # wait for it and then find nothing to do. Both locks last until the commit in upgrade().
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN EXCLUSIVE")
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def is_current(engine: AsyncEngine) -> bool:
    """True when the database is at the newest migration."""
    return await current_revision(engine) == head_revision()


async def ensure_schema(url: str) -> None:
    """Start-up check: migrate an embedded SQLite database; refuse an out-of-date PostgreSQL one.

    PostgreSQL is shared and its upgrades are an operator's decision (several gateway processes
    starting at once must not race to migrate), so it is only checked.
    """
    if make_url(url).get_backend_name() == "sqlite":
        await upgrade(url)
        return
    engine = make_engine(url)
    try:
        await require_current(engine, url)
    finally:
        await engine.dispose()


async def ensure_schema_or_defer(url: str, *, warn: bool = True) -> bool:
    """ensure_schema, except that a PostgreSQL that does not answer is no reason to stay down.

    Replicas already running keep serving through an outage (cached keys, the spool); a replica
    restarted during one should too. Returns False when the check could not run: the caller checks
    again once the database answers (gateway.readiness). A database that answers with the wrong
    schema, a wrong password or no such database still raises: those need an operator, not time.
    `warn=False` for a caller whose outage the app's own start-up check will report anyway.
    """
    try:
        await ensure_schema(url)
    except Exception as exc:
        if make_url(url).get_backend_name() == "sqlite" or not is_unreachable(exc):
            raise
        if not warn:
            return False
        shown = make_url(url).render_as_string(hide_password=True)
        log.warning(
            "database %s unreachable (%s): starting without it; records wait in the spool, keys not "
            "cached yet answer 503, and the schema is checked once the database answers",
            shown,
            type(exc).__name__,
        )
        return False
    return True


async def require_current(engine: AsyncEngine, url: str) -> None:
    """Raise SchemaNotCurrentError unless the database behind `engine` is at the newest migration."""
    current = await current_revision(engine)
    head = head_revision()
    if current != head:
        shown = make_url(url).render_as_string(hide_password=True)
        state = "has no schema" if current is None else f"is at revision {current}"
        raise SchemaNotCurrentError(
            f"database {shown} {state}, this gateway needs revision {head}: run `switchyard migrate` first"
        )
