"""A budget Redis has no total for is seeded from `reseed` (the durable spend), read afresh each time
the total is missing, shared by concurrent askers, and never when the total is there."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import redis

from gateway.limits import BudgetSpec, MemoryLimiter, RedisLimiter, usd_to_nano

D = Decimal
BUDGET = BudgetSpec("team:t", D("1.00"), "total", "total", seed_usd=D("0.10"))


class Durable:
    def __init__(self, figure: str, *, fail: bool = False) -> None:
        self.figure, self.fail, self.calls = D(figure), fail, 0

    async def __call__(self, subject: str, period_start: str) -> Decimal:
        self.calls += 1
        await asyncio.sleep(0.05)
        if self.fail:
            raise ConnectionRefusedError("database down")
        return self.figure


async def test_missing_total_is_read_once_for_concurrent_acquires(redis_url: str, prefix: str) -> None:
    durable = Durable("0.40")
    lim = RedisLimiter.from_url(
        redis_url, prefix=prefix, timeout_s=1.0, reseed=durable, reconcile_interval_s=0
    )
    try:
        res = await asyncio.gather(*(lim.acquire([], [BUDGET], 0, D("0.01"), f"r{i}") for i in range(8)))
        assert all(a.allowed for a in res) and durable.calls == 1
        assert {a.budget_use[0][0] for a in res} == {usd_to_nano(D("0.40"))}
        # The total is there now: no more reads on the request path.
        await lim.acquire([], [BUDGET], 0, D("0.01"), "later")
        assert durable.calls == 1
        # Lost again (a restart, a flush): read again, not remembered.
        sync = redis.Redis.from_url(redis_url)
        sync.delete(f"{prefix}b:team:t:total")
        durable.figure = D("0.70")
        again = await lim.acquire([], [BUDGET], 0, D("0.01"), "again")
        assert durable.calls == 2 and again.budget_use[0][0] == usd_to_nano(D("0.70"))
        sync.close()
    finally:
        await lim.aclose()


async def test_database_down_falls_back_to_the_cached_seed(redis_url: str, prefix: str) -> None:
    for lim in (
        RedisLimiter.from_url(
            redis_url, prefix=prefix, reseed=Durable("0.40", fail=True), reconcile_interval_s=0
        ),
        MemoryLimiter(reseed=Durable("0.40", fail=True)),
    ):
        try:
            adm = await lim.acquire([], [BUDGET], 0, D("0.01"), "r")
            assert adm.allowed and adm.budget_use[0][0] == usd_to_nano(D("0.10"))
        finally:
            await lim.aclose()


async def test_settling_into_a_lost_total_leaves_it_for_the_reseed(redis_url: str, prefix: str) -> None:
    """The settled request's cost is in the spend records the reseed reads: charging a fresh `spent`
    too would both count it twice and stop the reseed from happening."""
    durable = Durable("0.40")
    lim = RedisLimiter.from_url(
        redis_url, prefix=prefix, timeout_s=1.0, reseed=durable, reconcile_interval_s=0
    )
    sync = redis.Redis.from_url(redis_url)
    try:
        adm = await lim.acquire([], [BUDGET], 0, D("0.05"), "r")
        assert adm.ticket is not None
        sync.delete(f"{prefix}b:team:t:total", f"{prefix}r:team:t:total")
        await lim.settle(adm.ticket, 0, D("0.05"))
        assert sync.hget(f"{prefix}b:team:t:total", "spent") is None
        durable.figure = D("0.45")
        assert (await lim.acquire([], [BUDGET], 0, D("0.05"), "r2")).budget_use[0][0] == usd_to_nano(
            D("0.45")
        )
    finally:
        sync.close()
        await lim.aclose()
