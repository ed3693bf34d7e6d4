"""The load of the chaos test (test_chaos): a fixed number of chat calls from a few keys, spread over
whichever gateways are live, with what each attempt came to.

Load           `total` calls by `concurrency` workers; call i's key, model and stream flag are fixed by i
Attempt        one HTTP try of a call: a call whose try got no response at all (connection refused or
               reset, as while a gateway stops) is tried again on the next live gateway
held_budgets   the reservations a Redis still holds, per budget hash (`sy:b:*`)
fallback_acquires  admissions a gateway made from its per-process limiter (Redis unavailable)
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import redis.asyncio as aioredis

from tests.integration.harness import Call, chat, words

FAULTY_USAGE = ("usage-text", "usage-negative", "usage-huge")
# A call whose tries all find no gateway listening counts as unanswered; the test expects none.
MAX_TRIES = 60


@dataclass(frozen=True)
class Attempt:
    index: int
    key: str  # the key's name in the test, not the secret
    stream: bool
    call: Call
    seconds: float
    at: float  # when the try ended, on the monotonic clock

    @property
    def answered(self) -> bool:
        """Any HTTP response arrived (whatever its status, or a body cut short after the headers)."""
        return self.call.status is not None


@dataclass
class Load:
    keys: dict[str, str]  # name -> plaintext key
    targets: list[str]  # base URLs of the live gateways; the fault changes it mid-run
    total: int
    bad_usage: bool = False
    # Calls from this index on wait for `resume`: the run goes on after the fault is over.
    hold_from: int | None = None
    concurrency: int = 8
    resume: asyncio.Event = field(default_factory=asyncio.Event)
    attempts: list[Attempt] = field(default_factory=list)
    unanswered: int = 0
    _next: itertools.count[int] = field(default_factory=itertools.count)

    def plan(self, i: int) -> tuple[str, str, bool]:
        """Call i's key name, model and whether it streams."""
        names = list(self.keys)
        key = names[i % len(names)]
        stream = (i // len(names)) % 3 == 0
        if i % 41 == 7:
            model = "fail"  # an upstream 500: an answered error with a row of its own
        elif self.bad_usage and i % 3 == 1:
            model = FAULTY_USAGE[(i // 3) % len(FAULTY_USAGE)]
        else:
            model = "chat"
        return key, model, stream

    def answered_count(self) -> int:
        """Calls of the run answered so far (the warm-up calls not counted)."""
        return sum(1 for a in self.attempts if a.answered and a.index >= 0)

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
            await asyncio.gather(*(self._worker(client) for _ in range(self.concurrency)))

    async def warm(self) -> None:
        """One call per key on every live gateway, so each has the keys in its auth cache (a database
        outage is served from it) and Redis has seeded each budget."""
        async with httpx.AsyncClient(timeout=30.0) as client:
            for url in list(self.targets):
                for name, key in self.keys.items():
                    call = await chat(client, url, key, model="chat", content="warm up", max_tokens=8)
                    self.attempts.append(Attempt(-1, name, False, call, 0.0, time.monotonic()))

    async def _worker(self, client: httpx.AsyncClient) -> None:
        while (i := next(self._next)) < self.total:
            await self._one(client, i)

    async def _one(self, client: httpx.AsyncClient, i: int) -> None:
        if self.hold_from is not None and i >= self.hold_from:
            await self.resume.wait()
        name, model, stream = self.plan(i)
        for attempt in range(MAX_TRIES):
            targets = list(self.targets)
            url = targets[(i + attempt) % len(targets)]
            began = time.monotonic()
            call = await chat(
                client,
                url,
                self.keys[name],
                model=model,
                content=words(1 + i % 5, f"c{i}-"),
                stream=stream,
                max_tokens=8,
            )
            ended = time.monotonic()
            self.attempts.append(Attempt(i, name, stream, call, ended - began, ended))
            if call.status is not None:
                return
            await asyncio.sleep(0.05)
        self.unanswered += 1

    def statuses(self) -> Counter[int | None]:
        return Counter(a.call.status for a in self.attempts)


async def held_budgets(redis_url: str) -> dict[str, int]:
    """Nano-dollars held by outstanding reservations, per budget hash."""
    client = aioredis.from_url(redis_url)
    try:
        return {
            name.decode(): int(await client.hget(name, "held") or 0)
            async for name in client.scan_iter("sy:b:*")
        }
    finally:
        await client.aclose()


async def fallback_acquires(url: str) -> int:
    async with httpx.AsyncClient(timeout=10.0) as client:
        text = (await client.get(url + "/metrics")).text
    found = re.search(r"^switchyard_limiter_fallback_acquires_total (\d+)$", text, re.M)
    assert found, "the limiter reports its fallbacks in /metrics"
    return int(found.group(1))
