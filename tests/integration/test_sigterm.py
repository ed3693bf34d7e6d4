"""A SIGTERM mid-load: every record present exactly once.

`switchyard serve` as a subprocess on PostgreSQL, driven by concurrent raw-HTTP calls (a third of them
streamed); SIGTERM lands while calls are in flight. uvicorn stops accepting, drains what it accepted,
then the lifespan flushes the spend writer. What is counted:

  answered   a response that arrived whole with status 200 (a stream through `data: [DONE]`)
  refused    a call that got no response at all (connection refused / reset once the server closed)
  rows       request_log rows for the key

rows must be exactly the answered calls' request ids plus those of any other response that carried an
x-switchyard-request-id (there are none here: the fake upstream never fails); refused calls have no
row; nothing is logged twice (and daily_spend agrees with the rows).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx

from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import GatewayProcess
from tests.integration.harness import (
    Call,
    assert_daily_matches,
    chat,
    daily_rows,
    deployment,
    log_rows,
    new_key,
    spill_files,
    words,
    write_config,
)

CONCURRENCY = 12


async def test_sigterm_mid_load_every_record_once(
    pg_url: str, upstream: ServerThread, tmp_path: Path
) -> None:
    creds = await new_key(pg_url)
    config = write_config(tmp_path / "switchyard.yaml", [deployment("priced", upstream.url, 1.0, 2.0)])
    gw = GatewayProcess(
        "sigterm",
        config,
        tmp_path,
        {"SWITCHYARD_DATABASE_URL": pg_url, "SWITCHYARD_SPEND_FLUSH_INTERVAL_S": "0.2"},
    ).start()
    calls: list[Call] = []
    signalled = asyncio.Event()

    async def worker(client: httpx.AsyncClient, w: int) -> None:
        i = 0
        # Keep calling until the server stops answering after the signal (bounded either way).
        while i < 2000:
            i += 1
            call = await chat(
                client,
                gw.url,
                creds.key,
                model="priced",
                content=words(1 + i % 4, f"s{w}-"),
                stream=i % 3 == 0,
            )
            calls.append(call)
            if call.error is not None:
                if signalled.is_set():
                    return
                await asyncio.sleep(0.05)

    try:
        await gw.wait_ready()
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
            workers = [asyncio.create_task(worker(client, w)) for w in range(CONCURRENCY)]
            await asyncio.sleep(1.5)
            done_before_signal = len(calls)
            gw.signal(signal.SIGTERM)
            signalled.set()
            code = await gw.wait_exit(45.0)
            await asyncio.wait_for(asyncio.gather(*workers), 30.0)
    finally:
        gw.kill()
    # uvicorn re-raises the signal once its graceful shutdown is done: "killed by SIGTERM" is a clean exit.
    assert code in (0, -signal.SIGTERM), gw.tail()
    assert "Application shutdown complete" in gw.output(), gw.tail()

    answered = [c for c in calls if c.ok]
    refused = [c for c in calls if c.status is None]
    other = [c for c in calls if c.status is not None and not c.ok]
    assert done_before_signal > 20 and answered, "the gateway was under load when signalled"
    assert len(answered) > done_before_signal, "calls in flight at the signal were still answered"
    assert refused, "calls after the signal were refused"
    assert not other, [(c.status, c.body) for c in other[:5]]

    rows = await log_rows(pg_url, creds.key_id)
    ids = [r.request_id for r in rows]
    assert len(ids) == len(set(ids)), "no request logged twice"
    answered_ids = {c.request_id for c in answered}
    with_id = {c.request_id for c in calls if c.request_id is not None}
    assert len(answered_ids) == len(answered)
    assert set(ids) == with_id, (
        f"{len(answered)} answered, {len(rows)} rows: missing {len(with_id - set(ids))}, "
        f"unexpected {len(set(ids) - with_id)}"
    )
    assert all(r.status == 200 for r in rows)
    assert_daily_matches(rows, await daily_rows(pg_url, creds.key_id))
    assert spill_files(gw.spool_dir) == [], "the database was up: nothing left on disk"
    print(
        f"sigterm: {len(answered)} answered with 200 ({done_before_signal} before the signal), "
        f"{len(refused)} refused after it, {len(rows)} rows"
    )
