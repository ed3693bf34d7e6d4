"""Figures the scripts cannot hold (a max_tokens of 2**63) are that request's error, never an outage.

Real Redis: an out-of-range acquire raises LimitInputError before anything is written, and a normal
acquire right after is still answered by Redis (not the fallback), in both fail modes.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis

from gateway.limits import (
    BudgetSpec,
    FailoverLimiter,
    LimitInputError,
    LimitSpec,
    MemoryLimiter,
    RedisLimiter,
    create_limiter,
)
from gateway.limits.resp import refusal
from gateway.limits.scripts import ACQUIRE

D = Decimal
HUGE = 2**63


def keys_of(redis_url: str, prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        return sorted(client.scan_iter(match=f"{prefix}*", count=1000))
    finally:
        client.close()


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_huge_estimate_is_the_requests_error_not_an_outage(
    redis_url: str, prefix: str, mode: str
) -> None:
    lim = await create_limiter(redis_url, mode, prefix=prefix, timeout_s=1.0)
    assert isinstance(lim, FailoverLimiter)
    try:
        # No TPM on the subject: only the window's running sum would overflow (HINCRBY past 2**63).
        huge = [LimitSpec("dep:shared", rpm=1000)]
        with pytest.raises(LimitInputError):
            await lim.acquire(huge, [], HUGE, D(0), "huge")
        assert keys_of(redis_url, prefix) == []
        assert not lim.degraded and lim.outages == 0

        adm = await lim.acquire([LimitSpec("key:other", rpm=10)], [], 10, D(0), "normal")
        assert adm.allowed and adm.ticket is not None and adm.ticket.origin == "redis"
        assert not lim.degraded and lim.outages == 0 and lim.fallback_acquires == 0
    finally:
        await lim.aclose()


@pytest.mark.parametrize(
    ("est", "reserve", "budget_limit", "rpm"),
    [
        (-1, D(0), None, 10),
        (2**53, D(0), None, 10),
        (10, D("1e10"), D("1e11"), 10),  # reserve past 2**53 nano-dollars
        (10, D("NaN"), D(1), 10),
        (10, D("Infinity"), D(1), 10),
        (10, D(0), D(-1), 10),
        (10, D(0), None, 2**60),
    ],
)
async def test_every_figure_is_checked_before_sending(
    redis_url: str, prefix: str, est: int, reserve: Decimal, budget_limit: Decimal | None, rpm: int
) -> None:
    budgets = [] if budget_limit is None else [BudgetSpec("team:t", budget_limit, "total", "total")]
    for lim in (RedisLimiter.from_url(redis_url, prefix=prefix, timeout_s=1.0), MemoryLimiter()):
        try:
            with pytest.raises(LimitInputError):
                await lim.acquire([LimitSpec("key:k", rpm=rpm)], budgets, est, reserve, "bad")
        finally:
            await lim.aclose()
    assert keys_of(redis_url, prefix) == []


async def test_script_refuses_before_writing(redis_url: str, prefix: str) -> None:
    """The script's own check, for a caller that skips the Python one: no ZADD/HSET before it."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [f"{prefix}w:dep:x", f"{prefix}t:dep:x", f"{prefix}b:team:t:total", f"{prefix}r:team:t:total"]
        for est, reserve in ((HUGE, 0), (10, HUGE), (10, 2**60)):
            arg = f"m.1 {est} {reserve} 600000 60000 1 1000 -1 1 1000000000 0 0 0"
            with pytest.raises(redis.ResponseError):
                client.eval(ACQUIRE, len(keys), *keys, arg)
            assert keys_of(redis_url, prefix) == []
    finally:
        client.close()


async def test_script_error_in_settlement_is_not_an_outage(redis_url: str, prefix: str) -> None:
    lim = await create_limiter(redis_url, "closed", prefix=prefix, timeout_s=1.0)
    assert isinstance(lim, FailoverLimiter)
    try:
        adm = await lim.acquire([LimitSpec("key:k", tpm=1000)], [], 10, D(0), "r")
        assert adm.ticket is not None
        # Upstream usage past what the window counts: capped with a warning, Redis stays in use.
        await lim.settle(adm.ticket, HUGE, D("NaN"))
        assert not lim.degraded and lim.outages == 0 and lim.settle_errors == 0
        again = await lim.acquire([LimitSpec("key:k", tpm=1000)], [], 10, D(0), "r2")
        assert (again.allowed, again.reason, again.ticket and again.ticket.origin) == (False, "tpm", "redis")
        assert (await lim.acquire([LimitSpec("key:other", tpm=1000)], [], 10, D(0), "r3")).allowed
        assert not lim.degraded and lim.outages == 0
    finally:
        await lim.aclose()


@pytest.mark.parametrize(
    ("message", "outage"),
    [
        ("ERR value is not an integer or out of range script: 6a89, on @user_script:142.", False),
        ("ERR limiter figure out of range: window tokens script: 6a89", False),
        ("ERR Error running script (call to f_6a89): @user_script:1: -OOM command not allowed ", True),
        ("OOM command not allowed when used memory > 'maxmemory'. script: 6a89", True),
        ("READONLY You can't write against a read only replica.", True),
        ("LOADING Redis is loading the dataset in memory", True),
        ("BUSY Redis is busy running a script.", True),
    ],
)
def test_script_errors_and_outages_are_told_apart(message: str, outage: bool) -> None:
    assert (refusal(redis.ResponseError(message)) is None) == outage
    assert refusal(redis.ConnectionError("gone")) is None
