"""Acceptance tests of "Accounting and control": real PostgreSQL and Redis, real gateway processes.

The fixtures are here; the helpers the tests import live in harness (databases, keys, records, chat
calls), gateway_proc (gateway subprocesses, a cuttable TCP proxy) and shared_pair (the two gateways).

  pg_url           one migrated PostgreSQL database for the whole session (dropped at its end); every
                   test makes its own team and key and reads back only that key's rows
  redis_url        the suite's Redis database (suite_redis_url, tests/stores.py), which concurrent runs
                   share: no test relies on it being empty
  upstream         the fake OpenAI upstream (tests.fakes.openai_upstream) on a ServerThread
  pair             two gateway subprocesses sharing that PostgreSQL and Redis (test_shared_*)
  db_proxy         a cuttable TCP proxy in front of PostgreSQL (outages without touching the server)
  redis_proxy      the same in front of the suite's Redis
  redis_proc       a throwaway redis-server of the test's own, to stop and restart
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.db.migrate import upgrade
from tests.fakes import openai_upstream
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import GatewayProcess, TcpProxy
from tests.integration.harness import PG_PORT, deployment, pg_url_for, write_config
from tests.integration.redis_proc import RedisProcess
from tests.integration.shared_pair import BUDGET_PRICE, Pair
from tests.stores import create_pg_database, drop_pg_database

# --------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
async def pg_name() -> AsyncIterator[str]:
    name = await create_pg_database("integration")
    try:
        await upgrade(pg_url_for(name))
        yield name
    finally:
        await drop_pg_database(name)


@pytest.fixture(scope="session")
def pg_url(pg_name: str) -> str:
    """The session's migrated PostgreSQL database (direct, no proxy)."""
    return pg_url_for(pg_name)


@pytest.fixture(scope="session")
def redis_url(suite_redis_url: str) -> str:
    return suite_redis_url


# --------------------------------------------------------------------------- the fake upstream


@pytest.fixture(scope="session")
def upstream() -> Iterator[ServerThread]:
    with ServerThread(openai_upstream.create_app(hang_seconds=2.0)) as srv:
        yield srv


# --------------------------------------------------------------------------- two gateways, one Redis


@pytest.fixture(scope="package")
async def pair(
    pg_url: str, redis_url: str, upstream: ServerThread, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pair]:
    """Two `switchyard serve` processes on the session's PostgreSQL and Redis, both with --access-log and
    --log-level debug, started once for all of tests/integration.

    test_shared_limits uses them first; test_shared_no_key_leak, which sorts after it (pytest runs the
    files of a directory in name order), scans their logs and stops them, so it must stay last of the two.
    """
    workdir = tmp_path_factory.mktemp("pair")
    config = write_config(
        workdir / "switchyard.yaml",
        [
            deployment("priced", upstream.url, 1.0, 2.0),
            deployment("budget", upstream.url, float(BUDGET_PRICE), float(BUDGET_PRICE)),
        ],
    )
    env = {
        "SWITCHYARD_DATABASE_URL": pg_url,
        "SWITCHYARD_REDIS_URL": redis_url,
        "SWITCHYARD_SPEND_FLUSH_INTERVAL_S": "0.2",
        # The default 0.1 s Redis timeout is short for this shared 2-core machine: a stall past it sends
        # a gateway to its per-process limiter (fail-open, by design), which admits past the shared
        # limit (seen: 64/200 at 60 RPM). These tests are about the shared limit, so give Redis time.
        "SWITCHYARD_REDIS_TIMEOUT_S": "2.0",
    }
    gateways = [
        GatewayProcess(name, config, workdir, env, extra_args=("--access-log", "--log-level", "debug"))
        for name in ("gw-a", "gw-b")
    ]
    try:
        for g in gateways:
            g.start()
        await asyncio.gather(*(g.wait_ready() for g in gateways))
        yield Pair(gateways, workdir)
    finally:
        for g in gateways:
            try:
                if g.proc is not None and g.proc.poll() is None:
                    await g.stop(30.0)
            finally:
                g.kill()


# --------------------------------------------------------------------------- faults


@pytest.fixture
def db_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(PG_PORT).start()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(6379).start()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
async def redis_proc() -> AsyncIterator[RedisProcess]:
    proc = RedisProcess().start()
    try:
        yield proc
    finally:
        proc.stop()
