"""The Redis key layout and its expiries: nothing the limiter writes outlives its use."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis

from gateway.limits import BudgetSpec, LimitSpec, RedisLimiter, period_start
from gateway.limits.money import period_expire_at

D = Decimal


async def test_key_layout_and_expiries(redis_url: str, prefix: str) -> None:
    lim = RedisLimiter.from_url(redis_url, prefix=prefix, window_s=60)
    day = period_start("daily", datetime.now(UTC))
    budgets = [BudgetSpec("key:k", D("5"), "daily", day), BudgetSpec("team:t", D("50"), "total", "total")]
    adm = await lim.acquire([LimitSpec("key:k", rpm=10, tpm=1000)], budgets, 100, D("0.01"), "r1")
    assert adm.allowed and adm.ticket is not None
    sync = redis.Redis.from_url(redis_url)
    member = adm.ticket.member
    assert sync.zscore(f"{prefix}w:key:k", member) is not None
    tokens = sync.hgetall(f"{prefix}t:key:k")
    # `_exp` records when the TTLs set with it run out, so the script need not read them back.
    ttl_end = int(tokens.pop(b"_exp"))
    assert tokens == {member.encode(): b"100", b"_sum": b"100"}
    assert 60_000 < sync.pttl(f"{prefix}w:key:k") <= 121_000
    assert 60_000 < sync.pttl(f"{prefix}t:key:k") <= 121_000
    server_ms = int(sync.time()[0]) * 1000
    assert abs(ttl_end - server_ms - sync.pttl(f"{prefix}t:key:k")) < 2_000
    assert sync.hgetall(f"{prefix}b:key:k:{day}") == {member.encode(): b"10000000", b"held": b"10000000"}
    assert sync.expiretime(f"{prefix}b:key:k:{day}") == period_expire_at(day)
    assert sync.expiretime(f"{prefix}r:key:k:{day}") == period_expire_at(day)
    res_expiry = sync.zscore(f"{prefix}r:key:k:{day}", member)
    assert res_expiry is not None and abs(res_expiry / 1000 - (time.time() + 600)) < 5
    assert sync.ttl(f"{prefix}b:team:t:total") == -1  # a total budget never expires

    await lim.settle(adm.ticket, 40, D("0.004"))
    settled = {member.encode(): b"40", b"_sum": b"40", b"_exp": b"%d" % ttl_end}
    assert sync.hgetall(f"{prefix}t:key:k") == settled
    assert sync.hgetall(f"{prefix}b:key:k:{day}") == {b"held": b"0", b"spent": b"4000000"}
    assert sync.exists(f"{prefix}r:key:k:{day}") == 0
    assert await lim.spent("key:k", day) == D("0.004")
    assert await lim.spent("team:t", "total") == D("0.004")
    sync.close()
    await lim.aclose()


async def test_budget_key_recreated_by_settle_gets_its_expiry_back(redis_url: str, prefix: str) -> None:
    lim = RedisLimiter.from_url(redis_url, prefix=prefix)
    day = period_start("daily", datetime.now(UTC))
    spec = BudgetSpec("key:k", D("5"), "daily", day, seed_usd=D("1.5"))
    adm = await lim.acquire([], [spec], 0, D("0.01"), "r1")
    assert adm.ticket is not None
    sync = redis.Redis.from_url(redis_url)
    sync.delete(f"{prefix}b:key:k:{day}", f"{prefix}r:key:k:{day}")  # Redis lost its data mid-request
    await lim.settle(adm.ticket, 0, D("0.25"))
    # Re-seeded from the durable spend, the cost added once, and the key expires with its period.
    assert await lim.spent("key:k", day) == D("1.75")
    assert sync.expiretime(f"{prefix}b:key:k:{day}") == period_expire_at(day)
    sync.close()
    await lim.aclose()


async def test_cancelled_acquire_releases_its_reservation(redis_url: str, prefix: str) -> None:
    """The caller is cancelled after the script ran but before the answer came back: no leak."""
    lim = RedisLimiter.from_url(redis_url, prefix=prefix, orphan_release_s=0.05)
    real = lim.client.evalsha

    async def answer_lost(*args: object) -> object:
        await real(*args)
        await asyncio.sleep(10)
        raise AssertionError("unreachable")

    lim.client.evalsha = answer_lost  # type: ignore[method-assign]
    spec = [BudgetSpec("team:t", D("1"), "total", "total")]
    task = asyncio.create_task(lim.acquire([LimitSpec("key:k", tpm=1000)], spec, 300, D("0.5"), "r"))
    await asyncio.sleep(0.1)
    assert await lim.held("team:t", "total") == D("0.5")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    lim.client.evalsha = real  # type: ignore[method-assign]
    await asyncio.sleep(0.3)
    assert await lim.held("team:t", "total") == 0
    assert await lim.spent("team:t", "total") == 0
    sync = redis.Redis.from_url(redis_url)
    assert sync.hget(f"{prefix}t:key:k", "_sum") == b"0"
    sync.close()
    await lim.aclose()


@pytest.mark.parametrize(("lost", "tokens"), [("t", 100), ("w", 100), ("w", 0)])
async def test_window_key_lost_and_written_afresh_gets_its_expiry_back(
    redis_url: str, prefix: str, lost: str, tokens: int
) -> None:
    """A window key evicted under memory pressure is recreated by the next admission without a TTL of
    its own; the script must notice rather than leave it to live forever (with no tokens counted,
    the token hash alone cannot tell)."""
    lim = RedisLimiter.from_url(redis_url, prefix=prefix, window_s=60)
    spec = [LimitSpec("key:k", rpm=10, tpm=1000)]
    assert (await lim.acquire(spec, [], tokens, D(0), "r1")).allowed
    sync = redis.Redis.from_url(redis_url)
    sync.delete(f"{prefix}{lost}:key:k")
    adm = await lim.acquire(spec, [], tokens, D(0), "r2")
    assert adm.allowed
    for kind in "wt":
        assert 60_000 < sync.pttl(f"{prefix}{kind}:key:k") <= 121_000
    if tokens:
        # With the token hash gone the window starts afresh; with the zset gone the hash is dropped too.
        assert sync.hget(f"{prefix}t:key:k", "_sum") == b"100"
        assert sync.zcard(f"{prefix}w:key:k") == (2 if lost == "t" else 1)
    sync.close()
    await lim.aclose()
