"""ConfigSync on a real Redis: an announcement reaches the other replicas at once, the poll heals a
lost one, a Redis restart is survived, and failures are logged once per outage, not per tick."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from gateway.live.sync import ConfigSync
from tests.integration.redis_proc import RedisProcess
from tests.redis_cluster import RedisTarget


class Replica:
    """What ConfigSync drives: a store everyone shares and the version this replica runs."""

    def __init__(self, store: Store, refresh_delay_s: float = 0.0) -> None:
        self.store = store
        self.version = store.version
        self.refreshes = 0
        self.applied_at: dict[int, float] = {}
        self.refresh_delay_s = refresh_delay_s

    async def refresh(self) -> bool:
        self.refreshes += 1
        await asyncio.sleep(self.refresh_delay_s)
        newest = await self.store.current_version()
        if newest is None or newest <= self.version:
            return False
        self.version = newest
        self.applied_at[newest] = time.monotonic()
        return True

    def sync(
        self, redis_url: str | None, channel: str, poll_s: float = 30.0, cluster: bool = False
    ) -> ConfigSync:
        return ConfigSync(
            current_version=self.store.current_version,
            live_version=lambda: self.version,
            refresh=self.refresh,
            redis_url=redis_url,
            redis_cluster=cluster,
            channel=channel,
            poll_interval_s=poll_s,
        )


class Store:
    def __init__(self) -> None:
        self.version = 1
        self.down = False
        self.reads = 0

    async def current_version(self) -> int | None:
        self.reads += 1
        if self.down:
            raise ConnectionError("database unreachable")
        return self.version


@asynccontextmanager
async def running(*syncs: ConfigSync) -> AsyncIterator[None]:
    for s in syncs:
        await s.start()
    try:
        yield
    finally:
        for s in syncs:
            await s.aclose()


async def until(cond: Callable[[], bool], within_s: float = 5.0) -> float:
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < within_s, f"not within {within_s}s"
        await asyncio.sleep(0.005)
    return time.monotonic() - start


def channel() -> str:
    return f"switchyard:test:config:{uuid.uuid4().hex[:8]}"


async def test_an_announcement_reaches_the_other_replica_at_once(redis_target: RedisTarget) -> None:
    store = Store()
    a, b = Replica(store), Replica(store)
    # A poll that never comes within the test: only the announcement can move b.
    url, cluster = redis_target.url, redis_target.cluster
    sa, sb = a.sync(url, ch := channel(), cluster=cluster), b.sync(url, ch, cluster=cluster)
    async with running(sa, sb):
        await until(lambda: sa.listening and sb.listening)
        await until(lambda: a.refreshes >= 1 and b.refreshes >= 1)  # the look on subscribing
        store.version = 2
        await a.refresh()  # the change applied where it was made...
        await sa.publish(2)  # ...then announced
        lag = await until(lambda: b.version == 2, 1.0)
    assert lag < 1.0, lag


async def test_closing_ends_a_poll_that_is_always_busy() -> None:
    """A cancel that lands as a poll's read finishes still ends the poll: asyncio.wait_for lost it on
    3.11, and aclose waited for ever (a full test run hung on the test below)."""
    for _ in range(20):
        sync = Replica(Store()).sync(None, channel(), poll_s=0.0005)
        await sync.start()
        await asyncio.sleep(0.002)
        closing = asyncio.ensure_future(sync.aclose())
        done, _ = await asyncio.wait([closing], timeout=2.0)
        assert done, "aclose did not end: a task outlived its cancel"


def test_only_a_newer_version_wakes_a_refresh() -> None:
    sync = Replica(Store()).sync(None, channel())
    sync._live_version = lambda: 5
    sync._heard(b"5")  # its own announcement, or one it has applied already
    sync._heard(b"4")
    assert not sync._wanted.is_set()
    sync._heard(b"6")
    assert sync._wanted.is_set()
    sync._wanted.clear()
    sync._heard(b"not a number")  # someone else's format: look, to be safe
    assert sync._wanted.is_set()


async def test_without_redis_the_poll_alone_catches_up() -> None:
    store = Store()
    r = Replica(store)
    sync = r.sync(None, channel(), poll_s=0.05)
    async with running(sync):
        await sync.publish(5)  # nowhere to announce: nothing happens, nothing fails
        store.version = 3
        await until(lambda: r.version == 3, 1.0)
        reads = store.reads
        await asyncio.sleep(0.3)
    assert r.refreshes == 1, "the poll refreshes only when the store is ahead"
    assert store.reads > reads, "it kept polling"
    assert not sync.listening


async def test_the_poll_heals_an_announcement_never_made(suite_redis_url: str) -> None:
    store = Store()
    r = Replica(store)
    sync = r.sync(suite_redis_url, channel(), poll_s=0.1)
    async with running(sync):
        await until(lambda: sync.listening)
        store.version = 2  # changed, but nobody published it
        await until(lambda: r.version == 2, 1.0)


async def test_announcements_during_a_refresh_cost_one_more(suite_redis_url: str) -> None:
    store = Store()
    slow = Replica(store, refresh_delay_s=0.2)
    ch = channel()
    announcer = Replica(store).sync(suite_redis_url, ch)
    listener = slow.sync(suite_redis_url, ch)
    async with running(announcer, listener):
        await until(lambda: announcer.listening and listener.listening)
        await until(lambda: slow.refreshes >= 1)
        await asyncio.sleep(0.25)
        for v in range(2, 12):
            store.version = v
            await announcer.publish(v)
        await until(lambda: slow.version == 11, 2.0)
        await asyncio.sleep(0.3)
    assert slow.refreshes <= 4, slow.refreshes  # not one each of the ten (one more if it reconnected)


async def test_redis_restart_is_survived_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    proc = RedisProcess().start()
    try:
        store = Store()
        a, b = Replica(store), Replica(store)
        sa, sb = a.sync(proc.url, ch := channel()), b.sync(proc.url, ch)
        caplog.set_level(logging.WARNING, "switchyard.config")
        async with running(sa, sb):
            await until(lambda: sa.listening and sb.listening)
            proc.stop()
            await until(lambda: not sb.listening, 15.0)
            store.version = 2
            await a.refresh()
            await sa.publish(2)  # Redis is down: lost (and said once)
            await sa.publish(2)
            await asyncio.sleep(2.5)  # a few reconnect attempts
            assert b.version == 1
            proc.start()
            # Back on the channel, b looks at once and finds what it missed.
            await until(lambda: sb.listening and b.version == 2, 10.0)
            store.version = 3
            await a.refresh()
            await sa.publish(3)
            await until(lambda: b.version == 3, 1.0)
    finally:
        proc.stop()
    text = [r.getMessage() for r in caplog.records]
    assert sum("listening for config changes on Redis failed" in t for t in text) == 2, text  # a and b
    assert sum("announcing a config change on Redis failed" in t for t in text) == 1, text
    assert sum(t.endswith("works again") for t in text) == 3, text


async def test_a_database_outage_is_logged_once_and_healed(caplog: pytest.LogCaptureFixture) -> None:
    store = Store()
    r = Replica(store)
    sync = r.sync(None, channel(), poll_s=0.02)
    caplog.set_level(logging.WARNING, "switchyard.config")
    async with running(sync):
        store.down = True
        reads = store.reads
        await until(lambda: store.reads > reads + 10)
        store.down = False
        store.version = 4
        await until(lambda: r.version == 4, 1.0)
    text = [r.getMessage() for r in caplog.records]
    assert text == [
        "reading the newest config version failed (ConnectionError: database unreachable); "
        "retrying every 0.02s meanwhile",
        "reading the newest config version works again",
    ], text


async def test_a_failing_refresh_is_retried_by_the_poll(caplog: pytest.LogCaptureFixture) -> None:
    store = Store()
    r = Replica(store)
    failures = 3

    async def flaky() -> bool:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("bad document")
        return await r.refresh()

    sync = ConfigSync(
        current_version=store.current_version,
        live_version=lambda: r.version,
        refresh=flaky,
        poll_interval_s=0.02,
    )
    caplog.set_level(logging.WARNING, "switchyard.config")
    async with running(sync):
        store.version = 2
        await until(lambda: r.version == 2, 2.0)
    text = [r.getMessage() for r in caplog.records]
    assert len(text) == 2 and "loading a new config version failed" in text[0], text
