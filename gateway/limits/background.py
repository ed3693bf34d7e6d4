"""Fire-and-forget settlement tasks: kept referenced (asyncio holds only weak references to tasks),
their failures logged, and waited for at shutdown so the last requests still settle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("switchyard.limits")


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("rate limiter: settlement failed (%s: %s)", type(exc).__name__, exc)

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float = 2.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
