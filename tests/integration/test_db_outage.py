"""The database stopped mid-run and restarted: every record ends up present exactly once.

The shared PostgreSQL server cannot be stopped, so the gateway reaches it through a TcpProxy: cut()
drops every connection (RST) and refuses new ones, restore() listens again. Auth is served from the
key cache during the outage (warmed by a first call), so requests keep being answered; their records
wait in memory (retried with backoff) or, when the gateway stops during the outage, in spill files that
the next process replays.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import openai

from gateway.app import create_app
from gateway.config import parse_config
from gateway.settings import Settings
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY, TcpProxy
from tests.integration.harness import (
    Credentials,
    assert_daily_matches,
    chat,
    daily_rows,
    deployment,
    log_rows,
    new_key,
    pg_url_for,
    spill_files,
    wait_rows,
    words,
)

CONCURRENCY = 8


def gateway(db_url: str, spool: Path, upstream: ServerThread, auth_cache_ttl_s: float = 60.0) -> ServerThread:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=db_url,
        spool_dir=spool,
        master_key=MASTER_KEY,
        spend_flush_interval_s=0.1,
        spend_batch_size=16,
        retries=0,
        auth_cache_ttl_s=auth_cache_ttl_s,
    )
    config = parse_config({"models": [deployment("priced", upstream.url, 1.0, 2.0)]}, env={})
    return ServerThread(create_app(settings, config))


class Load:
    """CONCURRENCY workers calling the gateway (every third call streamed) until stopped."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self.client = client
        self.ok: list[str] = []  # request ids of answers that arrived whole with 200
        self.failed: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> Load:
        self._tasks = [asyncio.create_task(self._worker(w)) for w in range(CONCURRENCY)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _worker(self, w: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            messages = [{"role": "user", "content": words(1 + i % 5, f"o{w}-")}]
            try:
                raw = await self.client.chat.completions.with_raw_response.create(
                    model="priced", messages=messages, stream=i % 3 == 0
                )
                if i % 3 == 0:
                    async for _ in raw.parse():
                        pass
                else:
                    raw.parse()
                self.ok.append(raw.headers["x-switchyard-request-id"])
            except openai.APIError as exc:
                self.failed.append(repr(exc))


async def run_for(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def check_exactly_once(db_url: str, creds: Credentials, ok: list[str]) -> None:
    rows = await wait_rows(db_url, creds.key_id, len(ok), within_s=5.0)
    ids = [r.request_id for r in rows]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(ok), (
        f"missing {len(set(ok) - set(ids))}, unexpected {len(set(ids) - set(ok))} of {len(ok)}"
    )
    assert all(r.status == 200 for r in rows)
    assert_daily_matches(rows, await daily_rows(db_url, creds.key_id))


async def test_outage_mid_load_every_record_lands_once(
    pg_url: str, pg_name: str, db_proxy: TcpProxy, upstream: ServerThread, tmp_path: Path
) -> None:
    creds = await new_key(pg_url)
    via_proxy = pg_url_for(pg_name, port=db_proxy.port)
    gw = gateway(via_proxy, tmp_path / "spool", upstream).start()
    try:
        async with openai.AsyncOpenAI(
            base_url=gw.url + "/v1", api_key=creds.key, max_retries=0, timeout=30.0
        ) as client:
            load = Load(client)
            warm = await client.chat.completions.with_raw_response.create(
                model="priced", messages=[{"role": "user", "content": "warm the key cache"}]
            )
            load.ok.append(warm.headers["x-switchyard-request-id"])
            load.start()
            await run_for(1.0)
            before_cut = len(load.ok)
            db_proxy.cut()
            cut_at = time.monotonic()
            await run_for(3.0)
            during_cut = len(load.ok) - before_cut
            db_proxy.restore()
            await run_for(1.0)
            await load.stop()
            assert not load.failed, load.failed[:5]
            assert during_cut > 10, "requests kept being answered during the outage"
            assert db_proxy.aborted > 0, "the outage cut live database connections"
            # Replayed from memory by the running gateway once the database answers again.
            rows = await wait_rows(pg_url, creds.key_id, len(load.ok), within_s=30.0)
            replayed_after = time.monotonic() - cut_at
            assert len(rows) == len(load.ok), (len(rows), len(load.ok))
    finally:
        gw.stop()
    await check_exactly_once(pg_url, creds, load.ok)
    assert spill_files(tmp_path / "spool") == []
    print(
        f"outage: {len(load.ok)} answered ({during_cut} during a 3 s cut), all logged once "
        f"{replayed_after:.1f}s after the cut began"
    )


async def test_gateway_stopped_during_outage_spills_and_next_process_replays(
    pg_url: str, pg_name: str, db_proxy: TcpProxy, upstream: ServerThread, tmp_path: Path
) -> None:
    creds = await new_key(pg_url)
    via_proxy = pg_url_for(pg_name, port=db_proxy.port)
    spool = tmp_path / "spool"
    first = gateway(via_proxy, spool, upstream).start()
    try:
        async with openai.AsyncOpenAI(
            base_url=first.url + "/v1", api_key=creds.key, max_retries=0, timeout=30.0
        ) as client:
            load = Load(client)
            warm = await client.chat.completions.with_raw_response.create(
                model="priced", messages=[{"role": "user", "content": "warm the key cache"}]
            )
            load.ok.append(warm.headers["x-switchyard-request-id"])
            load.start()
            await run_for(0.7)
            db_proxy.cut()
            await run_for(1.5)
            await load.stop()
            assert not load.failed, load.failed[:5]
    finally:
        first.stop()  # the database is still down: what the writer holds goes to spill files
    spilled = spill_files(spool)
    assert spilled, "records waiting at shutdown were spilled to disk"
    logged_before = len(await log_rows(pg_url, creds.key_id))
    assert logged_before < len(load.ok)

    db_proxy.restore()
    second = gateway(via_proxy, spool, upstream).start()
    try:
        rows = await wait_rows(pg_url, creds.key_id, len(load.ok), within_s=30.0)
        assert len(rows) == len(load.ok), (len(rows), len(load.ok))
    finally:
        second.stop()
    await check_exactly_once(pg_url, creds, load.ok)
    assert spill_files(spool) == [], "replayed spill files are removed"
    print(
        f"spill: {len(load.ok)} answered, {logged_before} logged before the stop, "
        f"the rest replayed from {len(spilled)} spill file(s) by the next process"
    )


# --------------------------------------------------------------------------- auth during an outage


async def test_cached_key_keeps_working_past_its_ttl_while_the_database_is_down(
    pg_url: str, pg_name: str, db_proxy: TcpProxy, upstream: ServerThread, tmp_path: Path
) -> None:
    creds = await new_key(pg_url)
    gw = gateway(pg_url_for(pg_name, port=db_proxy.port), tmp_path / "spool", upstream, 0.3).start()
    try:
        async with httpx.AsyncClient(timeout=10.0) as c:
            assert (await chat(c, gw.url, creds.key, model="priced", content="before")).status == 200
            db_proxy.cut()
            await asyncio.sleep(0.5)  # the cache entry is past its TTL now
            during = await chat(c, gw.url, creds.key, model="priced", content="during the outage")
            db_proxy.restore()
    finally:
        gw.stop()
    assert during.status == 200, (during.status, during.body)


async def test_uncached_key_during_outage_is_a_503(
    pg_url: str, pg_name: str, db_proxy: TcpProxy, upstream: ServerThread, tmp_path: Path
) -> None:
    creds = await new_key(pg_url)
    gw = gateway(pg_url_for(pg_name, port=db_proxy.port), tmp_path / "spool", upstream).start()
    try:
        async with httpx.AsyncClient(timeout=10.0) as c:
            db_proxy.cut()
            during = await chat(c, gw.url, creds.key, model="priced", content="during the outage")
            db_proxy.restore()
    finally:
        gw.stop()
    assert during.status == 503, (during.status, during.body)
    assert isinstance(during.body, dict) and during.body["error"]["type"] != "api_error", during.body
