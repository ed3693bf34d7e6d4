"""Budget totals from the durable spend: read when a limiter has none (Seeder), and kept up (Reconciler).

A limiter that has no total for a budget (Redis restarted, flushed or evicted it; a per-process
limiter seeing it first) asks `reseed` for the durable figure, afresh each time: a cached one is what
let a $0.01 budget reach $0.0168 after one Redis restart.

A reseed after Redis lost its data counts what the database and this process know of; spend still in
another replica's writer, or settled in a per-process limiter while Redis was away, reaches the
database later. Every `interval_s` the budgets used since the last pass get their `spent` raised to
the durable figure, never lowered (Redis may hold settled spend the database has not been told of).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal

from gateway.limits.model import BudgetSpec, Reseed, usd_nano

log = logging.getLogger("switchyard.limits")

RaiseSpent = Callable[[str, str, Decimal], Awaitable[object]]


class Seeder:
    def __init__(self, reseed: Reseed, timeout_s: float = 2.0) -> None:
        self._reseed = reseed
        self._timeout = timeout_s
        # Concurrent askers for one budget share one read; nothing is kept once it is answered.
        self._reading: dict[tuple[str, str], asyncio.Future[int]] = {}
        self.reads = 0
        self.fallbacks = 0

    def nano(self, b: BudgetSpec) -> Awaitable[int]:
        """The durable spend of `b` in nano-dollars; `b.seed_usd` (or 0) when it cannot be read."""
        key = (b.subject, b.period_start)
        fut = self._reading.get(key)
        if fut is None:
            fut = self._reading[key] = asyncio.ensure_future(self._read(b))
            fut.add_done_callback(lambda _: self._reading.pop(key, None))
        return asyncio.shield(fut)

    async def _read(self, b: BudgetSpec) -> int:
        self.reads += 1
        try:
            async with asyncio.timeout(self._timeout):
                durable = await self._reseed(b.subject, b.period_start)
            return usd_nano("durable spend", durable, subject=b.subject)
        except Exception as exc:
            # The database is away too: the figure the key was loaded with is the best there is.
            self.fallbacks += 1
            log.warning(
                "rate limiter: cannot read the durable spend of %s (%s: %s); seeding its budget from"
                " the key's cached figure %s",
                b.subject,
                type(exc).__name__,
                exc,
                b.seed_usd,
            )
            return usd_nano("seed", b.seed_usd or Decimal(0), subject=b.subject)


class Reconciler:
    def __init__(self, reseed: Reseed, raise_spent: RaiseSpent, interval_s: float) -> None:
        self._reseed = reseed
        self._raise = raise_spent
        self._interval = interval_s
        self._seen: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.passes = 0

    def saw(self, budgets: Sequence[BudgetSpec]) -> None:
        """On the request path: a set insert per budget, nothing more."""
        seen = self._seen
        for b in budgets:
            seen.add((b.subject, b.period_start))

    def start(self) -> None:
        if self._task is None and self._interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="budget-reconcile")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.once()

    async def once(self) -> None:
        """One pass over the budgets used since the previous one."""
        todo, self._seen = list(self._seen), set()
        self.passes += 1
        for n, (subject, start) in enumerate(todo):
            try:
                durable = await self._reseed(subject, start)
                await self._raise(subject, start, durable)
            except Exception as exc:  # the database or Redis away: the next pass tries again
                self._seen.update(todo[n:])
                if not self._failing:
                    log.warning("budget reconcile: skipped (%s: %s)", type(exc).__name__, exc)
                self._failing = True
                return
        self._failing = False

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
