"""The limiter's connection to a Redis Cluster, with the interface of resp.RespConnection.

redis-py's `RedisCluster` routes each command to the master of its key's slot, follows MOVED/ASK
while slots migrate, and refreshes its slot map after a failover. It costs more gateway CPU per call
than the pipelined single-node connection (see resp.py); a cluster is chosen for capacity and
failover, not for that.

Every key one limiter script touches carries the same hash tag (RedisLimiter puts the prefix in
braces in cluster mode), so each script runs whole on one master and is as atomic as on a single
Redis. The price: the limiter's keys for one prefix live on one master. Key invalidations and config
announcements do not depend on that master.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

# Connections per node. redis-py's cluster pool refuses a call past its size instead of queueing it,
# so calls past it wait for the semaphore (within their timeout) rather than fail.
MAX_CONNECTIONS = 512


class ClusterConnection:
    """`timeout_s` bounds each call as a whole, redirections and slot-map refreshes included, so a
    cluster that cannot answer costs a request that long and the failover wrapper decides.

    No retries after a timeout or a dropped connection: the script may have run, and running it again
    would admit a request twice or charge its cost twice (the single-node connection never resends
    either). MOVED and ASK are still followed: a redirected command has not run. After a failover the
    first call fails (the fail mode answers it) and the slot map is read again for the next."""

    # Several pooled connections: a reply read last may be of a command Redis ran earlier, so the
    # limiter waits for every admission rather than trust the last figures it read. With overlap on,
    # calls refused after they had reached the upstream were billed past a team's budget
    # (tests/integration/test_budget_cap.py, about one run in four).
    ordered_replies = False

    def __init__(self, url: str, timeout_s: float = 0.1) -> None:
        self.timeout_s = timeout_s
        self._client = RedisCluster.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            max_connections=MAX_CONNECTIONS,
            retry=Retry(NoBackoff(), 0),
        )
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._tasks: set[asyncio.Future[object]] = set()

    async def execute(self, *args: object) -> object:
        try:
            async with asyncio.timeout(self.timeout_s), self._slots:
                return await self._client.execute_command(*args)
        except TimeoutError as exc:
            raise RedisTimeoutError(f"Redis Cluster did not answer within {self.timeout_s:g}s") from exc
        except RedisClusterException as exc:
            # Not a RedisError: no node reachable, or the slot map could not be read. An outage.
            raise RedisConnectionError(f"Redis Cluster unavailable ({exc})") from exc

    def send_soon(self, args: tuple[object, ...], done: Callable[[asyncio.Future[object]], None]) -> None:
        """A command whose reply nobody waits for (`done` gets its future)."""
        task: asyncio.Future[object] = asyncio.ensure_future(self.execute(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(done)

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: object) -> object:
        return await self.execute("EVALSHA", sha, numkeys, *keys_and_args)

    async def script_load(self, script: str) -> str:
        # redis-py sends SCRIPT LOAD to every master; a master promoted later gets it on NOSCRIPT.
        sha = await self.execute("SCRIPT LOAD", script)
        return sha.decode() if isinstance(sha, bytes) else str(sha)

    async def drain(self) -> None:
        """Waits (bounded) for commands sent without waiting, so the last settlements land."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2 * self.timeout_s)

    async def aclose(self) -> None:
        await self.drain()
        await self._client.aclose()
