"""A reservation that may shrink (`least_usd`): budgets hold what they have room for, down to the least
the request can run on, and no further; both limiters."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

from gateway.limits import (
    Admission,
    BudgetSpec,
    LimitSpec,
    affordable_tokens,
    denial_error,
    nano_to_usd,
    usd_to_nano,
)

from .conftest import LimiterFactory
from .test_budgets import START, team_budget

D = Decimal


async def test_budgets_hold_what_is_left_down_to_the_least(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    b = [team_budget("1.00")]
    first = await lim.acquire([], b, 0, D("0.60"), "r1", D("0.10"))
    assert first.allowed and first.reserved_nano == usd_to_nano(D("0.60"))
    second = await lim.acquire([], b, 0, D("0.60"), "r2", D("0.10"))
    assert second.allowed and second.reserved_nano == usd_to_nano(D("0.40"))
    assert second.ticket is not None and second.ticket.reserve_nano == second.reserved_nano
    assert await lim.held("team:t", START) == D("1.00")
    third = await lim.acquire([], b, 0, D("0.60"), "r3", D("0.10"))
    assert (third.allowed, third.reason, third.requested) == (False, "budget", D("0.10"))
    assert third.retry_after == 1.0, "only reservations stand in the way"
    # An unknown cost charges what was held, not the reservation asked for.
    await lim.settle(second.ticket, 0, None)
    assert await lim.spent("team:t", START) == D("0.40")


async def test_the_tightest_budget_decides_and_all_hold_the_same(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    key = BudgetSpec("key:k", D("0.25"), "monthly", START)
    adm = await lim.acquire([LimitSpec("key:k", rpm=10)], [team_budget("5"), key], 10, D("1"), "r", D("0.05"))
    assert adm.allowed and adm.reserved_nano == usd_to_nano(D("0.25"))
    assert await lim.held("team:t", START) == await lim.held("key:k", START) == D("0.25")
    refused = await lim.acquire([], [team_budget("5"), key], 0, D("1"), "r2", D("0.05"))
    assert (refused.allowed, refused.subject) == (False, "key:k")
    assert await lim.held("team:t", START) == D("0.25"), "a refusal holds nothing anywhere"


async def test_a_least_above_the_reservation_is_the_reservation(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    adm = await lim.acquire([], [team_budget("0.50")], 0, D("0.40"), "r", D("0.90"))
    assert adm.allowed and adm.reserved_nano == usd_to_nano(D("0.40"))
    refused = await lim.acquire([], [team_budget("0.50")], 0, D("0.40"), "r2", D("0.90"))
    assert not refused.allowed and refused.requested == D("0.40")


async def test_concurrent_flexible_requests_never_overspend(make_limiter: LimiterFactory) -> None:
    """Each request settles at the most what it holds can pay for (the cap the gateway sets): the total
    never passes the limit, and what is left at the end is less than the least one request needs."""
    lim = make_limiter()
    b = [team_budget("1.00")]
    rng = random.Random(11)
    out_price, least = D("0.001"), D("0.016")
    charged: list[Decimal] = []

    async def one(i: int) -> None:
        for _ in range(60):
            adm = await lim.acquire([], b, 0, D("0.30"), f"r{i}", least)
            if adm.allowed:
                assert adm.ticket is not None and least <= nano_to_usd(adm.reserved_nano) <= D("0.30")
                await asyncio.sleep(rng.random() * 0.01)
                cost = affordable_tokens(adm.reserved_nano, 0, D(0), out_price) * out_price
                await lim.settle(adm.ticket, 0, cost)
                charged.append(cost)
                return
            await asyncio.sleep(0.005)

    await asyncio.gather(*(one(i) for i in range(40)))
    spent = await lim.spent("team:t", START)
    assert spent == sum(charged) <= D("1.00")
    assert D("1.00") - spent < least
    assert await lim.held("team:t", START) == 0


def test_affordable_tokens_rounds_down_exactly() -> None:
    # $1.00 held, 10 prompt tokens at a cent: 90 answer tokens at a cent, not 90.0000001 or 89.
    assert affordable_tokens(10**9, 10, D("0.01"), D("0.01")) == 90
    # A price with no exact decimal: the quotient is cut, never rounded up past what is held.
    assert affordable_tokens(3, 0, D(0), D(1) / D(3) / 10**9) == 9
    assert affordable_tokens(100, 200, D("0.000000001"), D("0.000000001")) == 0


def test_a_flexible_refusal_says_what_the_least_answer_needs() -> None:
    adm = Admission(False, "budget", "key:k", 1.0, limit=D("1.00"), used=D("0.95"), requested=D("0.26"))
    msg = denial_error(adm, 16).body()["error"]["message"]
    assert "needs at least $0.26 (its prompt and an answer of 16 tokens)" in msg
