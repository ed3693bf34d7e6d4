"""The limiter's data: what to check (specs), what came back (Admission) and what to settle (Ticket)."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, Protocol

from gateway.limits.money import Period, nano_to_usd, period_start, usd_to_nano, usd_to_nano_up

log = logging.getLogger("switchyard.limits")

Reason = Literal["rpm", "tpm", "budget", "unavailable"]
# (subject, period_start) -> what that budget has spent this period as far as the durable records
# know (the database plus what this process has not flushed to it yet). Read when Redis lost it.
Reseed = Callable[[str, str], Awaitable[Decimal]]

# Lua holds numbers as doubles, exact below 2**53: every figure a script gets stays within that. One
# request's tokens stay far below it, so that a window's running sum (no TPM limit caps it) would need
# millions of requests a window to leave the exact range, and far more to reach HINCRBY's 2**63.
MAX_EXACT = 2**53 - 1
MAX_REQUEST_TOKENS = 2**32


class LimitInputError(ValueError):
    """A figure the limiter cannot count (negative, not finite, past the exact range), or a limiter
    script that refused a request's figures: that request's error (invalid input), never an outage."""


def bounded(name: str, value: object, top: int = MAX_EXACT, *, subject: str = "") -> int:
    """`value` as an int in [0, top]; LimitInputError otherwise (bools and floats included).
    `subject` names whose figure it is, in the message only (nothing is formatted on the way)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        who = f"{subject} " if subject else ""
        raise LimitInputError(f"{who}{name} must be an integer from 0 to {top}, not {value!r}")
    return value


def usd_nano(name: str, usd: Decimal | int, *, up: bool = False, subject: str = "") -> int:
    """Dollars as nano-dollars within the exact range (reservations round up)."""
    amount = Decimal(usd)
    if amount.is_finite() and amount >= 0:
        nano = usd_to_nano_up(amount) if up else usd_to_nano(amount)
        if nano <= MAX_EXACT:
            return nano
    who = f"{subject} " if subject else ""
    raise LimitInputError(
        f"{who}{name} must be a finite amount from $0 to ${nano_to_usd(MAX_EXACT)}, not {usd!r}"
    )


def least_nano(least_usd: Decimal | None, reserve_nano: int) -> int:
    """The least reservation a request runs on, in nano-dollars (rounded up, like the reservation),
    never more than the reservation itself; the whole reservation when none is given."""
    if least_usd is None:
        return reserve_nano
    return min(usd_nano("least reservation", least_usd, up=True), reserve_nano)


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """Requests and tokens per minute for one subject: `key:<id>`, `team:<id>` or `dep:<deployment>`."""

    subject: str
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """A spend ceiling for one subject over one period.

    `seed_usd` is the durable spend the database knows for this period; when given, the limiter
    initialises its running total from it on first sight (same as `seed_budget`, but inside the
    acquire round trip, and again after Redis lost its data).
    """

    subject: str
    limit_usd: Decimal
    period: Period
    period_start: str
    seed_usd: Decimal | None = None

    @classmethod
    def current(
        cls,
        subject: str,
        limit_usd: Decimal,
        period: Period,
        now: datetime | None = None,
        seed_usd: Decimal | None = None,
    ) -> BudgetSpec:
        start = period_start(period, now or datetime.now(UTC))
        return cls(subject, limit_usd, period, start, seed_usd)


@dataclass(frozen=True, slots=True)
class Ticket:
    """What `settle` needs to undo the estimate and the reservation of one admitted request."""

    member: str
    request_id: str
    est_tokens: int
    reserve_nano: int
    window_subjects: tuple[str, ...]
    budgets: tuple[BudgetSpec, ...]
    # Which limiter issued it, so a failover wrapper settles where it acquired.
    origin: str = ""


@dataclass(frozen=True, slots=True)
class WindowState:
    """One subject's window as the check saw it (after this request, when admitted)."""

    spec: LimitSpec
    requests: int
    tokens: int
    reset_s: float


