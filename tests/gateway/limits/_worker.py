"""One "gateway replica" for the two-process tests: its own event loop and Redis connection.

Usage: python -m tests.gateway.limits._worker MODE REDIS_URL PREFIX N START_AT SEED
Prints one JSON line with what this process was admitted and charged.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from decimal import Decimal

from gateway.limits import BudgetSpec, LimitSpec, RedisLimiter

WORST = Decimal("0.10")


async def rpm(lim: RedisLimiter, n: int) -> dict[str, object]:
    limits = [LimitSpec("key:k60", rpm=60), LimitSpec("team:t")]
    res = await asyncio.gather(*(lim.acquire(limits, [], 10, Decimal(0), f"r{i}") for i in range(n)))
    return {"allowed": sum(a.allowed for a in res)}


async def budget(lim: RedisLimiter, n: int, rng: random.Random) -> dict[str, object]:
    spec = [BudgetSpec("team:b1", Decimal("1.00"), "total", "total")]
    charged: list[str] = []

    async def one(i: int) -> None:
        for _ in range(200):
            adm = await lim.acquire([], spec, 0, WORST, f"r{i}")
            if adm.allowed:
                assert adm.ticket is not None
                await asyncio.sleep(rng.random() * 0.02)
                # The actual cost is at most the worst case, in whole nano-dollars.
                cost = Decimal(rng.randint(5_000_000, 100_000_000)) / 10**9
                await lim.settle(adm.ticket, 0, cost)
                charged.append(str(cost))
                return
            if adm.retry_after > 1:
                return
            await asyncio.sleep(0.005)

    await asyncio.gather(*(one(i) for i in range(n)))
    return {"charged": charged}


async def main() -> None:
    mode, url, prefix, n, start_at, seed = sys.argv[1:7]
    lim = RedisLimiter.from_url(url, timeout_s=2.0, prefix=prefix)
    await lim.load_scripts()
    await lim.client.ping()
    # Both processes start together, so their requests really interleave.
    await asyncio.sleep(max(0.0, float(start_at) - time.time()))
    if mode == "rpm":
        out = await rpm(lim, int(n))
    else:
        out = await budget(lim, int(n), random.Random(int(seed)))
    await lim.aclose()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
