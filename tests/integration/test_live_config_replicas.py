"""Two replicas under steady load, 20 config changes in a row: zero failed requests, and each replica
serving the new version within 1 s of the change returning (measured and printed).

Two gateway processes on one PostgreSQL database and one Redis, each answering both SDKs (openai and
anthropic, streamed and not) in a steady loop against the fake upstream. Every change rebuilds the
`churn` deployment's provider (its price changes), so requests in flight on the old one must finish
on it; `steady` keeps its provider; `auto` routes over both.

A change is a PUT /admin/config to the first replica, which stores, applies and announces it (the
config service and ConfigSync); the replicas are `switchyard serve` on the database (no --config),
started on version 1, stored beforehand.

Lag, measured two ways:
- on the replica: when its log says it applied version k, less the moment the PUT answered (0 when
  it applied it before: the replica that took the PUT always does). Every (replica, change) must be
  within MAX_LAG_S. Both sides read the same host clock.
- as a client sees it: each replica is probed back to back (GET /v1/models reads the running
  snapshot) and the first answer on version >= k arrives some time after the change returned. That
  figure also holds this test process's own delays (it runs the load, both SDKs' parsing and the
  fake upstream on one event loop), so it is printed, not held to the bound; what a client must see
  is checked on every load request instead: none that started more than MAX_LAG_S after a change
  returned may have run on an older version.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway.db.engine import make_engine, session_factory
from gateway.db.migrate import upgrade
from gateway.live.store import ConfigStore
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY, GatewayProcess
from tests.integration.harness import deployment, pg_url_for
from tests.stores import create_pg_database, drop_pg_database

# About 25 s here (two gateway processes start, then 20 changes under load): past the 20 s that the
# default run allows a test. Run it with
#   python -m pytest -m slow -s tests/integration/test_live_config_replicas.py
pytestmark = pytest.mark.slow

CHANGES = 20
MAX_LAG_S = 1.0
HEADER = "x-switchyard-config-version"
MODELS = ("steady", "churn", "auto")
# LiveConfig.apply's log line, in gateway.logsetup's format.
APPLIED = re.compile(
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO switchyard\.config: config version (\d+) applied"
)


def document(k: int, upstream_url: str) -> dict[str, Any]:
    """Version k: `churn`'s price moves with k (a new provider each change), the rest stays. The
    upstream key is a reference (a stored config holds no plain secret)."""
    models = [
        deployment("steady", upstream_url, 1.0, 2.0),
        deployment("churn", upstream_url, 1.0 + k / 1000, 2.0),
    ]
    return {
        "models": [{**m, "api_key": "${UPSTREAM_KEY}"} for m in models],
        "routes": {"auto": {"candidates": ["steady", "churn"]}},
    }


@dataclass
class Result:
    replica: int
    kind: str
    started: float
    ended: float
    version: int | None = None
    error: str | None = None


@pytest.fixture
async def replica_db() -> AsyncIterator[str]:
    name = await create_pg_database("replicas")
    try:
        await upgrade(pg_url_for(name))
        yield pg_url_for(name)
    finally:
        await drop_pg_database(name)


def replica(i: int, workdir: Path, db_url: str, redis_url: str, channel: str) -> GatewayProcess:
    env = {
        "SWITCHYARD_DATABASE_URL": db_url,
        "SWITCHYARD_REDIS_URL": redis_url,
        "SWITCHYARD_CONFIG_CHANNEL": channel,
        "SWITCHYARD_REDIS_TIMEOUT_S": "2.0",
        "UPSTREAM_KEY": "sk-upstream-integration",
    }
    # No --config, and no ./switchyard.yaml in `workdir`: the database holds the config.
    return GatewayProcess(f"replica-{i}", None, workdir, env)


async def put_config(client: httpx.AsyncClient, gw: GatewayProcess, k: int, doc: dict[str, Any]) -> float:
    """Version k through the admin API (based on k - 1); when it answered (wall clock)."""
    resp = await client.put(
        gw.url + "/admin/config",
        json=doc,
        headers={"authorization": f"Bearer {MASTER_KEY}", "if-match": str(k - 1)},
    )
    answered = time.time()
    assert resp.status_code == 200 and resp.json()["version"] == k, resp.text
    return answered


# --------------------------------------------------------------------------- the load


def _version(headers: httpx.Headers) -> int:
    return int(headers[HEADER])


async def openai_call(client: openai.AsyncOpenAI, model: str, stream: bool) -> int:
    messages = [{"role": "user", "content": "how are you today"}]
    raw = await client.chat.completions.with_raw_response.create(
        model=model, messages=messages, stream=stream
    )
    if not stream:
        assert raw.parse().choices[0].message.content
        return _version(raw.headers)
    text = ""
    async for chunk in raw.parse():
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert text
    return _version(raw.headers)


async def anthropic_call(client: anthropic.AsyncAnthropic, model: str, stream: bool) -> int:
    messages = [{"role": "user", "content": "how are you today"}]
    raw = await client.messages.with_raw_response.create(
        model=model, max_tokens=64, messages=messages, stream=stream
    )
    if not stream:
        assert (await raw.parse()).content[0].text
        return _version(raw.headers)
    kinds = [event.type async for event in await raw.parse()]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    return _version(raw.headers)


async def loop(
    replica_index: int,
    kind: str,
    call: Callable[[str], Awaitable[int]],
    results: list[Result],
    stop: asyncio.Event,
) -> None:
    i = 0
    while not stop.is_set():
        model = MODELS[i % len(MODELS)]
        i += 1
        r = Result(replica_index, f"{kind} {model}", time.monotonic(), 0.0)
        try:
            r.version = await call(model)
        except Exception as exc:
            r.error = f"{type(exc).__name__}: {exc}"
        r.ended = time.monotonic()
        results.append(r)
        await asyncio.sleep(0.01)  # steady, not flat out: this process measures too


async def probe(url: str, seen: list[tuple[float, int]], stop: asyncio.Event) -> None:
    """Back-to-back reads of the version this replica serves: (arrival, version)."""
    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {MASTER_KEY}"}) as c:
        while not stop.is_set():
            resp = await c.get("/v1/models")
            seen.append((time.monotonic(), _version(resp.headers)))
            await asyncio.sleep(0.002)


async def wait_until(cond: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.005)


def applied_at(gw: GatewayProcess) -> dict[int, float]:
    """version -> when the replica's log says it applied it (wall clock, millisecond resolution)."""
    found = {}
    for m in APPLIED.finditer(gw.output()):
        found[int(m.group(2))] = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return found


