"""Budgets: reserve the worst case, settle the actual cost, never exceed; both limiters."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime
from decimal import Decimal

from gateway.limits import BudgetSpec, LimitSpec, period_start

from .conftest import LimiterFactory

D = Decimal
START = period_start("monthly", datetime.now(UTC))


def team_budget(limit: str = "1.00", seed: str | None = None, subject: str = "team:t") -> BudgetSpec:
    return BudgetSpec(subject, D(limit), "monthly", START, None if seed is None else D(seed))


async def test_reserve_then_settle(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    b = [team_budget()]
    res = [await lim.acquire([], b, 0, D("0.30"), f"r{i}") for i in range(4)]
    assert [a.allowed for a in res] == [True, True, True, False]
    denied = res[3]
    assert (denied.reason, denied.subject) == ("budget", "team:t")
    assert (denied.limit, denied.used, denied.requested) == (D("1.00"), D("0.90"), D("0.30"))
    # Only reservations stand in the way, and they clear as requests finish: a short retry.
    assert denied.retry_after == 1.0
    assert await lim.spent("team:t", START) == 0

    assert res[0].ticket is not None
    await lim.settle(res[0].ticket, 0, D("0.10"))
    assert await lim.spent("team:t", START) == D("0.10")
    # 0.10 spent + 0.60 held + 0.30 = exactly the limit: allowed, and then nothing more is.
    assert (await lim.acquire([], b, 0, D("0.30"), "exact")).allowed
    assert not (await lim.acquire([], b, 0, D("0.000000001"), "one-nano")).allowed


async def test_spent_budget_waits_for_the_next_period(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    b = [team_budget("0.05")]
    adm = await lim.acquire([], b, 0, D("0.05"), "r")
    assert adm.ticket is not None
    await lim.settle(adm.ticket, 0, D("0.05"))
    denied = await lim.acquire([], b, 0, D("0.01"), "r2")
    assert not denied.allowed
    # The month has to roll over; retry-after points there.
    assert 0 < denied.retry_after <= 31 * 86400
    # A request whose worst case exceeds the whole budget can never pass.
    never = await lim.acquire([], [team_budget("0.05", subject="team:other")], 0, D("0.06"), "r3")
    assert not never.allowed and math.isinf(never.retry_after)


async def test_unknown_cost_charges_the_reservation(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    adm = await lim.acquire([], [team_budget()], 0, D("0.25"), "r")
    assert adm.ticket is not None
    await lim.settle(adm.ticket, 0, None)
    assert await lim.spent("team:t", START) == D("0.25")


async def test_money_is_exact(make_limiter: LimiterFactory) -> None:
    """Nano-dollar integers: a thousand tiny costs add up to exactly their sum; reservations round up."""
    lim = make_limiter()
    b = [team_budget("10")]
    tickets = []
    for i in range(200):
        adm = await lim.acquire([], b, 0, D("0.0000000001"), f"r{i}")  # a tenth of a nano: reserves 1
        assert adm.allowed and adm.ticket is not None and adm.ticket.reserve_nano == 1
        tickets.append(adm.ticket)
    await asyncio.gather(*(lim.settle(t, 0, D("0.000000123")) for t in tickets))
    assert await lim.spent("team:t", START) == D("0.0000246")
    assert await lim.held("team:t", START) == 0


async def test_reservations_expire_when_a_gateway_dies(make_limiter: LimiterFactory) -> None:
    lim = make_limiter(reservation_ttl_s=0.3)
    b = [team_budget()]
    lost = await lim.acquire([], b, 0, D("0.60"), "lost")  # never settled: its gateway "died"
    assert lost.allowed
    assert not (await lim.acquire([], b, 0, D("0.60"), "blocked")).allowed
    await asyncio.sleep(0.35)
    late = await lim.acquire([], b, 0, D("0.60"), "late")
    assert late.allowed
    assert await lim.held("team:t", START) == D("0.60")
    # A settlement that arrives after its reservation expired still charges the cost, once.
    assert lost.ticket is not None
    await lim.settle(lost.ticket, 0, D("0.20"))
    assert await lim.spent("team:t", START) == D("0.20")
    assert await lim.held("team:t", START) == D("0.60")


async def test_seed_from_durable_spend(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    await lim.seed_budget("team:t", START, D("0.95"))
    await lim.seed_budget("team:t", START, D("0.10"))  # set-if-absent: the live total wins
    assert await lim.spent("team:t", START) == D("0.95")
    assert not (await lim.acquire([], [team_budget()], 0, D("0.10"), "r")).allowed
    assert (await lim.acquire([], [team_budget()], 0, D("0.05"), "r")).allowed


async def test_seed_inside_the_spec(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    adm = await lim.acquire([], [team_budget(seed="0.80")], 0, D("0.30"), "r")
    assert not adm.allowed and adm.used == D("0.80")
    # Once the running total exists, a (stale) seed no longer moves it.
    adm = await lim.acquire([], [team_budget(seed="0.10")], 0, D("0.20"), "r")
    assert adm.allowed and adm.ticket is not None
    await lim.settle(adm.ticket, 0, D("0.15"))
    assert await lim.spent("team:t", START) == D("0.95")


async def test_budget_denial_records_nothing_anywhere(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    key_limit = LimitSpec("key:k", rpm=3, tpm=1000)
    key_budget = BudgetSpec("key:k", D("5"), "daily", period_start("daily", datetime.now(UTC)))
    for i in range(5):
        adm = await lim.acquire([key_limit], [key_budget, team_budget("0.01")], 100, D("0.02"), f"r{i}")
        assert (adm.allowed, adm.reason, adm.subject) == (False, "budget", "team:t")
    assert await lim.held("key:k", key_budget.period_start) == 0
    res = [await lim.acquire([key_limit], [key_budget], 100, D("0.02"), f"ok{i}") for i in range(4)]
    assert [a.allowed for a in res] == [True, True, True, False]


async def test_concurrent_requests_never_overspend(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    b = [team_budget()]
    worst = D("0.10")
    rng = random.Random(7)
    charged: list[Decimal] = []

    async def one(i: int) -> None:
        for _ in range(40):
            adm = await lim.acquire([], b, 0, worst, f"r{i}")
            if adm.allowed:
                assert adm.ticket is not None
                await asyncio.sleep(rng.random() * 0.01)
                cost = D(rng.randint(10, 100)) / 1000
                await lim.settle(adm.ticket, 0, cost)
                charged.append(cost)
                return
            if math.isinf(adm.retry_after) or adm.retry_after > 1:
                return
            await asyncio.sleep(0.005)

    await asyncio.gather(*(one(i) for i in range(50)))
    spent = await lim.spent("team:t", START)
    assert spent == sum(charged)
    assert spent <= D("1.00")
    assert spent >= D("0.90")  # whatever was left is less than one worst case
    assert await lim.held("team:t", START) == 0


async def test_settle_nowait_settles_off_the_path(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    adms = [
        await lim.acquire([LimitSpec("key:n", tpm=100)], [team_budget()], 50, D("0.2"), f"r{i}")
        for i in range(2)
    ]
    for adm in adms:
        assert adm.ticket is not None
        lim.settle_nowait(adm.ticket, 10, D("0.05"))
    for _ in range(100):
        if await lim.spent("team:t", START) == D("0.10"):
            break
        await asyncio.sleep(0.01)
    assert await lim.spent("team:t", START) == D("0.10")
    assert await lim.held("team:t", START) == 0
    adm = await lim.acquire([LimitSpec("key:n", tpm=100)], [], 80, D(0), "r")
    assert adm.allowed  # 20 tokens used after correction
