"""Shadow judging on a real gateway (in process, the session's PostgreSQL) with a fake upstream whose
judge can be biased: the sampling rate (1.0, 0.0, a seeded fraction), the position swap (a judge that
always picks position A makes a tie), a verdict either way, the billing of shadow and judge calls as
their own request kinds, and the team's shadow budget stopping it."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from gateway.db.labels import ShadowVerdict
from gateway.db.models import RequestLog
from tests.fakes.judge_upstream import JudgeUpstream
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY
from tests.integration.harness import new_key
from tests.integration.quality_harness import (
    SHADOW_COST,
    ask,
    call_cost,
    quality_gateway,
    route,
    rows,
    wait_for,
)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[JudgeUpstream, str]]:
    judge = JudgeUpstream()
    with ServerThread(judge.app) as srv:
        yield judge, srv.url


@pytest.fixture(scope="module")
def gateway(
    pg_url: str, fake: tuple[JudgeUpstream, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    routes = {"always": route(1.0), "never": route(0.0)}
    with quality_gateway(pg_url, fake[1], tmp_path_factory.mktemp("shadow") / "spool", routes) as url:
        yield url


async def test_rate_one_shadows_each_cheap_answer_and_the_swap_cancels_a_position_bias(
    pg_url: str, gateway: str, fake: tuple[JudgeUpstream, str]
) -> None:
    judge, _ = fake
    judge.mode = "A"
    creds = await new_key(pg_url)
    ids = [await ask(gateway, creds.key, "always") for _ in range(3)]
    verdicts = await wait_for(pg_url, ShadowVerdict, 3, ShadowVerdict.team_id == creds.team_id)
    assert sorted(v.request_id for v in verdicts) == sorted(ids)
    for v in verdicts:
        # The cheaper answer was A first, then B: one vote for it, one against, a tie.
        assert (v.outcome, v.votes) == ("tie", ["A", "A"])
        assert (v.route, v.deployment, v.tier, v.strong_deployment, v.judge) == (
            "always",
            "cheap",
            "small",
            "strong",
            "judge",
        )
        assert v.cost_usd == SHADOW_COST
    # Billed to the team, each call a record of its own kind.
    logged = await wait_for(pg_url, RequestLog, 12, RequestLog.key_id == creds.key_id)
    kinds = sorted(r.kind for r in logged)
    assert kinds == ["judge"] * 6 + ["request"] * 3 + ["shadow"] * 3
    assert {r.deployment for r in logged if r.kind == "shadow"} == {"strong"}
    assert all(r.cost_usd == call_cost("judge") for r in logged if r.kind == "judge")
    assert all(r.route is None and r.team_id == creds.team_id for r in logged if r.kind != "request")


@pytest.mark.parametrize(
    ("mode", "outcome", "votes"), [("cheap", "win", ["A", "B"]), ("strong", "loss", ["B", "A"])]
)
async def test_a_judge_that_prefers_one_answer_in_both_positions_decides(
    pg_url: str, gateway: str, fake: tuple[JudgeUpstream, str], mode: str, outcome: str, votes: list[str]
) -> None:
    fake[0].mode = mode
    creds = await new_key(pg_url)
    await ask(gateway, creds.key, "always")
    (verdict,) = await wait_for(pg_url, ShadowVerdict, 1, ShadowVerdict.team_id == creds.team_id)
    assert (verdict.outcome, verdict.votes) == (outcome, votes)


async def test_an_unreadable_judge_leaves_no_verdict_but_its_calls_are_billed(
    pg_url: str, gateway: str, fake: tuple[JudgeUpstream, str]
) -> None:
    fake[0].mode = "garbled"
    creds = await new_key(pg_url)
    await ask(gateway, creds.key, "always")
    logged = await wait_for(pg_url, RequestLog, 4, RequestLog.key_id == creds.key_id)
    assert sorted(r.kind for r in logged) == ["judge", "judge", "request", "shadow"]
    assert await rows(pg_url, ShadowVerdict, ShadowVerdict.team_id == creds.team_id) == []


async def test_rate_zero_never_shadows(pg_url: str, gateway: str, fake: tuple[JudgeUpstream, str]) -> None:
    judge, _ = fake
    before = judge.calls["strong-model"]
    creds = await new_key(pg_url)
    for _ in range(3):
        await ask(gateway, creds.key, "never")
    assert len(await wait_for(pg_url, RequestLog, 3, RequestLog.key_id == creds.key_id)) == 3
    await asyncio.sleep(0.5)
    assert [r.kind for r in await rows(pg_url, RequestLog, RequestLog.key_id == creds.key_id)] == [
        "request"
    ] * 3
    assert judge.calls["strong-model"] == before


async def test_the_team_shadow_budget_stops_shadowing(
    pg_url: str, gateway: str, fake: tuple[JudgeUpstream, str]
) -> None:
    fake[0].mode = "A"
    # Room for one shadowed request and part of a second: the second starts (under the cap), the
    # third finds it spent.
    creds = await new_key(pg_url, team={"shadow_budget_usd": SHADOW_COST * Decimal("1.5")})
    for _ in range(4):
        await ask(gateway, creds.key, "always")
    assert len(await wait_for(pg_url, ShadowVerdict, 2, ShadowVerdict.team_id == creds.team_id)) == 2
    await asyncio.sleep(0.5)
    assert len(await rows(pg_url, ShadowVerdict, ShadowVerdict.team_id == creds.team_id)) == 2
    logged = await wait_for(pg_url, RequestLog, 10, RequestLog.key_id == creds.key_id)
    assert sorted(r.kind for r in logged) == ["judge"] * 4 + ["request"] * 4 + ["shadow"] * 2
    spent = sum((r.cost_usd for r in logged if r.kind != "request"), Decimal(0))
    assert spent == 2 * SHADOW_COST


async def test_a_seeded_fraction_shadows_the_draws_under_the_rate(
    pg_url: str, fake: tuple[JudgeUpstream, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    fake[0].mode = "A"
    seed, rate, n = 1234, 0.25, 40
    draws = random.Random(seed)
    expected = sum(draws.random() < rate for _ in range(n))
    assert 0 < expected < n
    spool = tmp_path_factory.mktemp("shadow-seeded") / "spool"
    with quality_gateway(pg_url, fake[1], spool, {"some": route(rate)}, shadow_seed=seed) as url:
        creds = await new_key(pg_url)
        for _ in range(n):
            await ask(url, creds.key, "some")
        found = await wait_for(pg_url, ShadowVerdict, expected, ShadowVerdict.team_id == creds.team_id)
        await asyncio.sleep(0.5)
        found = await rows(pg_url, ShadowVerdict, ShadowVerdict.team_id == creds.team_id)
    assert len(found) == expected


async def test_a_full_queue_drops_and_counts_without_slowing_requests(
    pg_url: str, fake: tuple[JudgeUpstream, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    judge, upstream = fake
    judge.mode, judge.delay = "A", 3.0
    spool = tmp_path_factory.mktemp("shadow-full") / "spool"
    try:
        with quality_gateway(pg_url, upstream, spool, {"all": route(1.0)}, shadow_queue_size=1) as url:
            creds = await new_key(pg_url)
            started = time.perf_counter()
            for _ in range(6):
                await ask(url, creds.key, "all")
            # Six answers in less than one shadow call takes: none waited for the queue.
            assert time.perf_counter() - started < judge.delay
            async with httpx.AsyncClient() as client:
                admin = {"authorization": f"Bearer {MASTER_KEY}"}
                metrics = (await client.get(url + "/metrics", headers=admin)).text
            # One job in the worker's hands, one queued, the other four dropped.
            assert 'switchyard_shadow_jobs_total{state="dropped"} 4' in metrics
            assert 'switchyard_shadow_jobs_total{state="sampled"} 2' in metrics
            found = await wait_for(pg_url, ShadowVerdict, 2, ShadowVerdict.team_id == creds.team_id)
            assert len(found) == 2
    finally:
        judge.delay = 0.0