def spread(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p90 = ms[int(0.9 * (len(ms) - 1))]
    return f"max {ms[-1]:.0f} ms, median {statistics.median(ms):.0f} ms, p90 {p90:.0f} ms"


async def finish(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)


async def close_all(clients: list[Any]) -> None:
    for c in clients:
        await c.close()


async def stop_all(gateways: list[GatewayProcess]) -> None:
    await asyncio.gather(*(gw.stop(30.0) for gw in gateways if gw.proc is not None))


# --------------------------------------------------------------------------- the test


async def test_two_replicas_follow_twenty_changes_under_load(
    replica_db: str, redis_url: str, upstream: ServerThread, tmp_path: Path
) -> None:
    channel = f"switchyard:test:config:{tmp_path.name}"
    store_engine = make_engine(replica_db)
    store = ConfigStore(session_factory(store_engine))
    await store.seed(document(1, upstream.url), "replica-test")
    await store_engine.dispose()
    gateways = [replica(i, tmp_path, replica_db, redis_url, channel) for i in range(2)]
    results: list[Result] = []
    seen: list[list[tuple[float, int]]] = [[], []]
    changed_at: dict[int, float] = {}  # monotonic, once the change returned
    answered: dict[int, float] = {}  # wall clock, the same moment
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(stop_all, gateways)
            for gw in gateways:
                gw.start()
            await asyncio.gather(*(gw.wait_ready(90.0) for gw in gateways))
            admin = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0))
            clients: list[Any] = []
            # Unwound in reverse: the load stops first, then its clients close.
            stack.push_async_callback(close_all, clients)
            stack.push_async_callback(finish, stop, tasks)
            for i, gw in enumerate(gateways):
                tasks.append(asyncio.create_task(probe(gw.url, seen[i], stop)))
            await wait_until(lambda: all(s and s[-1][1] == 1 for s in seen), 10.0, "replicas on version 1")
            for i, gw in enumerate(gateways):
                oa = openai.AsyncOpenAI(
                    base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30
                )
                an = anthropic.AsyncAnthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
                clients += [oa, an]
                calls: dict[str, Callable[[str], Awaitable[int]]] = {
                    "openai": lambda m, c=oa: openai_call(c, m, False),
                    "openai stream": lambda m, c=oa: openai_call(c, m, True),
                    "anthropic": lambda m, c=an: anthropic_call(c, m, False),
                    "anthropic stream": lambda m, c=an: anthropic_call(c, m, True),
                }
                tasks += [
                    asyncio.create_task(loop(i, kind, call, results, stop)) for kind, call in calls.items()
                ]
            await asyncio.sleep(1.0)  # steady load first

            for k in range(2, CHANGES + 2):
                answered[k] = await put_config(admin, gateways[0], k, document(k, upstream.url))
                changed_at[k] = time.monotonic()
                await wait_until(
                    lambda k=k: all(s[-1][1] >= k for s in seen),
                    5.0,
                    f"both replicas on version {k} within 5 s",
                )
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # steady load after
    finally:
        for gw in gateways:
            gw.kill()

    seen_lags = [
        max(0.0, next(t for t, v in seen[i] if v >= k) - at) for k, at in changed_at.items() for i in range(2)
    ]
    applied = {
        # 0: applied before the PUT answered (the replica that took it, or a quick listener).
        (gw.name, k): max(0.0, t - answered[k])
        for gw in gateways
        for k, t in applied_at(gw).items()
        if k > 1
    }
    failed = [r for r in results if r.error is not None]
    stale = [
        (r.replica, r.kind, r.version, k)
        for r in results
        if r.version is not None
        for k, at in changed_at.items()
        if r.started > at + MAX_LAG_S and r.version < k
    ]
    print(
        f"\nreplicas: {CHANGES} changes, {len(results)} requests ({len(failed)} failed), both SDKs streamed "
        f"and not, {len(applied)} replica x change pairs:\n"
        f"  applied on each replica after the change returned: "
        f"{spread(list(applied.values()))}\n"
        f"  first answer on the new version as this client saw it: {spread(seen_lags)}"
    )
    assert not failed, [(r.replica, r.kind, r.error) for r in failed[:5]]
    assert len(results) > 100, len(results)
    assert {r.kind.split(" ")[0] for r in results} == {"openai", "anthropic"}
    assert len(applied) == 2 * CHANGES, sorted(applied)
    worst = max(applied, key=applied.__getitem__)
    assert applied[worst] <= MAX_LAG_S, f"{worst[0]} applied version {worst[1]} {applied[worst]:.3f}s late"
    assert not stale, stale[:5]
