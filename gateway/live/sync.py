"""Every replica on the newest config version, within a second of a change.

The replica that makes a change announces its version number on a Redis channel (`publish`, which
the config service calls once the change is applied here); every replica listens on that channel and
`refresh`es when it hears a version newer than the one it runs. A lost announcement (Redis down,
a replica reconnecting) heals by polling: every `poll_interval_s` each replica reads the newest
version number (one indexed read) and refreshes when it is ahead of its own. Without Redis only the
poll runs (one process applies its own changes at once; other processes catch up within the poll).

Nothing here is on the request path: the listener, the poll and the refresh run as background
tasks, and a refresh swaps the snapshot atomically (gateway/live/runtime.py). Refreshes run one at a
time, and announcements heard while one runs cost one more refresh, not one each. A failure (Redis
or the database unreachable, a refresh that raises) is logged once when it starts and once when it
ends, never on every tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.pubsub import listen
from gateway.redis_client import connect
from gateway.settings import Settings

log = logging.getLogger("switchyard.config")

DEFAULT_CHANNEL = "switchyard:config"
# A poll or refresh slower than this counts as failed (and the next one is tried).
_POLL_TIMEOUT_S = 10.0
_REFRESH_TIMEOUT_S = 30.0


class _Outage:
    """Logs a failure when it starts and when it ends, not on every retry in between."""

    def __init__(self, what: str, consequence: str) -> None:
        self.what = what
        self.consequence = consequence
        self.down = False

    def failed(self, exc: BaseException) -> None:
        if not self.down:
            reason = str(exc) or type(exc).__name__
            log.warning("%s failed (%s: %s); %s", self.what, type(exc).__name__, reason, self.consequence)
        self.down = True

    def ok(self) -> None:
        if self.down:
            log.warning("%s works again", self.what)
        self.down = False


class ConfigSync:
    def __init__(
        self,
        *,
        current_version: Callable[[], Awaitable[int | None]],
        live_version: Callable[[], int],
        refresh: Callable[[], Awaitable[bool]],
        redis_url: str | None = None,
        redis_cluster: bool = False,
        channel: str = DEFAULT_CHANNEL,
        poll_interval_s: float = 2.0,
        redis_timeout_s: float = 1.0,
    ) -> None:
        """`current_version`: the newest version number in the store (None: none yet);
        `live_version`: the one this process runs; `refresh`: load and apply the newest version if it
        is newer than the live one (True when it applied one)."""
        self._current_version = current_version
        self._live_version = live_version
        self._refresh = refresh
        self._redis_url = redis_url
        self._redis_cluster = redis_cluster
        self.channel = channel
        self.poll_interval_s = poll_interval_s
        self._redis_timeout_s = redis_timeout_s
        self._redis: Any = None
        self._wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Whether announcements reach this replica now (always False without Redis).
        self.listening = False
        self._poll = _Outage(
            "reading the newest config version", f"retrying every {poll_interval_s:g}s meanwhile"
        )
        self._refreshing = _Outage("loading a new config version", "still running the previous one")
        self._announcing = _Outage(
            "announcing a config change on Redis",
            f"other replicas pick changes up by polling (every {poll_interval_s:g}s) meanwhile",
        )
        self._listen = _Outage(
            "listening for config changes on Redis",
            f"picking them up by polling (every {poll_interval_s:g}s) meanwhile",
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        current_version: Callable[[], Awaitable[int | None]],
        live_version: Callable[[], int],
        refresh: Callable[[], Awaitable[bool]],
    ) -> ConfigSync:
        return cls(
            current_version=current_version,
            live_version=live_version,
            refresh=refresh,
            redis_url=settings.redis_url,
            redis_cluster=settings.redis_cluster,
            channel=settings.config_channel,
            poll_interval_s=settings.config_poll_interval_s,
        )

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._refresher(), name="config-refresh"))
        self._tasks.append(asyncio.create_task(self._poller(), name="config-poll"))
        if self._redis_url is None:
            return
        self._redis = connect(self._redis_url, cluster=self._redis_cluster, timeout_s=self._redis_timeout_s)
        listener = listen(
            self._redis,
            self.channel,
            on_message=self._heard,
            on_subscribed=self._subscribed,
            on_lost=self._lost,
        )
        self._tasks.append(asyncio.create_task(listener, name="config-listen"))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        # Their ends (cancelled, or a failure already logged) are collected; a cancel of aclose itself
        # is not taken for theirs.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None

    async def publish(self, version: int) -> None:
        """Tell every replica that `version` is the newest (the config service's on_applied)."""
        if self._redis is None:
            return
        try:
            await self._redis.publish(self.channel, str(version))
        except Exception as exc:
            self._announcing.failed(exc)
            return
        self._announcing.ok()

    def wake(self) -> None:
        """Refresh soon (on the background task): a change was announced, or may have been missed."""
        self._wanted.set()

    # -- the background tasks -----------------------------------------------------------------

    def _heard(self, data: bytes) -> None:
        try:
            version = int(data)
        except ValueError:
            version = None  # not ours to read, but something changed: look
        if version is None or version > self._live_version():
            self.wake()

    async def _subscribed(self) -> None:
        self._listen.ok()
        self.listening = True
        # Announcements made while this replica was not listening are lost: look now.
        self.wake()

    def _lost(self, exc: Exception) -> None:
        self.listening = False
        self._listen.failed(exc)

    async def _poller(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancel that comes as its call
                # finishes, and this loop then outlived aclose (a shutdown that never ended).
                async with asyncio.timeout(_POLL_TIMEOUT_S):
                    newest = await self._current_version()
            except Exception as exc:
                self._poll.failed(exc)
                continue
            self._poll.ok()
            if newest is not None and newest > self._live_version():
                self.wake()

    async def _refresher(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                async with asyncio.timeout(_REFRESH_TIMEOUT_S):
                    await self._refresh()
            except Exception as exc:
                # The poll wakes it again while the store stays ahead of this replica.
                self._refreshing.failed(exc)
                continue
            self._refreshing.ok()
