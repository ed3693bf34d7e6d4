"""A revoked key stops working on the other replica at once, or within the degraded TTL when Redis is
out of reach: never the full cache TTL (60 s). Two KeyCaches on the session's PostgreSQL and Redis
stand for two replicas; A revokes through the admin service and its own invalidate(), as the admin
route does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from gateway.admin import service
from gateway.auth import KeyCache
from gateway.db.engine import make_engine, session_factory
from tests.integration.gateway_proc import TcpProxy
from tests.integration.harness import ACTOR, Credentials, new_key
from tests.redis_cluster import RedisTarget

TTL_S = 60.0
DEGRADED_TTL_S = 3.0  # KeyCache's default
SLACK_S = 1.5


class Replica:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.cache = KeyCache(session_factory(engine), ttl_s=TTL_S)


@pytest.fixture
async def replicas(pg_url: str) -> AsyncIterator[Callable[[], Replica]]:
    made: list[Replica] = []

    def make() -> Replica:
        made.append(Replica(make_engine(pg_url)))
        return made[-1]

    yield make
    for r in made:
        await r.cache.aclose()
        await r.engine.dispose()


async def until(predicate: Callable[[], Any], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def honoured_for(cache: KeyCache, key: str, within_s: float) -> float:
    """Seconds until `cache` refuses `key` (polling), or `within_s` if it never did."""
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        if await cache.lookup(key) is None:
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    return within_s


async def revoke(replica: Replica, creds: Credentials) -> None:
    async with session_factory(replica.engine)() as session:
        await service.revoke_key(session, creds.key_id, actor=ACTOR)
    await replica.cache.invalidate(key_id=creds.key_id)


async def test_a_revoke_landing_during_a_load_is_not_cached(
    pg_url: str, redis_target: RedisTarget, replicas: Callable[[], Replica]
) -> None:
    creds = await new_key(pg_url)
    a, b = replicas(), replicas()
    await a.cache.start(redis_target.url, cluster=redis_target.cluster)
    await b.cache.start(redis_target.url, cluster=redis_target.cluster)
    await until(lambda: not a.cache.degraded and not b.cache.degraded)

    fired: list[bool] = []

    def after_read(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # B has read the key's row (not yet revoked) and not cached it yet: A revokes now, and B's
        # listener applies the invalidation before B's load goes on.
        if "api_keys" in statement and not fired:
            fired.append(True)
            await_only(revoke(a, creds))
            await_only(asyncio.sleep(0.3))

    event.listen(b.engine.sync_engine, "after_cursor_execute", after_read)
    await b.cache.lookup(creds.key)
    assert fired
    # Whatever that in-flight request was told, the revoke holds from now on.
    seconds = await honoured_for(b.cache, creds.key, 3.0)
    assert seconds < 0.5, f"the revoked key was still honoured on B {seconds:.1f}s later"


async def test_a_revoke_while_the_listener_cannot_reach_redis_takes_the_degraded_ttl(
    pg_url: str, redis_url: str, replicas: Callable[[], Replica]
) -> None:
    creds = await new_key(pg_url)
    host, _, rest = redis_url.removeprefix("redis://").partition(":")
    port, _, db = rest.partition("/")
    link = TcpProxy(int(port), host).start()
    try:
        a, b = replicas(), replicas()
        await a.cache.start(redis_url)
        await b.cache.start(f"redis://127.0.0.1:{link.port}/{db}")
        await until(lambda: not b.cache.degraded)
        assert await b.cache.lookup(creds.key) is not None

        link.cut()  # B hears nothing from now on
        await until(lambda: b.cache.degraded)
        await revoke(a, creds)
        seconds = await honoured_for(b.cache, creds.key, 10.0)
        assert seconds <= DEGRADED_TTL_S + SLACK_S, f"still honoured on B after {seconds:.1f}s"
    finally:
        link.close()


async def test_an_invalidation_that_could_not_be_sent_is_sent_when_redis_answers(
    pg_url: str, redis_url: str, replicas: Callable[[], Replica]
) -> None:
    creds = await new_key(pg_url)
    host, _, rest = redis_url.removeprefix("redis://").partition(":")
    port, _, db = rest.partition("/")
    link = TcpProxy(int(port), host).start()
    try:
        a, b = replicas(), replicas()
        await a.cache.start(f"redis://127.0.0.1:{link.port}/{db}")
        await b.cache.start(redis_url)
        await until(lambda: not a.cache.degraded and not b.cache.degraded)
        assert await b.cache.lookup(creds.key) is not None

        link.cut()  # A can neither publish nor hear; B is fine and would keep the key its full TTL
        await revoke(a, creds)
        assert a.cache.degraded
        link.restore()
        seconds = await honoured_for(b.cache, creds.key, 10.0)
        assert seconds <= 2 * DEGRADED_TTL_S, f"still honoured on B after {seconds:.1f}s"
    finally:
        link.close()
