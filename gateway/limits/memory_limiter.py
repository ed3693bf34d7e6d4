"""The in-process limiter: the Lua scripts' semantics for one process (no Redis URL, or Redis down).

Nothing here awaits, so each call is atomic with respect to the event loop, as a script is in Redis.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from gateway.limits.model import (
    MAX_REQUEST_TOKENS,
    Admission,
    BudgetSpec,
    LimitSpec,
    Reseed,
    Ticket,
    active_limits,
    admission_from,
    bounded,
    least_nano,
    settled_figures,
    usd_nano,
)
from gateway.limits.money import (
    nano_to_usd,
    period_end,
    period_expire_at,
    usd_to_nano,
)
from gateway.limits.reconcile import Seeder

_SWEEP_EVERY = 4096
_RETRY_SCAN = 128


@dataclass(slots=True)
class _Window:
    entries: deque[tuple[float, str]] = field(default_factory=deque)
    tokens: dict[str, int] = field(default_factory=dict)
    total: int = 0

    def drop_before(self, cutoff: float) -> None:
        entries = self.entries
        while entries and entries[0][0] <= cutoff:
            _, member = entries.popleft()
            self.total -= self.tokens.pop(member, 0)


@dataclass(slots=True)
class _Budget:
    expire_at: int
    spent: int | None = None
    held: int = 0
    reservations: dict[str, tuple[int, float]] = field(default_factory=dict)
    # Expiry heap with lazy deletion: settled members stay until popped or compacted away.
    expiries: list[tuple[float, str]] = field(default_factory=list)

    def drop_expired(self, now: float) -> None:
        while self.expiries and self.expiries[0][0] <= now:
            _, member = heapq.heappop(self.expiries)
            self.release(member)

    def reserve(self, member: str, amount: int, expiry: float) -> None:
        self.reservations[member] = (amount, expiry)
        self.held += amount
        heapq.heappush(self.expiries, (expiry, member))
        if len(self.expiries) > 2 * len(self.reservations) + 64:
            self.expiries = [(exp, m) for m, (_, exp) in self.reservations.items()]
            heapq.heapify(self.expiries)

    def release(self, member: str) -> None:
        entry = self.reservations.pop(member, None)
        if entry is not None:
            self.held -= entry[0]


class MemoryLimiter:
    origin = "memory"
    overlappable = False

    def __init__(
        self,
        *,
        window_s: float = 60.0,
        reservation_ttl_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        reseed: Reseed | None = None,
        reseed_timeout_s: float = 2.0,
    ) -> None:
        """`reseed`: a budget seen for the first time starts from the durable spend it reads (see
        model.Reseed), not from its BudgetSpec.seed_usd (the fallback when the read fails)."""
        self._window = window_s
        self._ttl = reservation_ttl_s
        self._clock = clock
        self._wall = wall_clock
        self._windows: dict[str, _Window] = {}
        self._budgets: dict[tuple[str, str], _Budget] = {}
        self._nonce = secrets.token_hex(5)
        self._seq = itertools.count()
        self._calls = 0
        self.seeder = Seeder(reseed, reseed_timeout_s) if reseed is not None else None

    def _budget(self, subject: str, start: str) -> _Budget:
        b = self._budgets.get((subject, start))
        if b is None:
            b = self._budgets[(subject, start)] = _Budget(period_expire_at(start))
        return b

    def _sweep(self, now: float) -> None:
        """Forget idle subjects and finished periods, so memory follows the live set, not history."""
        cutoff = now - self._window
        for subject, w in list(self._windows.items()):
            w.drop_before(cutoff)
            if not w.entries:
                del self._windows[subject]
        wall = self._wall()
        for key, b in list(self._budgets.items()):
            b.drop_expired(now)
            if b.expire_at and b.expire_at <= wall and not b.reservations:
                del self._budgets[key]

    def _tick(self, now: float) -> None:
        self._calls += 1
        if self._calls % _SWEEP_EVERY == 0:
            self._sweep(now)

    def observe_spent(self, subject: str, period_start: str, spent_nano: int) -> None:
        """Carry the shared running total into this process, so that when Redis goes away a team that
        was out of budget stays out. Never lowers what this process has counted itself."""
        self._tick(self._clock())
        b = self._budget(subject, period_start)
        if b.spent is None or b.spent < spent_nano:
            b.spent = spent_nano

    def _window_retry(self, w: _Window, rank: int, now: float) -> float:
        return w.entries[rank][0] + self._window - now

    async def acquire(
        self,
        limits: Sequence[LimitSpec],
        budgets: Sequence[BudgetSpec],
        est_tokens: int,
        reserve_usd: Decimal,
        request_id: str,
        least_usd: Decimal | None = None,
    ) -> Admission:
        limits = active_limits(limits)
        if not limits and not budgets:
            return Admission(True)
        bounded("est_tokens", est_tokens, MAX_REQUEST_TOKENS)
        reserve = usd_nano("reservation", reserve_usd, up=True)
        least = least_nano(least_usd, reserve)
        for spec in limits:
            bounded("rpm", spec.rpm or 0, subject=spec.subject)
            bounded("tpm", spec.tpm or 0, subject=spec.subject)
        caps = [usd_nano("budget", spec.limit_usd, subject=spec.subject) for spec in budgets]
        if self.seeder is not None:
            await self._seed_unseen(budgets)
        # From here on nothing awaits: the check and the record are one step, as a script is.
        now = self._clock()
        self._tick(now)
        status, index, retry = 0, 0, 0.0
        windows: list[tuple[int, int, float]] = []
        objs: list[_Window] = []
        for i, spec in enumerate(limits, 1):
            w = self._windows.get(spec.subject)
            if w is None:
                w = self._windows[spec.subject] = _Window()
            w.drop_before(now - self._window)
            objs.append(w)
            count, used = len(w.entries), w.total
            reset = self._window_retry(w, 0, now) if count else 0.0
            if status == 0 and spec.rpm is not None and count + 1 > spec.rpm:
                status, index = 1, i
                retry = -1.0 if spec.rpm == 0 else self._window_retry(w, count - spec.rpm, now)
                reset = retry
            elif status == 0 and spec.tpm is not None and used + est_tokens > spec.tpm:
                status, index = 2, i
                retry = (
                    -1.0 if est_tokens > spec.tpm else self._tpm_retry(w, used + est_tokens - spec.tpm, now)
                )
                reset = retry
            windows.append((count, used, reset))

        use: list[tuple[int, int]] = []
        bobjs: list[_Budget] = []
        for j, spec in enumerate(budgets, 1):
            b = self._budget(spec.subject, spec.period_start)
            b.drop_expired(now)
            if b.spent is None and spec.seed_usd is not None and self.seeder is None:
                b.spent = usd_nano("seed", spec.seed_usd, subject=spec.subject)
            bobjs.append(b)
            spent = b.spent or 0
            limit = caps[j - 1]
            if status == 0 and spent + b.held + least > limit:
                status, index, reserve = 3, j, least
                end = period_end(spec.period_start)
                if spent + least <= limit:
                    retry = 1.0
                elif end is not None and least <= limit:
                    retry = end.timestamp() - self._wall()
                else:
                    retry = -1.0
            elif status == 0 and spent + b.held + reserve > limit:
                reserve = limit - spent - b.held
            use.append((spent, b.held))

        member = f"{self._nonce}.{next(self._seq)}"
        if status == 0:
            for k, w in enumerate(objs):
                w.entries.append((now, member))
                w.tokens[member] = est_tokens
                w.total += est_tokens
                count, used, reset = windows[k]
                windows[k] = (count + 1, used + est_tokens, reset if count else self._window)
            if reserve:
                for b in bobjs:
                    b.reserve(member, reserve, now + self._ttl)
        subjects = tuple(s.subject for s in limits)
        ticket = Ticket(member, request_id, est_tokens, reserve, subjects, tuple(budgets), self.origin)
        return admission_from(
            limits, budgets, status, index, retry, windows, use, est_tokens, reserve, ticket
        )

    async def _seed_unseen(self, budgets: Sequence[BudgetSpec]) -> None:
        assert self.seeder is not None
        for spec in budgets:
            b = self._budgets.get((spec.subject, spec.period_start))
            if b is None or b.spent is None:
                nano = await self.seeder.nano(spec)
                b = self._budget(spec.subject, spec.period_start)
                if b.spent is None:
                    b.spent = nano

    def _tpm_retry(self, w: _Window, need: int, now: float) -> float:
        freed, retry = 0, float(self._window)
        for ts, member in itertools.islice(w.entries, _RETRY_SCAN):
            retry = ts + self._window - now
            freed += w.tokens.get(member, 0)
            if freed >= need:
                break
        return retry

    async def settle(self, ticket: Ticket, actual_tokens: int, actual_cost_usd: Decimal | None) -> None:
        self.settle_nowait(ticket, actual_tokens, actual_cost_usd)

    def settle_nowait(
        self,
        ticket: Ticket,
        actual_tokens: int,
        actual_cost_usd: Decimal | None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """In process there is no round trip to keep off the path and nothing to fail: settles on
        the spot."""
        tokens, cost = settled_figures(ticket, actual_tokens, actual_cost_usd)
        delta = tokens - ticket.est_tokens
        if delta:
            for subject in ticket.window_subjects:
                w = self._windows.get(subject)
                if w is not None and ticket.member in w.tokens:
                    w.tokens[ticket.member] += delta
                    w.total += delta
        for spec in ticket.budgets:
            b = self._budget(spec.subject, spec.period_start)
            b.release(ticket.member)
            if b.spent is None:
                if self.seeder is not None:
                    continue  # as in Redis: the reseed that comes next reads this cost from the records
                if spec.seed_usd is not None:
                    b.spent = usd_to_nano(spec.seed_usd)
            b.spent = (b.spent or 0) + (ticket.reserve_nano if cost == "-" else int(cost))

    async def seed_budget(self, subject: str, period_start: str, spent_usd: Decimal) -> None:
        b = self._budget(subject, period_start)
        if b.spent is None:
            b.spent = usd_to_nano(spent_usd)

    async def spent(self, subject: str, period_start: str) -> Decimal:
        b = self._budgets.get((subject, period_start))
        return nano_to_usd(b.spent or 0) if b is not None else Decimal(0)

    async def held(self, subject: str, period_start: str) -> Decimal:
        b = self._budgets.get((subject, period_start))
        return nano_to_usd(b.held) if b is not None else Decimal(0)

    async def aclose(self) -> None:
        return None
