"""File mode (`serve --config FILE`): the file is the source of truth, reloaded when it changes and on
SIGHUP.

`FileWatch` reads the file every `interval_s` (stat, then a SHA-256 of its bytes: a config file is a
few kilobytes) and calls `reload()` when its content differs from the last it saw, so an editor's
save, a `mv` over it, or a Kubernetes ConfigMap's symlink swap are all seen within a second, and a
`touch` is not. Polling needs no dependency and sees every one of those the same way. Reloads run
one at a time on a background task; changes seen while one runs cost one more. What `reload` does
with a bad file is its own business (log one line, keep the running snapshot); an exception out of
it is logged here once, until a reload succeeds again. A file that cannot be read (deleted, or
half-way through a replace) is reported once and not reloaded until it can be.

`on_sighup` makes SIGHUP call a function in the running event loop instead of killing the process
(its default action, which uvicorn leaves in place: it handles only SIGINT and SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("switchyard.config")


def fingerprint(path: Path) -> str:
    """The SHA-256 of the file's bytes (OSError when it cannot be read)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FileWatch:
    def __init__(
        self,
        path: Path,
        reload: Callable[[], Awaitable[Any]],
        interval_s: float = 1.0,
        *,
        baseline: str | None = None,
    ) -> None:
        """`baseline`: the fingerprint of the content running now; None (not known: the file may have
        changed since it was read) reloads once at the first look, so `reload` must do nothing when
        the file holds what runs already."""
        self.path = path
        self.interval_s = interval_s
        self._reload = reload
        self._seen = baseline
        self._unreadable = False
        self._failing = False
        self._wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.reloads = 0

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._reloader(), name="config-reload"),
            asyncio.create_task(self._watch(), name="config-watch"),
        ]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def request(self) -> None:
        """Reload soon, whether or not the file changed (SIGHUP)."""
        self._wanted.set()

    async def check(self) -> bool:
        """Read the file once; True (and a reload requested) when its content changed."""
        try:
            seen = await asyncio.to_thread(fingerprint, self.path)
        except OSError as exc:
            if not self._unreadable:
                log.warning(
                    "cannot read config file %s (%s); keeping the running config", self.path, exc.strerror
                )
            self._unreadable = True
            return False
        if self._unreadable:
            log.warning("config file %s is readable again", self.path)
            self._unreadable = False
        if seen == self._seen:
            return False
        self._seen = seen
        self.request()
        return True

    async def _watch(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval_s)

    async def _reloader(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            self.reloads += 1
            try:
                await self._reload()
            except Exception:
                if not self._failing:
                    log.exception("reloading config file %s failed; keeping the running config", self.path)
                self._failing = True
                continue
            self._failing = False


def on_sighup(callback: Callable[[], None]) -> Callable[[], None] | None:
    """Make SIGHUP call `callback` on the running event loop; returns what undoes it, or None where
    signals cannot be handled here (not the main thread: an app run by a test's server thread)."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGHUP)
    try:
        loop.add_signal_handler(signal.SIGHUP, callback)
    except (RuntimeError, ValueError, NotImplementedError):
        return None

    def undo() -> None:
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signal.SIGHUP)
            # Back to what it was (remove_signal_handler leaves the default, which kills).
            signal.signal(signal.SIGHUP, previous if previous is not None else signal.SIG_DFL)

    return undo
