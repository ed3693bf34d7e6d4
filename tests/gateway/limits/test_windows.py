"""RPM/TPM sliding windows, run against the Lua script in Redis and the in-process limiter alike."""

from __future__ import annotations

import asyncio
import math
import time
from decimal import Decimal

from gateway.limits import LimitSpec

from .conftest import LimiterFactory

ZERO = Decimal(0)


async def _burst(lim, limits, n, est=0):
    return [await lim.acquire(limits, [], est, ZERO, f"r{i}") for i in range(n)]


async def test_rpm_admits_exactly_the_limit(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    limits = [LimitSpec("key:k1", rpm=5)]
    res = await _burst(lim, limits, 8)
    assert [a.allowed for a in res] == [True] * 5 + [False] * 3
    denied = res[5]
    assert (denied.reason, denied.subject) == ("rpm", "key:k1")
    assert 0 < denied.retry_after <= 60
    h = denied.headers()
    assert h["x-ratelimit-limit-requests"] == "5"
    assert h["x-ratelimit-remaining-requests"] == "0"
    assert int(h["retry-after"]) >= 1 and "retry-after-ms" in h
    assert res[0].headers()["x-ratelimit-remaining-requests"] == "4"
    assert res[4].headers()["x-ratelimit-remaining-requests"] == "0"
    assert res[0].ticket is not None
    # A refusal holds nothing: its ticket can only charge budgets (a call already gone upstream).
    charge = denied.ticket
    assert charge is not None and charge.est_tokens == 0 and charge.reserve_nano == 0
    assert charge.window_subjects == ()


async def test_sliding_window_has_no_burst_at_the_edge(make_limiter: LimiterFactory) -> None:
    """A fixed window lets 2x through around its boundary; a sliding one never more than the limit
    in any window-long span, wherever the span starts."""
    window = 0.6
    lim = make_limiter(window_s=window)
    limits = [LimitSpec("key:edge", rpm=10)]
    t0 = time.monotonic()
    assert all(a.allowed for a in await _burst(lim, limits, 10))
    t_burst = time.monotonic()
    # Probe across the whole of the following window: nothing may pass until the first batch ages out.
    while time.monotonic() - t0 < window - 0.1:
        adm = await lim.acquire(limits, [], 0, ZERO, "probe")
        assert not adm.allowed, f"admitted {time.monotonic() - t0:.3f}s into the window"
        assert adm.retry_after <= window
        await asyncio.sleep(0.04)
    await asyncio.sleep(max(0.0, t_burst + window + 0.02 - time.monotonic()))
    again = await _burst(lim, limits, 11)
    assert [a.allowed for a in again] == [True] * 10 + [False]


async def test_retry_after_is_when_a_slot_frees(make_limiter: LimiterFactory) -> None:
    lim = make_limiter(window_s=0.5)
    limits = [LimitSpec("key:ra", rpm=2)]
    await _burst(lim, limits, 2)
    denied = await lim.acquire(limits, [], 0, ZERO, "x")
    assert not denied.allowed
    await asyncio.sleep(denied.retry_after + 0.02)
    assert (await lim.acquire(limits, [], 0, ZERO, "y")).allowed


async def test_tpm_is_charged_up_front_and_corrected_on_settle(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    limits = [LimitSpec("key:t", tpm=1000)]
    a = await lim.acquire(limits, [], 400, ZERO, "a")
    b = await lim.acquire(limits, [], 400, ZERO, "b")
    assert a.allowed and b.allowed
    assert b.headers()["x-ratelimit-remaining-tokens"] == "200"
    c = await lim.acquire(limits, [], 400, ZERO, "c")
    assert not c.allowed and c.reason == "tpm"
    assert c.headers()["x-ratelimit-limit-tokens"] == "1000"
    assert (c.limit, c.used, c.requested) == (1000, 800, 400)
    # The real count was far below the estimate: the difference goes back to the window.
    assert a.ticket is not None
    await lim.settle(a.ticket, 100, None)
    d = await lim.acquire(limits, [], 400, ZERO, "d")
    assert d.allowed
    assert d.headers()["x-ratelimit-remaining-tokens"] == "100"
    # And an underestimate is charged in full afterwards.
    assert d.ticket is not None
    await lim.settle(d.ticket, 1000, None)
    e = await lim.acquire(limits, [], 1, ZERO, "e")
    assert not e.allowed and e.used == 1500


async def test_tpm_request_larger_than_the_limit_never_passes(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    adm = await lim.acquire([LimitSpec("key:big", tpm=100)], [], 101, ZERO, "r")
    assert not adm.allowed and adm.reason == "tpm"
    assert math.isinf(adm.retry_after)
    assert "retry-after" not in adm.headers()


async def test_all_or_nothing_across_subjects(make_limiter: LimiterFactory) -> None:
    """A request refused by one subject leaves no trace in any other."""
    lim = make_limiter()
    key, team, dep = LimitSpec("key:k", rpm=10, tpm=10_000), LimitSpec("team:t", rpm=2), LimitSpec("dep:d")
    for i in range(2):
        assert (await lim.acquire([key, team, dep], [], 100, ZERO, f"ok{i}")).allowed
    for i in range(5):
        adm = await lim.acquire([key, team, dep], [], 100, ZERO, f"no{i}")
        assert (adm.allowed, adm.reason, adm.subject) == (False, "rpm", "team:t")
        # Headers for requests describe the limit that failed.
        assert adm.headers()["x-ratelimit-limit-requests"] == "2"
    alone = await lim.acquire([key], [], 100, ZERO, "alone")
    assert alone.allowed
    h = alone.headers()
    assert h["x-ratelimit-remaining-requests"] == "7"
    assert h["x-ratelimit-remaining-tokens"] == str(10_000 - 300)


async def test_headers_follow_the_key_level_limit(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    adm = await lim.acquire(
        [LimitSpec("key:k", rpm=100, tpm=5000), LimitSpec("team:t", rpm=3, tpm=100_000)], [], 50, ZERO, "r"
    )
    h = adm.headers()
    assert h["x-ratelimit-limit-requests"] == "100"
    assert h["x-ratelimit-remaining-requests"] == "99"
    assert h["x-ratelimit-limit-tokens"] == "5000"
    assert h["x-ratelimit-remaining-tokens"] == "4950"
    assert h["x-ratelimit-reset-requests"].endswith("s")
    assert "retry-after" not in h


async def test_headers_without_a_key_level_limit_follow_the_tightest(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    limits = [LimitSpec("dep:d", rpm=50), LimitSpec("team:t", rpm=10), LimitSpec("key:k", tpm=900)]
    h = (await lim.acquire(limits, [], 50, ZERO, "r")).headers()
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("10", "9")
    assert (h["x-ratelimit-limit-tokens"], h["x-ratelimit-remaining-tokens"]) == ("900", "850")


async def test_concurrent_acquires_never_overshoot(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    limits = [LimitSpec("key:c", rpm=25)]
    res = await asyncio.gather(*(lim.acquire(limits, [], 1, ZERO, f"r{i}") for i in range(80)))
    assert sum(a.allowed for a in res) == 25


async def test_no_limits_is_a_free_pass(make_limiter: LimiterFactory) -> None:
    lim = make_limiter()
    adm = await lim.acquire([], [], 10, ZERO, "r")
    assert adm.allowed and adm.headers() == {}
    # A subject with no limits costs nothing: not recorded, and nothing to settle.
    adm = await lim.acquire([LimitSpec("dep:x")], [], 10, ZERO, "r")
    assert adm.allowed and adm.ticket is None
