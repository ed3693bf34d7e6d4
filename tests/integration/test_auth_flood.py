"""Unauthenticated traffic costs neither memory nor database work: the real gateway (`create_app`,
in process, on the session's PostgreSQL) counting every pool checkout its engine makes.

Each test calls from its own loopback address (127.0.0.x), so their failure budgets do not mix.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from gateway.app import create_app
from gateway.auth import KEY_PREFIX, KeyCache
from gateway.config import parse_config
from gateway.settings import Settings
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY
from tests.integration.harness import deployment, new_key

BURST = 5
PER_MINUTE = 0.6  # one token back every 100 s: none during the test
FLOOD = 1_000


@dataclass
class Gateway:
    url: str
    cache: KeyCache
    checkouts: list[int]  # one counter, bumped from the server's thread


@pytest.fixture(scope="module")
def gateway(
    pg_url: str, upstream: ServerThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=pg_url,
        master_key=MASTER_KEY,
        spool_dir=tmp_path_factory.mktemp("auth-flood") / "spool",
        spend_flush_interval_s=0.1,
        local_model=False,
        auth_failures_burst=BURST,
        auth_failures_per_minute=PER_MINUTE,
    )
    config = parse_config({"models": [deployment("m", upstream.url, 1.0, 2.0)]}, {})
    app = create_app(settings, config)
    checkouts = [0]

    def count(*_: Any) -> None:
        checkouts[0] += 1

    event.listen(app.state.sessions.kw["bind"].sync_engine, "checkout", count)
    with ServerThread(app) as srv:
        yield Gateway(srv.url, app.state.key_cache, checkouts)


def client_from(address: str, concurrency: int = 20) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(
        local_address=address, limits=httpx.Limits(max_connections=concurrency)
    )
    return httpx.AsyncClient(transport=transport, timeout=30.0)


async def models(client: httpx.AsyncClient, gw: Gateway, key: str) -> httpx.Response:
    return await client.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {key}"})


def random_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def assert_error(r: httpx.Response, status: int, type_: str, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"]) == (type_, code) and error["message"]
    return error


async def test_malformed_keys_are_refused_without_a_database_query(gateway: Gateway) -> None:
    good = random_key()
    malformed = [
        "sk-sy-",
        "sk-sy-short",
        good[:-1],
        good + "A",
        good[:-1] + "=",
        good[:-1] + "é",
        "sk-sy-" + "." * 43,
    ]
    assert len(malformed) < BURST + 3
    async with client_from("127.0.0.3") as client:
        before = gateway.checkouts[0]
        answers = [await models(client, gateway, key) for key in malformed[:BURST]]
        assert gateway.checkouts[0] - before == 0, "a malformed key reached the database"
    for r in answers:
        assert_error(r, 401, "authentication_error", "invalid_api_key")


async def test_failed_auth_limit_answers_429_without_lookups_and_spares_other_addresses(
    pg_url: str, gateway: Gateway
) -> None:
    creds = await new_key(pg_url)
    async with client_from("127.0.0.1", concurrency=50) as flood, client_from("127.0.0.2") as other:
        for _ in range(BURST):
            assert_error(
                await models(flood, gateway, random_key()), 401, "authentication_error", "invalid_api_key"
            )
        rss_before, checkouts_before, t = rss_mb(), gateway.checkouts[0], time.monotonic()
        statuses: dict[int, int] = {}
        for _ in range(FLOOD // 50):
            batch = await asyncio.gather(*(models(flood, gateway, random_key()) for _i in range(50)))
            for r in batch:
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        elapsed = time.monotonic() - t
        limited = await models(flood, gateway, random_key())
        # A valid key from another address is untouched by the flood.
        ok = await models(other, gateway, creds.key)
    print(
        f"{FLOOD} random keys in {elapsed:.1f}s: {statuses}; {gateway.checkouts[0] - checkouts_before} "
        f"checkouts, {len(gateway.cache)} cache entries, RSS {rss_before:.1f} -> {rss_mb():.1f} MB"
    )
    error = assert_error(limited, 429, "rate_limit_error", "auth_rate_limited")
    assert "retry" in error["message"] and int(limited.headers["retry-after"]) >= 1
    assert statuses == {429: FLOOD}
    assert gateway.checkouts[0] - checkouts_before == 1  # the valid key's one lookup
    assert len(gateway.cache) <= BURST + 1
    assert ok.status_code == 200, ok.text


async def test_last_used_at_is_written_with_the_spend(pg_url: str, gateway: Gateway) -> None:
    creds = await new_key(pg_url)
    master = {"authorization": f"Bearer {MASTER_KEY}"}
    async with client_from("127.0.0.4") as client:
        key_url = f"{gateway.url}/admin/keys/{creds.key_id}"
        assert (await client.get(key_url, headers=master)).json()["last_used_at"] is None
        sent = time.time()
        r = await client.post(
            gateway.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {creds.key}"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 10.0
        while (used := (await client.get(key_url, headers=master)).json()["last_used_at"]) is None:
            assert time.monotonic() < deadline, "last_used_at never written"
            await asyncio.sleep(0.1)
    assert abs(datetime.fromisoformat(used).timestamp() - sent) < 5.0


async def test_a_burst_with_a_key_not_cached_yet_is_one_lookup_and_no_failure(
    pg_url: str, gateway: Gateway
) -> None:
    creds = await new_key(pg_url)
    async with client_from("127.0.0.5", concurrency=50) as client:
        before = gateway.checkouts[0]
        answers = await asyncio.gather(*(models(client, gateway, creds.key) for _ in range(10 * BURST)))
    assert [r.status_code for r in answers] == [200] * (10 * BURST)
    assert gateway.checkouts[0] - before == 1
