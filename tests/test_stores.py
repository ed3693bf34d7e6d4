"""The guards of tests/stores.py: the suite empties only a Redis database it marked and no other run
of it is using, and creates and drops only PostgreSQL databases named for it.

The Redis tests run against a private redis-server, so they hold no one's data either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.redis_proc import RedisProcess
from tests.stores import (
    LEASE_S,
    OWNER_KEY,
    PG_PREFIX,
    ForeignRedisData,
    claim_redis,
    create_pg_database,
    drop_pg_database,
    pg_url,
    release_redis,
)

T0 = 1_800_000_000.0


@pytest.fixture(scope="module")
def server() -> Iterator[RedisProcess]:
    proc = RedisProcess().start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def url(server: RedisProcess) -> Iterator[str]:
    url = server.url.rsplit("/", 1)[0] + "/15"
    client = redis.Redis.from_url(url)
    client.flushall()
    yield url
    client.close()


@pytest.fixture
def client(url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(url)
    yield c
    c.close()


def test_a_database_holding_someone_elses_keys_is_refused_and_left_alone(
    url: str, client: redis.Redis
) -> None:
    client.set("their:data", "precious")
    with pytest.raises(ForeignRedisData, match=r"holds 1 keys the test suite did not write"):
        claim_redis(url, "run-a", T0)
    assert release_redis(url, "run-a", T0) is False
    assert client.keys("*") == [b"their:data"]


def test_a_lone_run_empties_the_database_at_its_start_and_its_end(url: str, client: redis.Redis) -> None:
    claim_redis(url, "killed", T0)
    client.set("sy:left:by:a:killed:run", 1)
    claim_redis(url, "run-b", T0 + LEASE_S + 1)  # the killed run's lease is over
    assert client.exists("sy:left:by:a:killed:run") == 0
    assert client.exists(OWNER_KEY) == 1
    client.set("sy:written:by:b", 1)
    assert release_redis(url, "run-b", T0 + LEASE_S + 2) is True
    assert client.dbsize() == 0


def test_concurrent_runs_never_empty_it_under_each_other(url: str, client: redis.Redis) -> None:
    claim_redis(url, "run-a", T0)
    client.set("sy:a", 1)
    claim_redis(url, "run-b", T0 + 1)
    assert client.exists("sy:a") == 1
    client.set("sy:b", 1)
    assert release_redis(url, "run-a", T0 + 2) is False
    assert client.exists("sy:b") == 1
    assert release_redis(url, "run-b", T0 + 3) is True
    assert client.dbsize() == 0


def test_a_database_emptied_and_reused_by_someone_mid_run_is_left_alone(
    url: str, client: redis.Redis
) -> None:
    claim_redis(url, "run-a", T0)
    client.flushdb()
    client.set("their:data", "precious")
    assert release_redis(url, "run-a", T0 + 1) is False
    assert client.keys("*") == [b"their:data"]


async def _databases() -> set[str]:
    admin = create_async_engine(pg_url("postgres"))
    try:
        async with admin.connect() as conn:
            return set((await conn.execute(text("SELECT datname FROM pg_database"))).scalars())
    finally:
        await admin.dispose()


@pytest.fixture
async def made() -> AsyncIterator[str]:
    name = await create_pg_database("stores")
    try:
        yield name
    finally:
        await drop_pg_database(name)


async def test_postgresql_databases_carry_the_suites_prefix_and_go_away(made: str) -> None:
    assert made.startswith(f"{PG_PREFIX}stores_")
    assert made in await _databases()
    await drop_pg_database(made)
    assert made not in await _databases()


@pytest.mark.parametrize("name", ["postgres", "switchyard", "switchyard_pytest_x", 'x"; DROP DATABASE "y'])
async def test_only_the_suites_databases_are_dropped(name: str) -> None:
    with pytest.raises(ValueError, match="not a database the test suite made"):
        await drop_pg_database(name)


async def test_a_purpose_that_would_make_an_odd_name_is_refused() -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        await create_pg_database('x"; DROP DATABASE "y')
