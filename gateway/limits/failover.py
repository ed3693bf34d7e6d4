"""Redis down: serve from a per-process limiter (fail-open) or refuse (fail-closed), and say so once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Literal

from redis.exceptions import RedisError

from gateway.limits.model import Admission, BudgetSpec, Limiter, LimitInputError, LimitSpec, Ticket

log = logging.getLogger("switchyard.limits")

FailMode = Literal["open", "closed"]
# Any Redis error counts, not only connection loss: an OOM or read-only replica refuses writes just
# as surely, and the operator's fail mode should decide what happens then too. A script refusing one
# request's figures is not among them: the Redis limiter raises LimitInputError (a ValueError) for it,
# which goes to that request's caller, while every other request keeps the shared limits.
UNAVAILABLE: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


class FailoverLimiter:
    """Wraps the Redis limiter. After a failure it stops trying Redis for `probe_interval_s`, so an
    outage costs one timeout per interval, not one per request."""

    origin = "failover"

    def __init__(
        self,
        primary: Limiter,
        fallback: Limiter | None,
        mode: FailMode = "open",
        *,
        probe_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in ("open", "closed"):
            raise ValueError(f"fail mode must be 'open' or 'closed', not {mode!r}")
        if mode == "open" and fallback is None:
            raise ValueError("fail-open needs a fallback limiter")
        self.primary = primary
        self.overlappable = primary.overlappable
        self.fallback = fallback
        self.mode = mode
        self._probe_interval = probe_interval_s
        self._clock = clock
        self._down_until = 0.0
        self._observe = getattr(fallback, "observe_spent", None)
        self.degraded = False
        # Metrics: read by /metrics (see metrics_lines).
        self.outages = 0
        self.fallback_acquires = 0
        self.unavailable_denials = 0
        self.settle_errors = 0

    def _mark_down(self, exc: BaseException) -> None:
        self._down_until = self._clock() + self._probe_interval
        if not self.degraded:
            self.degraded = True
            self.outages += 1
            action = "using per-process limits" if self.mode == "open" else "refusing requests"
            log.warning("rate limiter: Redis unavailable (%s: %s); %s", type(exc).__name__, exc, action)

    def _mark_up(self) -> None:
        if self.degraded:
            self.degraded = False
            log.warning("rate limiter: Redis is back; shared limits restored")

    async def _degraded(
        self,
        limits: Sequence[LimitSpec],
        budgets: Sequence[BudgetSpec],
        est_tokens: int,
        reserve_usd: Decimal,
        request_id: str,
        least_usd: Decimal | None,
    ) -> Admission:
        if self.mode == "open" and self.fallback is not None:
            self.fallback_acquires += 1
            return await self.fallback.acquire(
                limits, budgets, est_tokens, reserve_usd, request_id, least_usd
            )
        self.unavailable_denials += 1
        return Admission(False, "unavailable", None, max(self._down_until - self._clock(), 0.0))

    async def acquire(
        self,
        limits: Sequence[LimitSpec],
        budgets: Sequence[BudgetSpec],
        est_tokens: int,
        reserve_usd: Decimal,
        request_id: str,
        least_usd: Decimal | None = None,
    ) -> Admission:
        args = (limits, budgets, est_tokens, reserve_usd, request_id, least_usd)
        if self.degraded and self._clock() < self._down_until:
            return await self._degraded(*args)
        try:
            adm = await self.primary.acquire(*args)
        except UNAVAILABLE as exc:
            self._mark_down(exc)
            return await self._degraded(*args)
        self._mark_up()
        if budgets and self._observe is not None:
            for b, (spent, _) in zip(budgets, adm.budget_use, strict=False):
                self._observe(b.subject, b.period_start, spent)
        return adm

    async def settle(self, ticket: Ticket, actual_tokens: int, actual_cost_usd: Decimal | None) -> None:
        """Settles where the ticket was issued. A lost settlement only leaves a reservation to expire
        and the estimate in the window; the durable spend is the accounting writer's, not ours."""
        if ticket.origin == getattr(self.fallback, "origin", None) and self.fallback is not None:
            await self.fallback.settle(ticket, actual_tokens, actual_cost_usd)
            return
        try:
            await self.primary.settle(ticket, actual_tokens, actual_cost_usd)
        except UNAVAILABLE as exc:
            self.settle_errors += 1
            self._mark_down(exc)
        except LimitInputError as exc:
            self._settle_failed(exc)

    def settle_nowait(
        self,
        ticket: Ticket,
        actual_tokens: int,
        actual_cost_usd: Decimal | None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if ticket.origin == getattr(self.fallback, "origin", None) and self.fallback is not None:
            self.fallback.settle_nowait(ticket, actual_tokens, actual_cost_usd)
        else:
            self.primary.settle_nowait(ticket, actual_tokens, actual_cost_usd, self._settle_failed)

    def _settle_failed(self, exc: BaseException) -> None:
        self.settle_errors += 1
        if isinstance(exc, UNAVAILABLE):
            self._mark_down(exc)
        else:
            log.warning("rate limiter: settlement failed (%s: %s)", type(exc).__name__, exc)

    async def seed_budget(self, subject: str, period_start: str, spent_usd: Decimal) -> None:
        if self.fallback is not None:
            await self.fallback.seed_budget(subject, period_start, spent_usd)
        try:
            await self.primary.seed_budget(subject, period_start, spent_usd)
        except UNAVAILABLE as exc:
            self._mark_down(exc)

    async def spent(self, subject: str, period_start: str) -> Decimal:
        try:
            return await self.primary.spent(subject, period_start)
        except UNAVAILABLE:
            if self.fallback is None:
                raise
            return await self.fallback.spent(subject, period_start)

    async def held(self, subject: str, period_start: str) -> Decimal:
        try:
            return await self.primary.held(subject, period_start)
        except UNAVAILABLE:
            if self.fallback is None:
                raise
            return await self.fallback.held(subject, period_start)

    async def aclose(self) -> None:
        await self.primary.aclose()
        if self.fallback is not None:
            await self.fallback.aclose()

    def metrics_lines(self) -> list[str]:
        """Prometheus text lines for the gateway's /metrics."""
        return [
            "# TYPE switchyard_limiter_degraded gauge",
            f"switchyard_limiter_degraded {int(self.degraded)}",
            "# TYPE switchyard_limiter_outages_total counter",
            f"switchyard_limiter_outages_total {self.outages}",
            "# TYPE switchyard_limiter_fallback_acquires_total counter",
            f"switchyard_limiter_fallback_acquires_total {self.fallback_acquires}",
            "# TYPE switchyard_limiter_unavailable_denials_total counter",
            f"switchyard_limiter_unavailable_denials_total {self.unavailable_denials}",
            "# TYPE switchyard_limiter_settle_errors_total counter",
            f"switchyard_limiter_settle_errors_total {self.settle_errors}",
        ]
