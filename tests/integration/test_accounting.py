"""N concurrent requests give exactly N rows with the right tokens, cost, latency and time to first token.

The real gateway (create_app) on a ServerThread, in front of the fake OpenAI upstream, on PostgreSQL
and on SQLite; a virtual key made with the admin service; 100 concurrent calls through the official
openai SDK, half of them streamed. Stopping the gateway flushes the spend writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import openai
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.db.migrate import upgrade
from gateway.settings import Settings
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY
from tests.integration.harness import (
    COMPLETION_TOKENS,
    assert_daily_matches,
    assert_hourly_matches,
    daily_rows,
    deployment,
    expected_cost,
    hourly_rows,
    new_key,
    wait_rows,
    words,
)

N = 100
PRICE_IN = Decimal("1.0")
PRICE_OUT = Decimal("2.0")


@pytest.fixture(params=["postgresql", "sqlite"])
async def db_url(request: pytest.FixtureRequest, pg_url: str, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "postgresql":
        yield pg_url
        return
    url = f"sqlite+aiosqlite:///{tmp_path / 'switchyard.db'}"
    await upgrade(url)
    yield url


@dataclass
class Sent:
    request_id: str
    prompt_tokens: int
    streamed: bool
    cost_header: str | None
    usage_seen: tuple[int, int] | None  # what the client was told, when it was told


async def one(client: openai.AsyncOpenAI, i: int) -> Sent:
    n_words = 1 + i % 9
    messages = [{"role": "user", "content": words(n_words, f"r{i}-")}]
    create = client.chat.completions.with_raw_response.create
    if i % 2 == 0:
        options = {"include_usage": True} if i % 4 == 0 else openai.omit
        raw = await create(model="priced", messages=messages, stream=True, stream_options=options)
        text, usage = "", None
        async for chunk in raw.parse():
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        assert text == "Hello from openai!"
        return Sent(raw.headers["x-switchyard-request-id"], n_words, True, None, usage)
    raw = await create(model="priced", messages=messages)
    done = raw.parse()
    assert done.choices[0].message.content == "Hello from openai!"
    usage = (done.usage.prompt_tokens, done.usage.completion_tokens) if done.usage else None
    return Sent(
        raw.headers["x-switchyard-request-id"],
        n_words,
        False,
        raw.headers.get("x-switchyard-cost-usd"),
        usage,
    )


async def test_n_concurrent_requests_give_exactly_n_rows(
    db_url: str, upstream: ServerThread, tmp_path: Path
) -> None:
    creds = await new_key(db_url)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=db_url,
        spool_dir=tmp_path / "spool",
        master_key=MASTER_KEY,
        spend_flush_interval_s=0.2,
        retries=0,
    )
    config = parse_config({"models": [deployment("priced", upstream.url, 1.0, 2.0)]}, env={})
    started = datetime.now(UTC)
    gw = ServerThread(create_app(settings, config)).start()
    try:
        async with openai.AsyncOpenAI(
            base_url=gw.url + "/v1", api_key=creds.key, max_retries=0, timeout=30.0
        ) as client:
            sent = await asyncio.gather(*(one(client, i) for i in range(N)))
    finally:
        gw.stop()  # lifespan shutdown: the writer flushes what it still holds
    finished = datetime.now(UTC)

    by_id = {s.request_id: s for s in sent}
    assert len(by_id) == N, "request ids are unique"
    rows = await wait_rows(db_url, creds.key_id, N, within_s=15.0)
    assert len(rows) == N, f"{len(rows)} rows for {N} requests"
    assert {r.request_id for r in rows} == set(by_id)

    for row in rows:
        s = by_id[row.request_id]
        cost = expected_cost(s.prompt_tokens, COMPLETION_TOKENS, PRICE_IN, PRICE_OUT)
        assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (
            s.prompt_tokens,
            COMPLETION_TOKENS,
            0,
        ), row.request_id
        assert isinstance(row.cost_usd, Decimal) and row.cost_usd == cost, (row.cost_usd, cost)
        assert row.team_id == creds.team_id and row.key_id == creds.key_id
        assert row.status == 200 and row.error_type is None
        assert row.requested_model == "priced" and row.deployment == "priced"
        assert row.provider == "openai_compatible" and row.fallbacks == 0
        assert row.tokens_estimated is False
        assert row.streamed is s.streamed
        assert started - timedelta(seconds=1) <= row.ts <= finished
        assert row.latency_ms > 0
        if s.streamed:
            assert row.ttft_ms is not None and 0 < row.ttft_ms <= row.latency_ms, (
                row.ttft_ms,
                row.latency_ms,
            )
        else:
            assert row.ttft_ms is None
            assert s.cost_header is not None and Decimal(s.cost_header) == cost
        if s.usage_seen is not None:
            assert s.usage_seen == (s.prompt_tokens, COMPLETION_TOKENS)
    assert sum(1 for r in rows if r.streamed) == N // 2

    daily = await daily_rows(db_url, creds.key_id)
    assert_daily_matches(rows, daily)
    total = sum(
        (expected_cost(s.prompt_tokens, COMPLETION_TOKENS, PRICE_IN, PRICE_OUT) for s in sent), Decimal(0)
    )
    assert sum((d.cost_usd for d in daily), Decimal(0)) == total
    assert sum(d.requests for d in daily) == N
    assert all(d.team_id == creds.team_id and d.model == "priced" and d.errors == 0 for d in daily)

    # Direct requests: each is its own baseline, so the hourly rollups agree and show no saving.
    assert all(r.baseline_cost_usd == r.cost_usd for r in rows)
    hourly = await hourly_rows(db_url, creds.key_id)
    assert_hourly_matches(rows, hourly)
    assert sum((h.baseline_cost_usd - h.cost_usd for h in hourly), Decimal(0)) == 0


async def test_routed_requests_record_what_the_strongest_candidate_would_have_cost(
    db_url: str, upstream: ServerThread, tmp_path: Path
) -> None:
    """model="auto" over a small and a large candidate: whichever serves, the row's baseline is its
    usage at the large one's prices, exactly, and the hourly rollups sum the saving."""
    creds = await new_key(db_url)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=db_url,
        spool_dir=tmp_path / "spool",
        master_key=MASTER_KEY,
        spend_flush_interval_s=0.2,
        retries=0,
    )
    cheap = {**deployment("cheap", upstream.url, 0.15, 0.6), "tier": "small"}
    strong = {**deployment("strong", upstream.url, 2.5, 10.0), "tier": "large"}
    prices = {"cheap": (Decimal("0.15"), Decimal("0.6")), "strong": (Decimal("2.5"), Decimal("10.0"))}
    config = parse_config(
        {
            "models": [cheap, strong],
            # No prompt is hard enough for the large tier, unless a request pins it (odd ones here).
            "routes": {"auto": {"candidates": ["cheap", "strong"], "strong_fraction": 0.0}},
        },
        env={},
    )
    n = 12
    gw = ServerThread(create_app(settings, config)).start()
    try:
        async with openai.AsyncOpenAI(
            base_url=gw.url + "/v1", api_key=creds.key, max_retries=0, timeout=30.0
        ) as client:
            for i in range(n):
                messages = [{"role": "user", "content": words(1 + 7 * i, f"q{i}-")}]
                pin = {"x-switchyard-min-tier": "large"} if i % 2 else {}
                await client.chat.completions.create(
                    model="auto", messages=messages, stream=i % 3 == 0, extra_headers=pin
                )
    finally:
        gw.stop()

    rows = await wait_rows(db_url, creds.key_id, n, within_s=15.0)
    assert len(rows) == n
    for row in rows:
        assert row.route == "auto" and row.deployment in prices and row.status == 200
        assert row.cost_usd == expected_cost(
            row.prompt_tokens, row.completion_tokens, *prices[row.deployment]
        )
        assert row.baseline_cost_usd == expected_cost(
            row.prompt_tokens, row.completion_tokens, *prices["strong"]
        )
    hourly = await hourly_rows(db_url, creds.key_id)
    assert_hourly_matches(rows, hourly)
    saved = sum((r.baseline_cost_usd - r.cost_usd for r in rows), Decimal(0))  # type: ignore[operator]
    assert sum((h.baseline_cost_usd - h.cost_usd for h in hourly), Decimal(0)) == saved
    assert {h.model for h in hourly} == {r.deployment for r in rows} == {"cheap", "strong"}
    assert saved > 0
