"""Budgets survive Redis losing its data: the total is reseeded from the database (daily_spend) plus
what this process has not flushed yet, never from the figure the key cache loaded (issue 14, 3).

A private redis-server that a restart empties, the session's PostgreSQL, and at the end a real gateway
subprocess spending a $0.01 total budget across a Redis restart.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

import gateway
from gateway.accounting.queries import durable_spend_reader, period_spend
from gateway.accounting.record import RequestRecord
from gateway.accounting.store import write_records
from gateway.accounting.thread import WriterThread
from gateway.db.engine import make_engine, session_factory
from gateway.limits import Admission, BudgetSpec, MemoryLimiter, RedisLimiter, period_start, usd_to_nano
from tests.fakes import openai_upstream
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import GatewayProcess
from tests.integration.harness import chat, deployment, log_rows, new_key, write_config
from tests.integration.redis_proc import RedisProcess

D = Decimal
CHECKOUT = str(Path(gateway.__file__).resolve().parents[1])
TODAY = period_start("daily", datetime.now(UTC))


def record(team: str, cost: str) -> RequestRecord:
    return RequestRecord(
        request_id=f"reseed-{uuid.uuid4().hex}",
        ts=datetime.now(UTC),
        team_id=team,
        key_id=f"{team}-key",
        requested_model="m",
        route=None,
        deployment="d",
        provider="openai",
        tier="small",
        difficulty=None,
        status=200,
        error_type=None,
        prompt_tokens=5,
        completion_tokens=3,
        cached_tokens=0,
        cost_usd=D(cost),
        latency_ms=1.0,
        ttft_ms=None,
        streamed=False,
        fallbacks=0,
    )


async def acquire_through_restart(lim: RedisLimiter, budget: BudgetSpec, reserve: str) -> Admission:
    """The first command after a restart finds its connection dead; the next one dials again."""
    try:
        return await lim.acquire([], [budget], 0, D(reserve), "r")
    except RedisConnectionError:
        return await lim.acquire([], [budget], 0, D(reserve), "r")


async def test_redis_restart_reseeds_from_database_and_unflushed(
    pg_url: str, redis_proc: RedisProcess, tmp_path: Path
) -> None:
    team = f"reseed-{uuid.uuid4().hex[:10]}"
    engine = make_engine(pg_url)
    sessions = session_factory(engine)
    # Nothing flushes during the test: what it submits stays "unflushed".
    writer = WriterThread(pg_url, spool_dir=str(tmp_path / "spool"), flush_interval_s=600)
    await writer.start()
    reseed = durable_spend_reader(sessions, writer)
    lim = RedisLimiter.from_url(redis_proc.url, timeout_s=2.0, reseed=reseed, reconcile_interval_s=0)
    try:
        async with engine.begin() as conn:
            await write_records(conn, [record(team, "0.001") for _ in range(3)])
        writer.submit(record(team, "0.002"))
        # What the key cache loaded a while ago: stale, and what the limiter used to seed from.
        budget = BudgetSpec.current(f"team:{team}", D("0.01"), "daily", seed_usd=D(0))

        adm = await lim.acquire([], [budget], 0, D("0.0005"), "r1")
        assert adm.allowed and adm.ticket is not None
        assert adm.budget_use[0][0] == usd_to_nano(D("0.005"))  # 0.003 in the database + 0.002 queued
        await lim.settle(adm.ticket, 0, D("0.0005"))
        writer.submit(record(team, "0.0005"))
        assert await lim.spent(f"team:{team}", TODAY) == D("0.0055")

        redis_proc.restart()
        after = await acquire_through_restart(lim, budget, "0.0005")
        assert after.budget_use[0][0] == usd_to_nano(D("0.0055")), "spent after the restart"
        assert lim.seeder is not None and lim.seeder.fallbacks == 0

        # The per-process limiter (fail-open fallback) seeds the same way on first sight.
        memory = MemoryLimiter(reseed=reseed)
        first = await memory.acquire([], [budget], 0, D("0.0005"), "m1")
        assert first.budget_use[0][0] == usd_to_nano(D("0.0055"))

        # Reconciling raises a total Redis lost track of, and never lowers one it holds.
        assert lim.reconciler is not None
        sync = redis.Redis.from_url(redis_proc.url)
        key = f"sy:b:team:{team}:{TODAY}"
        sync.hset(key, "spent", 1)
        lim.reconciler.saw([budget])
        await lim.reconciler.once()
        assert int(sync.hget(key, "spent")) == usd_to_nano(D("0.0055"))
        sync.hset(key, "spent", usd_to_nano(D("0.009")))
        lim.reconciler.saw([budget])
        await lim.reconciler.once()
        assert int(sync.hget(key, "spent")) == usd_to_nano(D("0.009"))
        sync.close()
    finally:
        await lim.aclose()
        await writer.stop()
        await engine.dispose()


# --------------------------------------------------------------------------- end to end

PRICE = D(100)  # per million tokens, both ways: 5 prompt + 3 completion tokens cost $0.0008
LIMIT = D("0.01")
ONE_REQUEST = D("0.0008")


async def test_total_budget_holds_across_a_redis_restart(
    pg_url: str, redis_proc: RedisProcess, tmp_path: Path
) -> None:
    creds = await new_key(pg_url, team={"budget_usd": LIMIT})
    with ServerThread(openai_upstream.create_app()) as up:
        config = write_config(tmp_path / "switchyard.yaml", [deployment("budget", up.url, 100.0, 100.0)])
        env = {
            "SWITCHYARD_DATABASE_URL": pg_url,
            "SWITCHYARD_REDIS_URL": redis_proc.url,
            "SWITCHYARD_SPEND_FLUSH_INTERVAL_S": "0.2",
            "SWITCHYARD_REDIS_TIMEOUT_S": "2.0",
            # The gateway under test is this checkout's, whatever the environment has installed.
            "PYTHONPATH": CHECKOUT,
        }
        gw = GatewayProcess("reseed-gw", config, tmp_path, env)
        try:
            gw.start()
            await gw.wait_ready()
            statuses: list[int | None] = []
            async with httpx.AsyncClient(timeout=30.0) as client:

                async def send() -> int | None:
                    call = await chat(
                        client,
                        gw.url,
                        creds.key,
                        model="budget",
                        content="one two three four five",
                        max_tokens=3,
                    )
                    statuses.append(call.status)
                    return call.status

                for _ in range(40):
                    if await send() == 429:
                        break
                refused_at = len(statuses)
                redis_proc.restart()
                for _ in range(30):
                    await send()
                    await asyncio.sleep(0.1)
            await gw.stop()
        finally:
            gw.kill()
    rows = await log_rows(pg_url, creds.key_id)
    spent = sum((r.cost_usd or D(0) for r in rows), D(0))
    print(
        f"budget ${LIMIT}: refused after {refused_at} calls; after a Redis restart: spent ${spent}"
        f" over {sum(1 for s in statuses if s == 200)} admitted calls"
    )
    assert 429 in statuses[:refused_at]
    assert spent <= LIMIT + ONE_REQUEST, f"${spent} spent of a ${LIMIT} budget"
    engine = make_engine(pg_url)
    try:
        async with session_factory(engine)() as session:
            assert await period_spend(session, team_id=creds.team_id, since=date(1970, 1, 1)) == spent
    finally:
        await engine.dispose()
