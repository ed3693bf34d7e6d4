"""A call sent upstream while its Redis check is still out (gateway/limits/headroom.py), refused anyway.

The gateway learns a key's room from its first answer; a second "replica" (a limiter of our own on the
same Redis) then uses the rest of the window behind its back, so the gateway's next call overlaps its
check and Redis refuses it. A refusal that comes first cancels the call; one that comes after the
upstream has answered is charged, since the upstream was owed it. Redis sits behind a TCP proxy that
can hold its replies back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.limits import BudgetSpec, LimitSpec, RedisLimiter
from gateway.settings import Settings
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY, TcpProxy
from tests.integration.harness import (
    Call,
    chat,
    deployment,
    expected_cost,
    new_key,
    wait_rows,
)
from tests.stores import TEST_REDIS_DB

RPM = 8  # the default margin keeps 2 free: the gateway overlaps while it believes 3 or more are left


@dataclass
class Overlapping:
    url: str
    redis: TcpProxy


@pytest.fixture(scope="module")
def gw(
    pg_url: str, redis_url: str, upstream: ServerThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Overlapping]:
    workdir: Path = tmp_path_factory.mktemp("overlap")
    hang = {**deployment("hang-ov", upstream.url, 1.0, 2.0), "model": "hang"}
    config = parse_config({"models": [deployment("priced-ov", upstream.url, 1.0, 2.0), hang]}, env={})
    proxy = TcpProxy(6379).start()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=pg_url,
        redis_url=f"redis://127.0.0.1:{proxy.port}/{TEST_REDIS_DB}",
        redis_timeout_s=2.0,
        master_key=MASTER_KEY,
        spool_dir=workdir / "spool",
        spend_flush_interval_s=0.1,
        local_model=False,
    )
    try:
        with ServerThread(create_app(settings, config)) as srv:
            yield Overlapping(srv.url, proxy)
    finally:
        proxy.close()


async def use_up_the_window(redis_url: str, key_id: str, n: int) -> None:
    """Another replica's traffic: `n` admissions on the key's window, straight on Redis."""
    other = RedisLimiter.from_url(redis_url, timeout_s=2.0)
    try:
        for i in range(n):
            adm = await other.acquire([LimitSpec(f"key:{key_id}", RPM)], [], 1, Decimal(0), f"other-{i}")
            assert adm.allowed
    finally:
        await other.aclose()


def overlaps(gw: Overlapping) -> tuple[int, int]:
    """(calls overlapped, of which refused) from the gateway's /metrics."""
    text = httpx.get(gw.url + "/metrics", timeout=10.0).text
    found = dict(line.split() for line in text.splitlines() if line.startswith("switchyard_limiter_overlap"))
    return int(found["switchyard_limiter_overlapped_total"]), int(
        found["switchyard_limiter_overlap_refusals_total"]
    )


async def test_refusal_first_cancels_the_overlapped_call(
    gw: Overlapping, pg_url: str, redis_url: str
) -> None:
    creds = await new_key(pg_url, key={"rpm": RPM})
    async with httpx.AsyncClient(timeout=10.0) as c:
        first = await chat(c, gw.url, creds.key, model="priced-ov", content="warm up")
        assert first.status == 200 and first.headers["x-ratelimit-remaining-requests"] == str(RPM - 1)
        await use_up_the_window(redis_url, creds.key_id, RPM - 1)
        before = overlaps(gw)
        started = time.monotonic()
        # The upstream would hold this call for 2 s: a refusal that waited for it would take that long.
        second = await chat(c, gw.url, creds.key, model="hang-ov", content="overlap-early marker")
        took = time.monotonic() - started

    assert second.status == 429, second.body
    assert second.body["error"]["code"] == "rate_limit_exceeded"
    assert took < 1.5, f"the refusal waited for the upstream ({took:.2f}s)"
    assert overlaps(gw) == (before[0] + 1, before[1] + 1), "the call went out beside its check, refused"
    rows = {r.request_id: r for r in await wait_rows(pg_url, creds.key_id, 2, within_s=10.0)}
    refused = rows[second.request_id]
    assert (refused.status, refused.cost_usd, refused.completion_tokens) == (429, 0, 0)


async def test_refusal_after_the_answer_is_charged_not_served(
    gw: Overlapping, pg_url: str, redis_url: str
) -> None:
    creds = await new_key(pg_url, team={"budget_usd": Decimal("10")}, key={"rpm": RPM})
    async with httpx.AsyncClient(timeout=10.0) as c:
        first = await chat(c, gw.url, creds.key, model="priced-ov", content="warm up")
        assert first.status == 200
        await use_up_the_window(redis_url, creds.key_id, RPM - 1)
        before = overlaps(gw)
        gw.redis.reply_delay_s = 0.3  # the upstream answers well before Redis does
        try:
            second: Call = await chat(c, gw.url, creds.key, model="priced-ov", content="overlap-late marker")
        finally:
            gw.redis.reply_delay_s = 0.0

    assert second.status == 429, second.body
    assert second.body["error"]["code"] == "rate_limit_exceeded"
    assert "choices" not in second.body
    assert overlaps(gw) == (before[0] + 1, before[1] + 1)
    rows = {r.request_id: r for r in await wait_rows(pg_url, creds.key_id, 2, within_s=10.0)}
    paid, refused = rows[first.request_id], rows[second.request_id]
    assert refused.status == 429 and refused.completion_tokens > 0
    price = Decimal(1), Decimal(2)
    assert refused.cost_usd == expected_cost(refused.prompt_tokens, refused.completion_tokens, *price) > 0
    # The team's running total in Redis holds both calls: the refused one was paid for upstream.
    limiter = RedisLimiter.from_url(redis_url, timeout_s=2.0)
    start = BudgetSpec.current(f"team:{creds.team_id}", Decimal(10), "total").period_start
    try:
        deadline = time.monotonic() + 3.0
        want = paid.cost_usd + refused.cost_usd
        while (spent := await limiter.spent(f"team:{creds.team_id}", start)) != want:
            assert time.monotonic() < deadline, (spent, want)
            await asyncio.sleep(0.05)
    finally:
        await limiter.aclose()


async def test_an_overlapped_call_is_never_capped_after_it_left(
    gw: Overlapping, pg_url: str, redis_url: str
) -> None:
    """A call sent beside its check carries no budget cap, so its check asks for the whole
    reservation: a budget that another replica has since left with less than that refuses it
    (before the answer, at no cost) instead of admitting it at a reservation it may overrun."""
    creds = await new_key(pg_url, team={"budget_usd": Decimal("0.20")})
    team = BudgetSpec.current(f"team:{creds.team_id}", Decimal("0.20"), "total")
    async with httpx.AsyncClient(timeout=10.0) as c:
        # No max_tokens: $0.0328 reserved for gpt-4o-mini's 16,384-token answer, well inside $0.20.
        first = await chat(c, gw.url, creds.key, model="priced-ov", content="warm up")
        assert first.status == 200 and "x-switchyard-max-tokens-capped" not in first.headers
        other = RedisLimiter.from_url(redis_url, timeout_s=2.0)
        try:
            taken = await other.acquire([], [team], 0, Decimal("0.18"), "other-replica")
            assert taken.allowed
            before = overlaps(gw)
            second = await chat(c, gw.url, creds.key, model="priced-ov", content="overlap-capped marker")
        finally:
            await other.aclose()
    assert overlaps(gw) == (before[0] + 1, before[1] + 1), "it went out beside its check, and was refused"
    assert second.status == 429 and second.body["error"]["code"] == "budget_exceeded", second.body
