"""Whatever an upstream reports and however a request ends, it is recorded once with its real status,
billed sensibly, and its budget reservation released (issue 14, finding 6 and the request-log items).

One gateway subprocess on the session's PostgreSQL and Redis; a budgeted key, so every admitted call
holds a reservation in Redis until it settles.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from tests.fakes import usage_upstream
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import GatewayProcess
from tests.integration.harness import (
    Credentials,
    assert_daily_matches,
    chat,
    daily_rows,
    deployment,
    new_key,
    wait_rows,
    write_config,
)

FAULTY = ("usage-text", "usage-negative", "usage-huge")


@pytest.fixture(scope="module")
def usage_server() -> Iterator[ServerThread]:
    with ServerThread(usage_upstream.create_app()) as srv:
        yield srv


@pytest.fixture(scope="module")
async def gateway(
    pg_url: str,
    redis_url: str,
    upstream: ServerThread,
    usage_server: ServerThread,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp("usage-faults")
    models = [
        {**deployment(m, usage_server.url, 1.0, 2.0), "model": m}
        for m in (*FAULTY, "usage-good", "chunk-garbage")
    ]
    models.append({**deployment("stalls", upstream.url, 1.0, 2.0), "model": "stall-midstream"})
    env = {
        "SWITCHYARD_DATABASE_URL": pg_url,
        "SWITCHYARD_REDIS_URL": redis_url,
        "SWITCHYARD_SPEND_FLUSH_INTERVAL_S": "0.1",
        "SWITCHYARD_REDIS_TIMEOUT_S": "2.0",
    }
    gw = GatewayProcess("usage-gw", write_config(workdir / "switchyard.yaml", models), workdir, env).start()
    try:
        await gw.wait_ready()
        yield gw
    finally:
        await gw.stop(30.0)
        gw.kill()


async def _held(redis_url: str, key_id: str) -> int:
    """Nano-dollars still reserved in Redis for the key's budget (0: every reservation released)."""
    client = aioredis.from_url(redis_url)
    try:
        total = 0
        async for name in client.scan_iter(f"sy:b:key:{key_id}:*"):
            total += int(await client.hget(name, "held") or 0)
        return total
    finally:
        await client.aclose()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_usage_that_is_not_token_counts_is_counted_not_billed(
    gateway: GatewayProcess, pg_url: str, redis_url: str, stream: bool
) -> None:
    creds: Credentials = await new_key(pg_url, key={"budget_usd": Decimal(5)})
    async with httpx.AsyncClient(timeout=30.0) as client:
        calls = [
            await chat(client, gateway.url, creds.key, model=m, content="count me", stream=stream)
            for m in FAULTY
        ]
    for model, call in zip(FAULTY, calls, strict=True):
        assert call.ok, (model, call)
    rows = await wait_rows(pg_url, creds.key_id, len(FAULTY))
    assert len(rows) == len(FAULTY)
    for row in rows:
        assert row.status == 200
        assert row.tokens_estimated, row.requested_model
        # Counted by the gateway: a few prompt tokens and the four-word answer, priced at $1/$2 per Mtok.
        assert 0 < row.prompt_tokens < 100 and 0 < row.completion_tokens < 100
        assert Decimal(0) < row.cost_usd < Decimal("0.001")
    assert_daily_matches(rows, await daily_rows(pg_url, creds.key_id))
    assert await _held(redis_url, creds.key_id) == 0


async def test_every_answered_request_is_recorded_with_its_status(
    gateway: GatewayProcess, pg_url: str
) -> None:
    creds = await new_key(pg_url, key={"budget_usd": Decimal(5)})
    headers = {"authorization": f"Bearer {creds.key}"}
    async with httpx.AsyncClient(timeout=30.0, base_url=gateway.url, headers=headers) as client:
        missing = await client.post(
            "/v1/chat/completions", json={"model": "nope\x00" + "x" * 5000, "messages": [{"role": "user"}]}
        )
        invalid = await client.post("/v1/chat/completions", json={"model": "usage-good", "messages": []})
        too_long = await client.post(
            "/v1/chat/completions",
            json={
                "model": "usage-good",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2**63,
            },
        )
        ok = await client.post(
            "/v1/chat/completions",
            json={"model": "usage-good", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert (missing.status_code, invalid.status_code, too_long.status_code, ok.status_code) == (
        404,
        400,
        400,
        200,
    )
    assert too_long.json()["error"]["param"] == "max_tokens"
    for resp in (missing, invalid, too_long, ok):
        assert resp.headers["x-switchyard-request-id"].startswith("req_")
    rows = {r.request_id: r for r in await wait_rows(pg_url, creds.key_id, 4)}
    assert rows[missing.headers["x-switchyard-request-id"]].status == 404
    # The model name is kept bounded and without the NUL PostgreSQL refuses.
    assert len(rows[missing.headers["x-switchyard-request-id"]].requested_model) <= 256
    assert rows[invalid.headers["x-switchyard-request-id"]].status == 400
    assert rows[too_long.headers["x-switchyard-request-id"]].error_type == "invalid_request_error"
    assert rows[ok.headers["x-switchyard-request-id"]].status == 200
    assert_daily_matches(list(rows.values()), await daily_rows(pg_url, creds.key_id))


async def test_an_abandoned_stream_is_recorded_as_a_client_abort(
    gateway: GatewayProcess, pg_url: str, redis_url: str
) -> None:
    creds = await new_key(pg_url, key={"budget_usd": Decimal(5)})
    body = {"model": "stalls", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    async with (
        httpx.AsyncClient(timeout=30.0) as client,
        client.stream(
            "POST",
            gateway.url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {creds.key}"},
        ) as resp,
    ):
        assert resp.status_code == 200
        async for _ in resp.aiter_bytes():
            break  # the first event arrived; the client walks away mid-stream
    rows = await wait_rows(pg_url, creds.key_id, 1)
    assert [(r.status, r.error_type) for r in rows] == [(499, "client_disconnected")]
    for _ in range(50):
        if await _held(redis_url, creds.key_id) == 0:
            break
        await asyncio.sleep(0.1)
    assert await _held(redis_url, creds.key_id) == 0


async def test_a_stream_event_the_gateway_cannot_relay_ends_the_stream_as_a_502(
    gateway: GatewayProcess, pg_url: str, redis_url: str
) -> None:
    creds = await new_key(pg_url, key={"budget_usd": Decimal(5)})
    async with httpx.AsyncClient(timeout=30.0) as client:
        call = await chat(client, gateway.url, creds.key, model="chunk-garbage", content="hi", stream=True)
    assert call.status == 200 and call.error is None
    assert '"type":"api_error"' in call.body and "could not relay" in call.body
    rows = await wait_rows(pg_url, creds.key_id, 1)
    assert [(r.status, r.error_type) for r in rows] == [(502, "api_error")]
    assert rows[0].completion_tokens > 0  # the content before the bad event is billed
    assert await _held(redis_url, creds.key_id) == 0
