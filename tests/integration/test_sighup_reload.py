"""SIGHUP reloads the config file and neither kills nor restarts the server: a real `switchyard serve
--config FILE` under steady load (a third of the calls streamed), with one worker and with two.

The file watcher is slowed to 300 s here, so only the signal can apply the edit. Before the fix,
SIGHUP's default action killed a single-process server on the spot (uvicorn handles only SIGINT and
SIGTERM), and uvicorn's supervisor answered it under --workers by replacing every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY, GatewayProcess
from tests.integration.harness import Call, chat, deployment, write_config

CONCURRENCY = 6
HEADER = "x-switchyard-config-version"


def children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(stat.parent.name))
    return found


async def version_of(client: httpx.AsyncClient, gw: GatewayProcess, model: str = "m") -> str | None:
    call = await chat(client, gw.url, MASTER_KEY, model=model, content="which version")
    assert call.ok, (call.status, call.body, call.error)
    return call.headers.get(HEADER)


async def all_on(client: httpx.AsyncClient, gw: GatewayProcess, version: str, within_s: float) -> float:
    """Seconds until 20 calls in a row answer on `version` (every worker has it)."""
    start = time.monotonic()
    streak = 0
    while streak < 20:
        assert time.monotonic() - start < within_s, f"not every call on version {version} in {within_s}s"
        streak = streak + 1 if await version_of(client, gw) == version else 0
    return time.monotonic() - start


async def every_worker_started(gw: GatewayProcess, workers: int, within_s: float = 60.0) -> None:
    # On a slow host uvicorn may replace a worker that took over 5 s to import (its health check):
    # the signal must find every worker serving.
    deadline = time.monotonic() + within_s
    while gw.output().count("Application startup complete") < workers:
        assert time.monotonic() < deadline, gw.tail()
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("workers", [1, 2])
async def test_sighup_reloads_under_load_without_a_restart(
    workers: int, upstream: ServerThread, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "switchyard.yaml", [deployment("m", upstream.url, 1.0, 2.0)])
    gw = GatewayProcess(
        f"sighup-{workers}",
        config,
        tmp_path,
        {
            "SWITCHYARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}",
            "SWITCHYARD_CONFIG_WATCH_INTERVAL_S": "300",
        },
        extra_args=("--workers", str(workers)),
    ).start()
    calls: list[Call] = []
    stop = asyncio.Event()

    async def load(client: httpx.AsyncClient, w: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            calls.append(
                await chat(client, gw.url, MASTER_KEY, model="m", content=f"w{w} {i}", stream=i % 3 == 0)
            )

    try:
        await gw.wait_ready()
        assert gw.proc is not None
        await every_worker_started(gw, workers)
        limits = httpx.Limits(max_connections=CONCURRENCY + 2, max_keepalive_connections=CONCURRENCY + 2)
        # No keep-alive on the probe: each call is a new connection, so either worker may take it.
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with (
            httpx.AsyncClient(timeout=30.0, limits=limits) as client,
            httpx.AsyncClient(timeout=30.0, limits=fresh) as probe,
        ):
            # The version the file runs as (0, or the one it is recorded as in the database).
            v = int(await version_of(probe, gw) or "")
            await all_on(probe, gw, str(v), 10.0)
            before = children(gw.proc.pid)
            tasks = [asyncio.create_task(load(client, w)) for w in range(CONCURRENCY)]
            await asyncio.sleep(0.5)
            for _ in range(5):  # the file as it was: nothing to apply
                gw.signal(signal.SIGHUP)
                await asyncio.sleep(0.2)
            assert await version_of(probe, gw) == str(v)
            both = [deployment("m", upstream.url, 1.0, 2.0), deployment("m2", upstream.url, 1.0, 2.0)]
            write_config(config, both)
            gw.signal(signal.SIGHUP)
            lag = await all_on(probe, gw, str(v + 1), 5.0)
            assert await version_of(probe, gw, "m2") == str(v + 1)
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30.0)
            assert gw.proc.poll() is None, gw.tail()
            assert children(gw.proc.pid) == before, "no worker was replaced"
        code = await gw.stop()
    finally:
        # Killing serve would orphan its workers: kill them too.
        leftover = children(gw.proc.pid) if gw.proc is not None else set()
        gw.kill()
        for pid in leftover:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert code in (0, -signal.SIGTERM), gw.tail()
    failed = [(c.status, c.error, c.body) for c in calls if not c.ok]
    assert not failed, failed[:5]
    assert len(calls) > 50
    applied = gw.output().count(f"config version {v + 1} applied (was {v})")
    assert applied == workers, gw.tail()  # every worker reloaded, once
    print(
        f"sighup, {workers} worker(s): {len(calls)} calls, none failed; "
        f"every call on the new version {lag:.2f}s after the signal"
    )
