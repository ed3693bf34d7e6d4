"""The redis-py client for everything but the limiter's hot path (key invalidations, config
announcements, readiness probes): a plain `Redis`, or a `RedisCluster` when the settings say the URL
names a Redis Cluster node.

Pub/sub on a cluster is the classic kind: a PUBLISH on any node reaches subscribers on every node over
the cluster bus, so one channel still reaches every replica. Sharded pub/sub would spread the load,
but these channels carry a message per admin change, not per request.
"""

from __future__ import annotations

from typing import Any


def connect(url: str, *, cluster: bool, timeout_s: float) -> Any:
    """A lazily connecting asyncio client; `timeout_s` bounds each socket read and each dial."""
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    import redis.asyncio as redis

    return redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
