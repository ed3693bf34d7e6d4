"""One request's admission, from the limiter's check to its release.

With room to spare (limits/headroom.py) the limiter's answer is awaited beside the upstream call
rather than before it. Its answer can then land at three moments, and each has one place here:
before the call answers (the race in `race.py` cancels the call and raises the refusal), after a
complete answer (`confirm` raises it once the answer is paid for), or after a stream has begun
(`confirm` too: the pipeline closes the stream and charges what it cost). `close` ends its life
however the request ended, so no refusal is left unretrieved and no check is left running.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from gateway.control import Check, Control
from gateway.limits import usd_to_nano_up
from gateway.pipeline.outcome import Outcome
from providers.deployment import Deployment


class Gate:
    __slots__ = ("_check", "_control", "_outcome", "held_nano", "task")

    def __init__(self, control: Control, check: Check, outcome: Outcome) -> None:
        self._control = control
        self._check = check
        self._outcome = outcome
        # The admission while it runs beside the call; None once it answered (or when it did not run
        # beside the call at all).
        self.task: asyncio.Task[None] | None = None
        # What the call's budgets hold for it: an overlapped admission asks for the whole reservation.
        self.held_nano = check.reserve_nano

    async def open(self) -> None:
        """Ask the limiter. Raises Denied when it refuses before the call starts."""
        self.task = self._control.overlap(self._check, self._outcome)
        if self.task is None:
            self.held_nano = await self._control.acquire(self._check, self._outcome)

    def output_cap(self, dep: Deployment) -> int | None:
        """The max_tokens a call on `dep` must carry to cost no more than its budgets hold."""
        return self._control.output_cap(self._check, dep, self.held_nano)

    def spend(self, cost: Decimal | None) -> None:
        """A cascade's first answer was paid out of what the budgets hold: the escalated call is
        capped to what is left (a deployment it cannot pay for is passed over)."""
        if cost:
            self.held_nano = max(0, self.held_nano - usd_to_nano_up(cost))

    def confirm(self) -> None:
        """Raise the refusal of an admission that ran beside the call and answered after it (the
        race waited for it). The caller has settled the call's usage first: it was paid for."""
        task, self.task = self.task, None
        if task is not None and task.done() and (exc := task.exception()) is not None:
            raise exc

    def close(self) -> None:
        task, self.task = self.task, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()  # a refusal after a failure or a disconnect: the call is over either way