@dataclass(slots=True)
class Admission:
    allowed: bool
    reason: Reason | None = None
    subject: str | None = None
    # Seconds until a retry can pass; math.inf when it never will (a limit below one request).
    retry_after: float = 0.0
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None
    # For the error message of the limit that failed: its ceiling and what was already in use.
    limit: int | Decimal | None = None
    used: int | Decimal | None = None
    requested: int | Decimal | None = None
    # Admitted: settles the request. Refused: charges only (est_tokens and reserve_nano are 0).
    ticket: Ticket | None = field(default=None, repr=False)
    # (spent, held) nano-dollars per budget as the check saw them, in the order given.
    budget_use: Sequence[tuple[int, int]] = ()
    # Admitted: the nano-dollars each budget holds for it, from the least asked for up to the
    # reservation (see Limiter.acquire).
    reserved_nano: int = 0
    # Every window as the check saw it, in the order given.
    windows: Sequence[WindowState] = ()

    def headers(self) -> dict[str, str]:
        h: dict[str, str] = {}
        if self.limit_requests is not None:
            h["x-ratelimit-limit-requests"] = str(self.limit_requests)
            h["x-ratelimit-remaining-requests"] = str(max(self.remaining_requests or 0, 0))
            h["x-ratelimit-reset-requests"] = format_duration(self.reset_requests or 0.0)
        if self.limit_tokens is not None:
            h["x-ratelimit-limit-tokens"] = str(self.limit_tokens)
            h["x-ratelimit-remaining-tokens"] = str(max(self.remaining_tokens or 0, 0))
            h["x-ratelimit-reset-tokens"] = format_duration(self.reset_tokens or 0.0)
        if not self.allowed and math.isfinite(self.retry_after):
            # The OpenAI SDKs read retry-after-ms first; plain clients get whole seconds, rounded up.
            h["retry-after"] = str(max(1, math.ceil(self.retry_after)))
            h["retry-after-ms"] = str(max(1, math.ceil(self.retry_after * 1000)))
        return h


