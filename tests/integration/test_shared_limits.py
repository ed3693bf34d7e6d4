"""60 RPM and a $1.00 team budget held across two `switchyard serve` processes sharing one Redis and
one PostgreSQL (the `pair` fixture in conftest, shared with test_shared_no_key_leak, which runs after).
"""

from __future__ import annotations

import asyncio
import re
import time
from decimal import Decimal

import httpx

from tests.integration.harness import (
    Call,
    assert_daily_matches,
    chat,
    daily_rows,
    new_key,
    wait_rows,
    words,
)
from tests.integration.shared_pair import (
    BUDGET_COST,
    BUDGET_PROMPT,
    Pair,
    client,
    error_of,
    fallback_acquires,
)

# The denial says what the request would have reserved (gateway.limits.errors.denial_error).
WORST_CASE = re.compile(r"may cost up to \$(\d+(?:\.\d+)?)")


# --------------------------------------------------------------------------- 60 RPM over two gateways


async def test_rpm_60_across_two_gateways(pair: Pair, pg_url: str) -> None:
    creds = await new_key(pg_url, key={"rpm": 60})
    sem = asyncio.Semaphore(20)

    async def one(c: httpx.AsyncClient, i: int) -> tuple[int, Call]:
        async with sem:
            return i % 2, await chat(
                c, pair.url(i), creds.key, model="priced", content=words(3, f"q{i}-"), stream=i % 5 == 0
            )

    started = time.monotonic()
    async with client() as c:
        results = await asyncio.gather(*(one(c, i) for i in range(200)))
    elapsed = time.monotonic() - started
    calls = [call for _, call in results]

    assert elapsed < 30, f"200 calls took {elapsed:.1f}s: the RPM window would not be the same minute"
    assert not [c.error for c in calls if c.error], "every call was answered"
    ok = [(g, c) for g, c in results if c.status == 200]
    denied = [c for c in calls if c.status == 429]
    fallbacks = await fallback_acquires(pair)
    assert (len(ok), len(denied)) == (60, 140), (
        sorted({c.status for c in calls if c.status}),
        f"per-process (fail-open) admissions per gateway: {fallbacks}",
    )
    assert fallbacks == [0, 0], "every admission went through the shared Redis limiter"
    per_gateway = [sum(1 for g, _ in ok if g == i) for i in (0, 1)]
    assert all(per_gateway), f"both gateways admitted some: {per_gateway}"
    assert all(c.completed for _, c in ok)
    for _, c in ok:
        assert c.headers["x-ratelimit-limit-requests"] == "60"
    for c in denied:
        err = error_of(c)
        assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded", err
        assert int(c.headers["retry-after"]) >= 1
        assert int(c.headers["retry-after-ms"]) >= 1
        assert c.headers["x-ratelimit-limit-requests"] == "60"
        assert c.headers["x-ratelimit-remaining-requests"] == "0"
        assert "x-ratelimit-reset-requests" in c.headers

    # Denied calls are recorded too, as 429s that cost nothing.
    rows = await wait_rows(pg_url, creds.key_id, 200, within_s=15.0)
    assert len(rows) == 200
    assert sorted(r.status for r in rows) == [200] * 60 + [429] * 140
    assert all(r.error_type == "rate_limit_error" and r.cost_usd == 0 for r in rows if r.status == 429)
    assert {r.request_id for r in rows} == {c.request_id for c in calls}
    assert_daily_matches(rows, await daily_rows(pg_url, creds.key_id))
    print(f"rpm: {len(ok)}/200 allowed (per gateway {per_gateway}), 140 denied, in {elapsed:.1f}s")


# --------------------------------------------------------------------------- $1.00 budget over two gateways


async def test_team_budget_never_exceeded_by_more_than_one_request(pair: Pair, pg_url: str) -> None:
    creds = await new_key(pg_url, team={"budget_usd": Decimal("1.00")})
    budget = Decimal("1.00")
    bursts: list[list[Call]] = []
    per_gateway = [0, 0]
    async with client(60) as c:
        # The acceptance case is the first burst; more run the budget down to what is left. A burst
        # with no 200 ends it once a lone call a second later (reservations all settled) is refused too.
        for _ in range(8):
            burst = await asyncio.gather(
                *(
                    chat(
                        c,
                        pair.url(i),
                        creds.key,
                        model="budget",
                        content=BUDGET_PROMPT,
                        max_tokens=3,
                        stream=i % 3 == 0,  # a stream settles when it ends, not when it starts
                    )
                    for i in range(50)
                )
            )
            bursts.append(burst)
            for i, call in enumerate(burst):
                per_gateway[i % 2] += call.status == 200
            if not any(call.status == 200 for call in burst):
                await asyncio.sleep(1.0)
                g = len(bursts) % 2
                probe = await chat(
                    c, pair.url(g), creds.key, model="budget", content=BUDGET_PROMPT, max_tokens=3
                )
                bursts.append([probe])
                per_gateway[g] += probe.status == 200
                if probe.status != 200:
                    break
            await asyncio.sleep(0.3)  # settlements are sent off the request path

    calls = [call for burst in bursts for call in burst]
    assert not [call.error for call in calls if call.error]
    assert await fallback_acquires(pair) == [0, 0], "every admission went through the shared Redis limiter"
    first_ok = sum(1 for call in bursts[0] if call.status == 200)
    assert 0 < first_ok < 50, f"the first burst of 50 ({50 * BUDGET_COST} worst case) was capped: {first_ok}"
    for call in calls:
        if call.status == 200:
            assert call.completed
            cost = call.headers["x-switchyard-cost-usd"]
            assert cost == "pending" if isinstance(call.body, str) else Decimal(cost) == BUDGET_COST
            continue
        assert call.status == 429, (call.status, call.body)
        err = error_of(call)
        assert err["type"] == "budget_exceeded" and err["code"] == "budget_exceeded", err

    rows = await wait_rows(pg_url, creds.key_id, len(calls), within_s=15.0)
    assert len(rows) == len(calls)
    assert all(r.team_id == creds.team_id for r in rows)
    charged = [r.cost_usd for r in rows if r.cost_usd]
    assert len(charged) == sum(1 for call in calls if call.status == 200)
    spent = sum(charged, Decimal(0))
    biggest = max(charged)
    assert set(charged) == {BUDGET_COST}
    assert spent <= budget + biggest, f"team charged ${spent} of ${budget}"
    assert_daily_matches(rows, await daily_rows(pg_url, creds.key_id))
    # And the budget was used, not refused early: what is left is less than one request's reservation.
    last = error_of(bursts[-1][0])["message"]
    match = WORST_CASE.search(last)
    assert match, last
    worst = Decimal(match.group(1))
    assert budget - spent < worst, (spent, worst, last)
    print(
        f"budget: team charged ${spent.normalize()} of ${budget} (max single request ${biggest.normalize()}, "
        f"reservation ${worst}); 200s per burst {[sum(1 for x in b if x.status == 200) for b in bursts]} "
        f"(per gateway {per_gateway}), first burst {first_ok}/50 admitted"
    )
