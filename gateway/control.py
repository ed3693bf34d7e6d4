"""Admission and accounting around each proxied call: limits and budget reservation before the call
(one limiter round trip, which the call may overlap when there is room: see limits/headroom.py),
settlement and the spend record after (both off the request path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gateway.accounting.record import RequestRecord
from gateway.accounting.thread import WriterThread
from gateway.auth import Principal
from gateway.dispatch import Skip
from gateway.limits import (
    Admission,
    BudgetSpec,
    Limiter,
    LimitSpec,
    affordable_tokens,
    denial_error,
    nano_to_usd,
    usd_to_nano_up,
    worst_case_usd,
)
from gateway.limits.errors import Denial
from gateway.limits.headroom import Headroom
from gateway.pipeline.outcome import Outcome
from gateway.pricing import TokenPrice, has_cache_marks
from gateway.usage import max_output_of
from providers.deployment import Deployment
from routing.tokens import CountCache

DEFAULT_MAX_OUTPUT = 4096
# The shortest answer a budget may cap a call to: with less room than the prompt and this many output
# tokens, the call is refused (429 budget_exceeded) rather than answered with a few words.
MIN_CAPPED_OUTPUT = 16


class Denied(Exception):
    def __init__(self, denial: Denial) -> None:
        super().__init__(denial.message)
        self.denial = denial


@dataclass(frozen=True, slots=True)
class Check:
    limits: list[LimitSpec]
    budgets: list[BudgetSpec]
    est_tokens: int
    reserve: Decimal
    reserve_nano: int
    # The reservation of the prompt and a MIN_CAPPED_OUTPUT-token answer: budgets may hold less than
    # `reserve`, down to this, and the call's output is capped to what they hold. None: all or nothing.
    least: Decimal | None = None
    prompt: int = 0
    # The client's own max_tokens (or max_completion_tokens), and how many choices (`n`) it asked for.
    requested: int | None = None
    choices: int = 1
    # The prices and output maxima of the config the request runs on.
    prices: Mapping[str, TokenPrice | None] = field(default_factory=dict)
    max_output: Mapping[str, int | None] = field(default_factory=dict)
    # The request marks its prompt for caching: its tokens are reserved at the dearest cache-write
    # price, as the whole prompt may be written.
    cache_marks: bool = False


class Control:
    def __init__(
        self,
        limiter: Limiter,
        writer: WriterThread,
        headroom: Headroom | None = None,
    ) -> None:
        self.limiter = limiter
        self.writer = writer
        # None: every call waits for the limiter's answer before it goes upstream.
        self.headroom = headroom
        self.counts = CountCache()
        # Metrics: calls sent before their admission came back, and how many of those it refused.
        self.overlapped = 0
        self.overlap_refusals = 0

    def check(
        self,
        principal: Principal,
        dep: Deployment,
        body: dict[str, Any],
        outcome: Outcome,
        wire: dict[str, Any] | None = None,
    ) -> Check | None:
        """What the limiter must check for this call on `dep`; None when no limit or budget applies.
        `wire` is the body as the client sent it (its cache marks), when it is not `body`."""
        limits = [LimitSpec(f"dep:{dep.id}", dep.rpm, dep.tpm)] if dep.rpm or dep.tpm else []
        budgets: list[BudgetSpec] = []
        if principal.kind == "key":
            if principal.key_rpm or principal.key_tpm:
                limits.append(LimitSpec(f"key:{principal.key_id}", principal.key_rpm, principal.key_tpm))
            if principal.team_rpm or principal.team_tpm:
                limits.append(LimitSpec(f"team:{principal.team_id}", principal.team_rpm, principal.team_tpm))
            owners = (
                (
                    "team",
                    principal.team_id,
                    principal.team_budget_usd,
                    principal.team_budget_period,
                    principal.team_spent_usd,
                ),
                (
                    "key",
                    principal.key_id,
                    principal.key_budget_usd,
                    principal.key_budget_period,
                    principal.key_spent_usd,
                ),
            )
            for kind, ident, limit_usd, period, spent in owners:
                if limit_usd is not None:
                    budgets.append(
                        BudgetSpec.current(
                            f"{kind}:{ident}",
                            limit_usd,
                            period or "total",  # type: ignore[arg-type]
                            seed_usd=spent,
                        )
                    )
        if not limits and not budgets:
            return None
        snap = outcome.snapshot
        prices = snap.prices if snap is not None else {}
        max_output = snap.max_output if snap is not None else {}
        prompt = outcome.count_prompt(body, self.counts.count)
        requested = max_output_of(body)
        max_tokens = requested or max_output.get(dep.id) or DEFAULT_MAX_OUTPUT
        n = body.get("n")
        choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
        price = prices.get(dep.id)
        # Every choice is an answer of up to max_tokens, for the TPM estimate as for the reservation.
        est_tokens = prompt + max_tokens * choices
        if price is None:
            return Check(limits, budgets, est_tokens, Decimal(0), 0, prices=prices, max_output=max_output)
        marked = bool(budgets) and has_cache_marks(body if wire is None else wire)
        rate = price.prompt_ceiling if marked else price.input
        reserve = worst_case_usd(prompt, max_tokens * choices, rate, price.output)
        least = None
        if budgets and price.output > 0 and max_tokens > MIN_CAPPED_OUTPUT:
            least = worst_case_usd(prompt, MIN_CAPPED_OUTPUT * choices, rate, price.output)
        return Check(
            limits,
            budgets,
            est_tokens,
            reserve,
            usd_to_nano_up(reserve),
            least,
            prompt,
            requested,
            choices,
            prices,
            max_output,
            marked,
        )

    def output_cap(self, check: Check, dep: Deployment, held_nano: int) -> int | None:
        """The max_tokens a call on `dep` must carry so that its answer costs no more than the
        `held_nano` its budgets hold: None when nothing needs capping (no budget, free output, or a
        reservation that covers everything `dep` would answer anyway). Raises Skip when that is less
        than MIN_CAPPED_OUTPUT, which only a deployment dearer than the one reserved for leaves."""
        if not check.budgets:
            return None
        price = check.prices.get(dep.id)
        if price is None or price.output <= 0:
            return None
        rate = price.prompt_ceiling if check.cache_marks else price.input
        afford = affordable_tokens(held_nano, check.prompt, rate, price.output) // check.choices
        ceiling = check.requested or check.max_output.get(dep.id)
        if ceiling is not None and afford >= ceiling:
            return None
        if afford < MIN_CAPPED_OUTPUT:
            # Only a deployment dearer than the one reserved for (a fallback, or another of its
            # name): the next one may do.
            raise Skip(Denied(_unaffordable(held_nano, dep)))
        return min(afford, ceiling or DEFAULT_MAX_OUTPUT)

    def overlap(self, check: Check, outcome: Outcome) -> asyncio.Task[None] | None:
        """The admission as a task that runs beside the upstream call, when the figures leave room
        (see limits/headroom.py); None when the call must wait for `acquire`."""
        room = self.headroom
        if room is None or not self.limiter.overlappable:
            return None
        if not room.clear(
            check.limits, check.budgets, check.est_tokens, check.reserve_nano, time.monotonic()
        ):
            return None
        self.overlapped += 1
        return asyncio.ensure_future(self._overlapped(check, outcome))

    async def _overlapped(self, check: Check, outcome: Outcome) -> None:
        try:
            # The call left before the answer, capped for the whole reservation: nothing less will do.
            await self.acquire(check, outcome, flexible=False)
        except Denied:
            self.overlap_refusals += 1
            raise

    async def acquire(self, check: Check, outcome: Outcome, *, flexible: bool = True) -> int:
        """Raise Denied when a limit or budget says no; otherwise hold the reservation on the outcome
        and return the nano-dollars its budgets hold (less than the reservation when `flexible` and
        the budgets' room allows no more, see Check.least)."""
        room = self.headroom
        if room is not None:
            room.sent(check.est_tokens, check.reserve_nano)
        least = check.least if flexible else None
        adm: Admission | None = None
        try:
            adm = await self.limiter.acquire(
                check.limits, check.budgets, check.est_tokens, check.reserve, outcome.request_id, least
            )
        finally:
            if room is not None:
                room.answered(check.budgets, check.est_tokens, check.reserve_nano, adm, time.monotonic())
        outcome.admission = adm
        if not adm.allowed:
            raise Denied(denial_error(adm, MIN_CAPPED_OUTPUT if least is not None else None))
        return adm.reserved_nano

    def metrics_lines(self) -> list[str]:
        return [
            "# TYPE switchyard_limiter_overlapped_total counter",
            f"switchyard_limiter_overlapped_total {self.overlapped}",
            "# TYPE switchyard_limiter_overlap_refusals_total counter",
            f"switchyard_limiter_overlap_refusals_total {self.overlap_refusals}",
        ]

    def finish(self, outcome: Outcome, principal: Principal) -> None:
        adm: Admission | None = outcome.admission
        usage = outcome.billed_usage()
        if adm is not None and adm.ticket is not None:
            tokens = usage.prompt_tokens + usage.completion_tokens if usage else 0
            cost = outcome.cost if outcome.status < 400 or usage else Decimal(0)
            # A refused call is charged only when it had already gone upstream (an overlap).
            if adm.allowed or cost:
                self.limiter.settle_nowait(adm.ticket, tokens, cost)
        self.writer.submit(record_of(outcome, principal))


def _unaffordable(held_nano: int, dep: Deployment) -> Denial:
    held = nano_to_usd(held_nano).normalize()
    return Denial(
        429,
        "budget_exceeded",
        "budget_exceeded",
        f"Budget exceeded: the ${held:f} held for this request cannot pay for its prompt and an answer"
        f" of {MIN_CAPPED_OUTPUT} tokens on `{dep.id}`, dearer than the deployment it was reserved for.",
        {},
    )


def clean_text(text: str, limit: int = 256) -> str:
    """A client's string as the log keeps it: bounded, and without the NUL PostgreSQL refuses (one
    such row would fail its whole batch)."""
    return text[:limit].replace("\x00", "\ufffd")


def baseline_cost(o: Outcome, cost: Decimal | None) -> Decimal | None:
    """What the request's usage would have cost on its route's strongest candidate, priced from the
    snapshot it ran on; a direct request's own `cost`, as is a routed one's that used nothing."""
    usage = o.usage
    if o.route is None or usage is None:
        return cost
    snap = o.snapshot
    price = snap.baselines.get(o.route) if snap is not None else None
    return price.cost(usage) if price is not None else None


def record_of(o: Outcome, principal: Principal) -> RequestRecord:
    dep = o.deployment
    usage = o.billed_usage()
    cost = o.cost if usage or o.cost is not None else Decimal(0)
    return RequestRecord(
        request_id=o.request_id,
        ts=o.arrived,
        team_id=principal.team_id,
        key_id=principal.key_id,
        requested_model=clean_text(o.requested_model),
        route=o.route,
        deployment=dep.id if dep else None,
        provider=dep.provider if dep else None,
        tier=dep.tier if dep else None,
        difficulty=o.difficulty,
        status=o.status,
        error_type=o.error_type,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        cached_tokens=usage.cached_tokens if usage else 0,
        cache_write_5m_tokens=usage.cache_write_5m_tokens if usage else 0,
        cache_write_1h_tokens=usage.cache_write_1h_tokens if usage else 0,
        cost_usd=cost,
        latency_ms=o.latency_s * 1000,
        ttft_ms=o.ttft_s * 1000 if o.ttft_s is not None else None,
        streamed=o.streamed,
        fallbacks=o.fallbacks,
        tokens_estimated=o.usage_counted,
        baseline_cost_usd=baseline_cost(o, cost),
        capture=o.capture,
        escalated=o.escalated,
        wasted_cost_usd=o.wasted_cost,
    )