class Limiter(Protocol):
    # Whether a call may go upstream beside its acquire (limits/headroom.py): only when acquire waits
    # on another process (Redis) whose replies are read in the order it ran the commands.
    overlappable: bool

    async def acquire(
        self,
        limits: Sequence[LimitSpec],
        budgets: Sequence[BudgetSpec],
        est_tokens: int,
        reserve_usd: Decimal,
        request_id: str,
        least_usd: Decimal | None = None,
    ) -> Admission:
        """Check every window and budget and, when all pass, record the request in each. Budgets
        hold `reserve_usd`, or as much of it as the tightest has room for when `least_usd` (at most
        the reservation) is given: a request is then refused only when not even `least_usd` fits,
        and `Admission.reserved_nano` says what was held."""
        ...

    async def settle(self, ticket: Ticket, actual_tokens: int, actual_cost_usd: Decimal | None) -> None: ...

    def settle_nowait(
        self,
        ticket: Ticket,
        actual_tokens: int,
        actual_cost_usd: Decimal | None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """`settle` off the request path, tracked by the limiter (and drained on aclose); a failure
        goes to `on_error` (logged when there is none)."""
        ...

    async def seed_budget(self, subject: str, period_start: str, spent_usd: Decimal) -> None: ...

    async def spent(self, subject: str, period_start: str) -> Decimal: ...

    async def held(self, subject: str, period_start: str) -> Decimal: ...

    async def aclose(self) -> None: ...


def active_limits(limits: Sequence[LimitSpec]) -> Sequence[LimitSpec]:
    """Specs with neither rpm nor tpm are dropped: recording traffic nobody limits is pure cost, and a
    deployment's window would be the hottest key of all."""
    if all(s.rpm is not None or s.tpm is not None for s in limits):
        return limits
    return [s for s in limits if s.rpm is not None or s.tpm is not None]


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: `20ms`, `1.5s`, `6m0s`."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s" if seconds < 10 else f"{round(seconds)}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{secs}s"


def _pick(states: Sequence[WindowState], attr: str) -> WindowState | None:
    """The key-level window with the least room left; any subject's when no key-level one has it."""
    rpm = attr == "rpm"
    best: WindowState | None = None
    best_room, best_keyed = 0, False
    for s in states:  # one pass: this runs twice on every admitted request
        limit = s.spec.rpm if rpm else s.spec.tpm
        if limit is None:
            continue
        keyed = s.spec.subject.startswith("key:")
        room = limit - (s.requests if rpm else s.tokens)
        if best is None or (keyed and not best_keyed) or (keyed == best_keyed and room < best_room):
            best, best_room, best_keyed = s, room, keyed
    return best


def fill_headers(adm: Admission, states: Sequence[WindowState], failed: WindowState | None) -> Admission:
    """Copy the header figures onto `adm`: the failing window's for its dimension, else the tightest."""
    req = failed if failed is not None and adm.reason == "rpm" else _pick(states, "rpm")
    tok = failed if failed is not None and adm.reason == "tpm" else _pick(states, "tpm")
    adm.windows = states
    if req is not None and req.spec.rpm is not None:
        adm.limit_requests = req.spec.rpm
        adm.remaining_requests = req.spec.rpm - req.requests
        adm.reset_requests = req.reset_s
    if tok is not None and tok.spec.tpm is not None:
        adm.limit_tokens = tok.spec.tpm
        adm.remaining_tokens = tok.spec.tpm - tok.tokens
        adm.reset_tokens = tok.reset_s
    return adm


def admission_from(
    limits: Sequence[LimitSpec],
    budgets: Sequence[BudgetSpec],
    status: int,
    index: int,
    retry_s: float,
    windows: Sequence[tuple[int, int, float]],
    budget_use: Sequence[tuple[int, int]],
    est_tokens: int,
    reserve_nano: int,
    ticket: Ticket | None,
) -> Admission:
    """Both limiters' raw answer -> Admission. `status`: 0 admitted, 1 rpm, 2 tpm, 3 budget;
    `index` is 1-based into limits or budgets; `retry_s` < 0 means never. `reserve_nano` is what an
    admitted request holds, or the least a request refused for its budget needed."""
    states = [
        WindowState(spec, req, tok, reset) for spec, (req, tok, reset) in zip(limits, windows, strict=True)
    ]
    if status == 0:
        adm = Admission(True, ticket=ticket, budget_use=budget_use, reserved_nano=reserve_nano)
        return fill_headers(adm, states, None)
    if ticket is not None:
        # A refusal holds nothing; its ticket can only charge the budgets for a call that went
        # upstream before the refusal came back (see headroom.py).
        ticket = Ticket(ticket.member, ticket.request_id, 0, 0, (), ticket.budgets, ticket.origin)
    retry = math.inf if retry_s < 0 else retry_s
    if status in (1, 2):
        spec, state = limits[index - 1], states[index - 1]
        rpm = status == 1
        adm = Admission(
            False,
            "rpm" if rpm else "tpm",
            spec.subject,
            retry,
            limit=spec.rpm if rpm else spec.tpm,
            used=state.requests if rpm else state.tokens,
            requested=1 if rpm else est_tokens,
            ticket=ticket,
            budget_use=budget_use,
        )
        return fill_headers(adm, states, state)
    budget = budgets[index - 1]
    spent, held = budget_use[index - 1]
    adm = Admission(
        False,
        "budget",
        budget.subject,
        retry,
        limit=budget.limit_usd,
        used=nano_to_usd(spent + held),
        requested=nano_to_usd(reserve_nano),
        ticket=ticket,
        budget_use=budget_use,
    )
    return fill_headers(adm, states, None)


def settled_figures(ticket: Ticket, tokens: int, cost_usd: Decimal | None) -> tuple[int, int | str]:
    """(tokens, nano-dollars or '-' for unknown) for a settlement. Upstream figures past what the
    limiter counts are capped (tokens) or taken as unknown (cost: the reservation is charged), with a
    warning: a settlement has no request left to fail."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 0 <= tokens <= MAX_REQUEST_TOKENS:
        log.warning(
            "rate limiter: %s settled with %r tokens; counting %d",
            ticket.request_id,
            tokens,
            MAX_REQUEST_TOKENS,
        )
        tokens = MAX_REQUEST_TOKENS if isinstance(tokens, int) and tokens > 0 else 0
    if cost_usd is None:
        return tokens, "-"
    try:
        return tokens, usd_nano("cost", cost_usd)
    except LimitInputError as exc:
        log.warning("rate limiter: %s settled with %s; charging its reservation", ticket.request_id, exc)
        return tokens, "-"
