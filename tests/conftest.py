"""Session-wide test setup: the same offline environment every entry point prepares, and the suite's
Redis database (tests/stores.py), claimed for this run on first use and released at its end."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

from gateway.offline import prepare_offline_env
from tests.redis_cluster import RedisCluster, RedisTarget
from tests.stores import TEST_REDIS_URL, ForeignRedisData, claim_redis, release_redis

prepare_offline_env()


@pytest.fixture(scope="session")
def suite_redis_url() -> Iterator[str]:
    """TEST_REDIS_URL, registered for this run: the tests that need it fail, touching nothing, when that
    database holds someone else's keys."""
    run_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    try:
        claim_redis(TEST_REDIS_URL, run_id)
    except ForeignRedisData as exc:
        pytest.fail(str(exc), pytrace=False)
    yield TEST_REDIS_URL
    release_redis(TEST_REDIS_URL, run_id)


@pytest.fixture(params=["single", "cluster"])
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    """The suite's Redis, then the session's Redis Cluster: for tests whose body runs on both."""
    if request.param == "single":
        return RedisTarget(request.getfixturevalue("suite_redis_url"), False)
    return RedisTarget(request.getfixturevalue("redis_cluster_url"), True)


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A private 3-master Redis Cluster (tests/redis_cluster.py) for the session: one node's URL."""
    cluster = RedisCluster()
    try:
        yield cluster.start().url
    finally:
        cluster.stop()
