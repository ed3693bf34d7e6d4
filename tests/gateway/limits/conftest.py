"""Fixtures: the suite's Redis database (tests/stores.py) under a random key prefix per test (its keys
deleted afterwards), and the limiters: in-process, on one Redis, and on a Redis Cluster (the session's
private one, tests/redis_cluster.py), so each limiter test runs the same assertions on all three."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis

from gateway.limits import Limiter, MemoryLimiter, RedisLimiter
from tests.stores import TEST_REDIS_URL


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    return request.getfixturevalue("suite_redis_url")


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    p = f"sytest:{secrets.token_hex(6)}:"
    yield p
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{p}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


LimiterFactory = Callable[..., Limiter]


@pytest.fixture(params=["redis", "cluster", "memory"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[LimiterFactory]:
    """Builds limiters of the parametrised kind; Redis ones share the test's prefix. The cluster is
    private to the session, so its keys go with it."""
    made: list[Limiter] = []
    p = request.getfixturevalue("prefix") if request.param == "redis" else f"sytest:{secrets.token_hex(6)}:"
    url = request.getfixturevalue("redis_cluster_url") if request.param == "cluster" else TEST_REDIS_URL

    def make(**kwargs: float) -> Limiter:
        if request.param == "memory":
            lim: Limiter = MemoryLimiter(**kwargs)
        else:
            cluster = request.param == "cluster"
            # Three more redis-servers on a shared 2-core host: a stall past 1 s has been seen there.
            timeout_s = 2.0 if cluster else 1.0
            lim = RedisLimiter.from_url(url, timeout_s=timeout_s, cluster=cluster, prefix=p, **kwargs)
        made.append(lim)
        return lim

    yield make
    for lim in made:
        await lim.aclose()
