"""Start-up during a PostgreSQL outage, and /health/ready telling the truth about each dependency.

Real `switchyard serve` subprocesses; PostgreSQL and Redis are reached through a TcpProxy whose cut()
refuses new connections and resets open ones, so "down" is a real connection failure.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.db.engine import make_engine, session_factory
from gateway.db.models import RequestLog
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY, GatewayProcess, TcpProxy
from tests.integration.harness import chat, deployment, pg_url_for, write_config
from tests.stores import TEST_REDIS_DB, create_pg_database, drop_pg_database


def start_gateway(tmp_path: Path, upstream: ServerThread, env: dict[str, str]) -> GatewayProcess:
    config = write_config(tmp_path / "switchyard.yaml", [deployment("priced", upstream.url, 1.0, 2.0)])
    return GatewayProcess(
        "ready", config, tmp_path, {"SWITCHYARD_SPEND_FLUSH_INTERVAL_S": "0.1", **env}
    ).start()


async def readiness(client: httpx.AsyncClient, gw: GatewayProcess) -> tuple[int, dict[str, Any]]:
    resp = await client.get(gw.url + "/health/ready")
    return resp.status_code, resp.json()


async def wait_for(
    client: httpx.AsyncClient, gw: GatewayProcess, check: str, state: str, within_s: float
) -> tuple[float, int, dict[str, Any]]:
    """Poll /health/ready until checks[check].state == state; (seconds it took, status, body)."""
    start = time.monotonic()
    code, body = await readiness(client, gw)
    while body.get("checks", {}).get(check, {}).get("state") != state:
        assert time.monotonic() - start < within_s, (check, state, code, body)
        await asyncio.sleep(0.1)
        code, body = await readiness(client, gw)
    return time.monotonic() - start, code, body


async def record_lands(pg_url: str, request_id: str, within_s: float) -> bool:
    engine = make_engine(pg_url)
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            async with session_factory(engine)() as session:
                if await session.get(RequestLog, request_id) is not None:
                    return True
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
    return False


async def test_starts_while_postgresql_is_down_and_records_land_once_it_is_back(
    pg_url: str, pg_name: str, db_proxy: TcpProxy, upstream: ServerThread, tmp_path: Path
) -> None:
    db_proxy.cut()
    via_proxy = {"SWITCHYARD_DATABASE_URL": pg_url_for(pg_name, port=db_proxy.port)}
    gw = start_gateway(tmp_path, upstream, via_proxy)
    try:
        await gw.wait_ready(60.0)  # 200: degraded, records wait in memory and the spool
        async with httpx.AsyncClient(timeout=10.0) as c:
            code, body = await readiness(c, gw)
            assert (code, body["status"]) == (200, "degraded"), body
            assert body["checks"]["database"]["state"] == "down", body
            assert body["checks"]["spool"]["state"] == "ok", body
            call = await chat(c, gw.url, MASTER_KEY, model="priced", content="during the outage")
            assert call.status == 200 and call.request_id, (call.status, call.body)
            db_proxy.restore()
            took, code, body = await wait_for(c, gw, "database", "ok", within_s=15.0)
            assert (code, body["status"]) == (200, "ready"), body
        assert await record_lands(pg_url, call.request_id, within_s=40.0), gw.tail()
    finally:
        await gw.stop()
        gw.kill()
    assert "starting without it" in gw.output(), gw.tail()
    print(f"started during the outage; database seen back {took:.1f}s after the restore")


async def test_an_unmigrated_postgresql_that_answers_still_refuses_the_start(
    upstream: ServerThread, tmp_path: Path
) -> None:
    name = await create_pg_database("unmigrated")
    try:
        gw = start_gateway(tmp_path, upstream, {"SWITCHYARD_DATABASE_URL": pg_url_for(name)})
        try:
            code = await gw.wait_exit(60.0)
        finally:
            gw.kill()
    finally:
        await drop_pg_database(name)
    assert code == 2, gw.tail()
    assert "has no schema" in gw.output() and "switchyard migrate" in gw.output(), gw.tail()


async def test_an_unmigrated_postgresql_found_after_an_outage_start_is_not_ready(
    db_proxy: TcpProxy, upstream: ServerThread, tmp_path: Path
) -> None:
    name = await create_pg_database("unmigrated")
    try:
        db_proxy.cut()
        via_proxy = {"SWITCHYARD_DATABASE_URL": pg_url_for(name, port=db_proxy.port)}
        gw = start_gateway(tmp_path, upstream, via_proxy)
        try:
            await gw.wait_ready(60.0)
            db_proxy.restore()
            async with httpx.AsyncClient(timeout=10.0) as c:
                _, code, body = await wait_for(c, gw, "database", "schema_outdated", within_s=15.0)
        finally:
            await gw.stop()
            gw.kill()
    finally:
        await drop_pg_database(name)
    assert (code, body["status"]) == (503, "not_ready"), body
    assert "has no schema" in gw.output() and "switchyard migrate" in gw.output(), gw.tail()


async def test_ready_follows_a_postgresql_outage_on_a_running_gateway(
    pg_name: str, db_proxy: TcpProxy, upstream: ServerThread, tmp_path: Path
) -> None:
    via_proxy = {"SWITCHYARD_DATABASE_URL": pg_url_for(pg_name, port=db_proxy.port)}
    gw = start_gateway(tmp_path, upstream, via_proxy)
    try:
        await gw.wait_ready(60.0)
        async with httpx.AsyncClient(timeout=10.0) as c:
            code, body = await readiness(c, gw)
            assert (code, body["status"], body["checks"]["database"]["state"]) == (200, "ready", "ok"), body
            db_proxy.cut()
            down_after, code, body = await wait_for(c, gw, "database", "down", within_s=5.0)
            assert (code, body["status"]) == (200, "degraded"), body
            db_proxy.restore()
            up_after, code, body = await wait_for(c, gw, "database", "ok", within_s=15.0)
            assert (code, body["status"]) == (200, "ready"), body
    finally:
        await gw.stop()
        gw.kill()
    assert down_after < 2.5, f"readiness saw the outage only after {down_after:.1f}s"
    print(f"readiness: database down {down_after:.2f}s after the cut, ok {up_after:.2f}s after the restore")


@pytest.mark.parametrize(("mode", "want"), [("closed", (503, "not_ready")), ("open", (200, "degraded"))])
async def test_redis_down_is_not_ready_only_when_limits_fail_closed(
    mode: str,
    want: tuple[int, str],
    pg_url: str,
    redis_url: str,
    redis_proxy: TcpProxy,
    upstream: ServerThread,
    tmp_path: Path,
) -> None:
    env = {
        "SWITCHYARD_DATABASE_URL": pg_url,
        "SWITCHYARD_REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}/{TEST_REDIS_DB}",
        "SWITCHYARD_LIMITS_FAIL_MODE": mode,
    }
    gw = start_gateway(tmp_path, upstream, env)
    try:
        await gw.wait_ready(60.0)
        async with httpx.AsyncClient(timeout=10.0) as c:
            code, body = await readiness(c, gw)
            assert (code, body["status"], body["checks"]["redis"]["state"]) == (200, "ready", "ok"), body
            redis_proxy.cut()
            down_after, code, body = await wait_for(c, gw, "redis", "down", within_s=5.0)
            assert (code, body["status"]) == want, body
            assert body["checks"]["redis"]["fail_mode"] == mode, body
            redis_proxy.restore()
            await wait_for(c, gw, "redis", "ok", within_s=15.0)
            code, body = await readiness(c, gw)
            assert (code, body["status"]) == (200, "ready"), body
    finally:
        await gw.stop()
        gw.kill()
    assert down_after < 2.5, f"readiness saw the Redis outage only after {down_after:.1f}s"
