"""When a request may go upstream while its limiter round trip is still out.

Under load, the acquire's reply waits for the end of an event-loop pass that relays other requests'
streams, and the upstream call waits behind it: with PostgreSQL and Redis on, that one extra pass
was most of the gateway's added latency at 16 concurrent streams. When the last answers Redis gave
for every window and budget a request touches left plenty of room, the call is sent at once and the
answer, which decides, is awaited beside it: a "no" cancels the call before anything reaches the
client. The decision itself never changes; only when the upstream hears of the request does.

The room is this process's view: what Redis said last (at most `max_age_s` ago), less what this
process has asked for since without an answer. Another replica's traffic since then is unknown; the
`fraction` of every limit kept free is what absorbs it. A call overlapped and then refused has reached
the upstream, which may bill it, so the margin is wide and near any limit requests wait as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.limits.model import Admission, BudgetSpec, LimitSpec
from gateway.limits.money import usd_to_nano


@dataclass(frozen=True, slots=True)
class _Room:
    seen: float
    # What the window had left after the request that reported it, less the margin; None: no limit.
    requests: float | None
    tokens: float | None


class Headroom:
    def __init__(self, fraction: float = 0.25, max_age_s: float = 1.0) -> None:
        self.fraction = fraction
        self.max_age_s = max_age_s
        self._windows: dict[str, _Room] = {}
        # (seen, nano-dollars left less the margin) per budget subject and period.
        self._budgets: dict[tuple[str, str], tuple[float, float]] = {}
        # Acquires sent and not yet answered: Redis' last figures do not include them.
        self._pending = 0
        self._pending_tokens = 0
        self._pending_nano = 0

    def clear(
        self,
        limits: Sequence[LimitSpec],
        budgets: Sequence[BudgetSpec],
        est_tokens: int,
        reserve_nano: int,
        now: float,
    ) -> bool:
        """True when every window and budget keeps `fraction` of its limit free after this request
        and everything still pending, by figures no older than `max_age_s`."""
        oldest = now - self.max_age_s
        for spec in limits:
            room = self._windows.get(spec.subject)
            if room is None or room.seen < oldest:
                return False
            if spec.rpm is not None and (room.requests is None or room.requests - self._pending - 1 < 0):
                return False
            if spec.tpm is not None and (
                room.tokens is None or room.tokens - self._pending_tokens - est_tokens < 0
            ):
                return False
        for b in budgets:
            hit = self._budgets.get((b.subject, b.period_start))
            if hit is None or hit[0] < oldest or hit[1] - self._pending_nano - reserve_nano < 0:
                return False
        return True

    def sent(self, est_tokens: int, reserve_nano: int) -> None:
        self._pending += 1
        self._pending_tokens += est_tokens
        self._pending_nano += reserve_nano

    def answered(
        self,
        budgets: Sequence[BudgetSpec],
        est_tokens: int,
        reserve_nano: int,
        adm: Admission | None,
        now: float,
    ) -> None:
        """One acquire came back (`adm`), or failed (None): it is no longer pending."""
        self._pending -= 1
        self._pending_tokens -= est_tokens
        self._pending_nano -= reserve_nano
        if adm is None:
            return
        if len(self._windows) > 65536:
            self._windows.clear()
        keep = 1 - self.fraction
        for w in adm.windows:
            rpm, tpm = w.spec.rpm, w.spec.tpm
            self._windows[w.spec.subject] = _Room(
                now,
                None if rpm is None else keep * rpm - w.requests,
                None if tpm is None else keep * tpm - w.tokens,
            )
        if len(self._budgets) > 65536:
            self._budgets.clear()
        # A budget's figures are from before this request; what it now holds is gone from the room too
        # (and stays gone once settled, as spend), or the next request would count it free.
        own = adm.reserved_nano if adm.allowed else 0
        for b, (spent, held) in zip(budgets, adm.budget_use, strict=False):
            room = keep * usd_to_nano(b.limit_usd) - spent - held - own
            self._budgets[b.subject, b.period_start] = (now, room)
