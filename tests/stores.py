"""Where the test suite keeps its data on the PostgreSQL and Redis it shares with whoever else uses them,
and the guards that keep it off anyone else's data.

PostgreSQL: every database the suite makes is named switchyard_pytest_<purpose>_<pid>_<8 hex> (unique
per run, so several checkouts can run the suite at once) and dropped by the fixture that made it;
`drop_pg_database` refuses any other name.

Redis numbers its databases instead of naming them, so the suite takes one, TEST_REDIS_DB, and marks it
with OWNER_KEY. A database that holds keys but not that mark is someone's data: `claim_redis` refuses it
and the suite writes nothing there. Runs share the database, each registered in RUNS_KEY with a lease;
the database is emptied only while no other run's lease is live: when a run starts alone (what a
killed run left goes) and when the last one ends. Claim and release are scripts, so the check and the
flush are one step on the server.
"""

from __future__ import annotations

import os
import re
import time
import uuid

import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

PG_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"
PG_PREFIX = "switchyard_pytest_"
_PG_NAME = re.compile(rf"{PG_PREFIX}[a-z0-9_]+_\d+_[0-9a-f]{{8}}")

REDIS_SERVER = "redis://127.0.0.1:6379"
# The last of Redis' 16 default databases: the least likely to hold an application's data.
TEST_REDIS_DB = 15
TEST_REDIS_URL = f"{REDIS_SERVER}/{TEST_REDIS_DB}"
OWNER_KEY = "switchyard:pytest:owner"
RUNS_KEY = "switchyard:pytest:runs"
OWNER_TEXT = "the Switchyard test suite (tests/stores.py); it empties this database"
# Longer than any run of the suite; a run killed before its end blocks the emptying for this long.
LEASE_S = 3 * 3600


def pg_url(name: str) -> str:
    return f"{PG_SERVER}/{name}"


async def create_pg_database(purpose: str) -> str:
    """A new, empty database named for the suite; returns its name."""
    name = f"{PG_PREFIX}{purpose}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    if not _PG_NAME.fullmatch(name):
        raise ValueError(f"purpose {purpose!r}: lower-case letters, digits and _ only")
    admin = create_async_engine(pg_url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return name


async def drop_pg_database(name: str) -> None:
    """Drops a database `create_pg_database` made; refuses any other name."""
    if not _PG_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a database the test suite made; not dropping it")
    admin = create_async_engine(pg_url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


class ForeignRedisData(Exception):
    """The suite's Redis database holds keys the suite did not write."""


# KEYS: owner, runs. ARGV: run id, now (s), lease (s), owner text.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local size = redis.call('DBSIZE')
  if size > 0 then return size end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('FLUSHDB') end
redis.call('SET', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
return 0
"""
# KEYS: owner, runs. ARGV: run id, now (s). Returns 1 when it emptied the database.
_RELEASE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[2]) > 0 then return 0 end
redis.call('FLUSHDB')
return 1
"""


def claim_redis(url: str, run_id: str, now: float | None = None) -> None:
    """Registers this run on the suite's Redis database; raises ForeignRedisData rather than touch
    a database holding keys without the suite's mark."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0)
    try:
        foreign = client.eval(_CLAIM, 2, OWNER_KEY, RUNS_KEY, run_id, _now(now), LEASE_S, OWNER_TEXT)
    finally:
        client.close()
    if foreign:
        raise ForeignRedisData(
            f"{url} holds {foreign} keys the test suite did not write (no {OWNER_KEY} key): it will not "
            "use or empty that database. Move that data elsewhere or empty the database yourself."
        )


def release_redis(url: str, run_id: str, now: float | None = None) -> bool:
    """Ends this run's registration; empties the database if no other run holds it. True if it did."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0)
    try:
        return bool(client.eval(_RELEASE, 2, OWNER_KEY, RUNS_KEY, run_id, _now(now)))
    finally:
        client.close()


def _now(now: float | None) -> float:
    return time.time() if now is None else now
