"""One "gateway replica" for the two-process tests: its own event loop and Redis connection.

Usage: python -m tests.gateway.limits._worker MODE REDIS_URL PREFIX N SEED [cluster]
Prints `ready`, waits for a line on stdin, then one JSON line with what it was admitted and charged.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
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
                await asyncio.sleep(0.05 + rng.random() * 0.1)  # the upstream call
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
    mode, url, prefix, n, seed = sys.argv[1:6]
    cluster = sys.argv[6:] == ["cluster"]
    lim = RedisLimiter.from_url(url, timeout_s=2.0, prefix=prefix, cluster=cluster)
    await lim.load_scripts()
    # Both processes start on the parent's word, so their requests really interleave.
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    if mode == "rpm":
        out = await rpm(lim, int(n))
    else:
        out = await budget(lim, int(n), random.Random(int(seed)))
    await lim.aclose()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
