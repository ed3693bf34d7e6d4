"""The key cache on a real PostgreSQL: bounded whatever is thrown at it, one checkout a miss; the key
format check; the failed-auth limiter's buckets (on a clock the test moves)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import event

from gateway.auth import KEY_PREFIX, KeyCache, generate_key, well_formed
from gateway.auth_guard import FailedAuthLimiter
from gateway.db.engine import make_engine, session_factory
from gateway.db.migrate import upgrade
from gateway.errors import GatewayError
from tests.integration.harness import new_key
from tests.stores import create_pg_database, drop_pg_database, pg_url


@pytest.fixture(scope="module")
async def pg() -> AsyncIterator[str]:
    name = await create_pg_database("auth_cache")
    try:
        await upgrade(pg_url(name))
        yield pg_url(name)
    finally:
        await drop_pg_database(name)


class Counted:
    """A KeyCache whose engine counts pool checkouts (every database round trip needs one)."""

    def __init__(self, url: str, **kw: float) -> None:
        self.engine = make_engine(url)
        self.checkouts = 0
        event.listen(self.engine.sync_engine, "checkout", self._count)
        self.cache = KeyCache(session_factory(self.engine), **kw)  # type: ignore[arg-type]

    def _count(self, *_: object) -> None:
        self.checkouts += 1


def test_key_format() -> None:
    assert all(well_formed(generate_key()) for _ in range(200))
    key = generate_key()
    for bad in (
        "",
        KEY_PREFIX,
        key[:-1],
        key + "A",
        key[:-1] + "=",
        key[:-1] + "é",
        key[:-1] + "\n",
        "sk-xx-" + key[6:],
        KEY_PREFIX + "+" * 43,
    ):
        assert not well_formed(bad), bad


async def test_random_keys_stay_bounded_and_never_evict_live_ones(pg: str) -> None:
    c = Counted(pg, max_keys=10, max_unknown=50)
    try:
        live = await new_key(pg)
        assert await c.cache.lookup(live.key) is not None
        before = c.checkouts
        keys = [KEY_PREFIX + secrets.token_urlsafe(32) for _ in range(500)]
        for i in range(0, len(keys), 10):
            assert not any(await asyncio.gather(*(c.cache.lookup(k) for k in keys[i : i + 10])))
        assert c.checkouts - before == len(keys)  # one round trip a miss
        assert len(c.cache) <= 10 + 50
        hits = c.checkouts
        assert await c.cache.lookup(live.key) is not None
        assert c.checkouts == hits, "the live key was evicted by unknown ones"
        assert await c.cache.lookup(keys[-1]) is None and c.checkouts == hits  # recent unknown: cached
    finally:
        await c.engine.dispose()


async def test_a_budgeted_key_loads_in_one_transaction(pg: str) -> None:
    c = Counted(pg)
    begins = []
    event.listen(c.engine.sync_engine, "begin", lambda conn: begins.append(conn))
    try:
        creds = await new_key(pg, team={"budget_usd": "10"}, key={"budget_usd": "2"})
        principal = await c.cache.lookup(creds.key)
        assert principal is not None
        assert (principal.team_spent_usd, principal.key_spent_usd) == (Decimal(0), Decimal(0))
        assert (c.checkouts, len(begins)) == (1, 1)
    finally:
        await c.engine.dispose()


def test_failed_auth_buckets() -> None:
    now = [0.0]
    limiter = FailedAuthLimiter(per_minute=60, burst=3, max_clients=2, clock=lambda: now[0])
    for _ in range(3):
        limiter.charge("a")
    with pytest.raises(GatewayError) as refused:
        limiter.charge("a")
    assert (refused.value.status, refused.value.type, refused.value.code) == (
        429,
        "rate_limit_error",
        "auth_rate_limited",
    )
    assert refused.value.headers == {"retry-after": "1"}
    limiter.charge("b")  # another address is untouched
    now[0] = 1.0  # one failure a second comes back
    limiter.charge("a")
    with pytest.raises(GatewayError):
        limiter.charge("a")
    limiter.refund("a")  # a good key gives its charge back
    limiter.charge("a")
    limiter.charge("c")
    assert len(limiter) == 2  # bounded: the least recently seen went
    off = FailedAuthLimiter(per_minute=0, burst=1)
    for _ in range(10):
        off.charge("a")
