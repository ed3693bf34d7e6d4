"""Micro-benchmark: acquire + settle_nowait against a local Redis, as the gateway issues them.

    python -m gateway.limits.bench [--url redis://127.0.0.1:6379/0] [--n 5000] [--concurrency 1,32]

Each request checks key, team and deployment windows and reserves against a key and a team budget,
the full per-request shape. Keys live under a random prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from decimal import Decimal

import redis.asyncio as redis

from gateway.limits.memory_limiter import MemoryLimiter
from gateway.limits.model import BudgetSpec, Limiter, LimitSpec
from gateway.limits.redis_limiter import RedisLimiter


def _shape(i: int) -> tuple[list[LimitSpec], list[BudgetSpec]]:
    key = f"key:{i % 50}"
    limits = [
        LimitSpec(key, rpm=10**9, tpm=10**12),
        LimitSpec("team:bench", rpm=10**9, tpm=10**12),
        LimitSpec("dep:gpt-4o-mini", rpm=10**9, tpm=10**12),
    ]
    budgets = [
        BudgetSpec(key, Decimal(10**6), "daily", "2099-01-01"),
        BudgetSpec("team:bench", Decimal(10**6), "monthly", "2099-01"),
    ]
    return limits, budgets


async def _one(lim: Limiter, i: int, acq: list[float], both: list[float]) -> None:
    limits, budgets = _shape(i)
    t0 = time.perf_counter()
    adm = await lim.acquire(limits, budgets, 500, Decimal("0.0012"), f"bench-{i}")
    t1 = time.perf_counter()
    assert adm.allowed and adm.ticket is not None
    lim.settle_nowait(adm.ticket, 420, Decimal("0.000873"))  # as the gateway does: off the path
    t2 = time.perf_counter()
    acq.append(t1 - t0)
    both.append(t2 - t0)


def _pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=1000)[round(q * 1000) - 1] * 1e6


async def run(lim: Limiter, label: str, n: int, concurrency: int) -> None:
    acq: list[float] = []
    both: list[float] = []
    for i in range(min(200, n)):  # warm the pool and the script cache
        await _one(lim, i, [], [])
    sem = asyncio.Semaphore(concurrency)

    async def guarded(i: int) -> None:
        async with sem:
            await _one(lim, i, acq, both)

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(guarded(i) for i in range(n)))
    wall = time.perf_counter() - t0
    cpu_us = (time.process_time() - cpu0) / n * 1e6
    print(
        f"{label:<7} c={concurrency:<3} "
        f"acquire p50 {_pct(acq, 0.5):7.0f} us  p99 {_pct(acq, 0.99):7.0f} us | "
        f"+settle_nowait p50 {_pct(both, 0.5):7.0f} us  p99 {_pct(both, 0.99):7.0f} us | "
        f"{n / wall:6.0f} req/s, gateway CPU {cpu_us:4.0f} us/req"
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--timeout", type=float, default=1.0, help="socket timeout, s (the gateway's is 0.1)")
    args = ap.parse_args()
    prefix = f"sybench:{secrets.token_hex(4)}:"
    redis_lim = RedisLimiter.from_url(args.url, prefix=prefix, timeout_s=args.timeout)
    await redis_lim.load_scripts()
    try:
        # The floor any Redis call pays on this machine, to read the figures below against.
        pings = []
        for _ in range(2000):
            t0 = time.perf_counter()
            await redis_lim.client.execute("PING")
            pings.append(time.perf_counter() - t0)
        print(f"PING    c=1   p50 {_pct(pings, 0.5):7.0f} us  p99 {_pct(pings, 0.99):7.0f} us")
        for c in (int(x) for x in args.concurrency.split(",")):
            await run(redis_lim, "redis", args.n, c)
            await run(MemoryLimiter(), "memory", args.n, c)
    finally:
        await redis_lim.aclose()
        cleanup = redis.Redis.from_url(args.url)
        keys = [k async for k in cleanup.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await cleanup.delete(*keys)
        await cleanup.aclose()


if __name__ == "__main__":
    asyncio.run(main())
