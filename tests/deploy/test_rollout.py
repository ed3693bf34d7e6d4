"""The rollout rehearsal: deploy/local-cluster.sh puts nginx in front of three `switchyard serve`
replicas on one PostgreSQL and one Redis (then a Redis Cluster), and restarts them one at a time
while a bounded load runs through nginx: the openai and anthropic SDKs, streamed and not, against a
fake upstream that takes a moment to answer (so each drain has calls in flight).

What must hold, as a Kubernetes rolling update would need it:
  failures   no client call fails (no transport error, no 5xx; the SDKs retry nothing: max_retries=0)
  records    every answered call (its x-switchyard-request-id) has exactly one request_log row, and
             there is no row for anything else
  rpm        a key with an RPM limit of RPM, sent 2 x RPM calls within one window while replicas come
             and go, gets exactly RPM answers 200 and the rest 429 `rate_limit_exceeded`
  spend      the spend recorded in request_log, and the key's budget total in Redis, both equal the
             sum of what each answered call costs (the per-call cost read from the x-switchyard-cost-usd
             header of the non-streamed calls; a stream's header says `pending`)
The figures are printed (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import redis

from gateway.db.migrate import upgrade
from tests.fakes import openai_upstream
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY, REPO_ROOT, free_port
from tests.integration.harness import deployment, log_rows, new_key, pg_url_for, write_config
from tests.redis_cluster import RedisTarget
from tests.stores import create_pg_database, drop_pg_database

SCRIPT = REPO_ROOT / "deploy" / "local-cluster.sh"
UPSTREAM_DELAY_S = 0.3
CONCURRENCY = 6
RPM = 30
PRICE = 1000.0  # $ per million tokens, either way: every call costs a few cents of a thousandth

# Three gateways started, then restarted one by one: about a minute on two idle cores.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("nginx") is None, reason="no nginx (apt-get install -y nginx)"),
]


class Delayed:
    """The fake upstream, answering each call UPSTREAM_DELAY_S late (headers and all)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(UPSTREAM_DELAY_S)
        await self.app(scope, receive, send)


@dataclass
class Rehearsal:
    url: str
    pg_url: str
    redis: RedisTarget
    env: dict[str, str]

    def run(self, command: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), command],
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )


@pytest.fixture(scope="module")
async def pg_url() -> AsyncIterator[str]:
    name = await create_pg_database("rollout")
    try:
        url = pg_url_for(name)
        await upgrade(url)
        yield url
    finally:
        await drop_pg_database(name)


@pytest.fixture(scope="module", params=["single", "cluster"])
def rehearsal(
    request: pytest.FixtureRequest, pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rehearsal]:
    """The replicas on the suite's Redis, then on the session's Redis Cluster."""
    if request.param == "single":
        target = RedisTarget(request.getfixturevalue("suite_redis_url"), False)
    else:
        target = RedisTarget(request.getfixturevalue("redis_cluster_url"), True)
    workdir: Path = tmp_path_factory.mktemp(f"rollout-{request.param}")
    with ServerThread(Delayed(openai_upstream.create_app())) as upstream:
        models = [deployment("rehearsal", upstream.url, PRICE, PRICE)]
        config = write_config(workdir / "switchyard.yaml", models)
        nginx_port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
        env = {
            **base,
            "PYTHONPATH": str(REPO_ROOT),
            "SY_LC_DIR": str(workdir / "cluster"),
            "SY_LC_NGINX_PORT": str(nginx_port),
            "SY_LC_PORTS": " ".join(str(free_port()) for _ in range(3)),
            "SY_LC_SERVE": f"{sys.executable} -m gateway.cli",
            "SWITCHYARD_CONFIG": str(config),
            "SWITCHYARD_DATABASE_URL": pg_url,
            "SWITCHYARD_REDIS_URL": target.url,
            "SWITCHYARD_REDIS_CLUSTER": str(target.cluster).lower(),
            "SWITCHYARD_MASTER_KEY": MASTER_KEY,
            "SWITCHYARD_LOCAL_MODEL": "false",
            "SWITCHYARD_SPEND_FLUSH_INTERVAL_S": "0.2",
            # A shared 2-core host stalls now and then: past this the limiter fails open (by design),
            # which would admit past the shared RPM limit. This test is about the rollout.
            "SWITCHYARD_REDIS_TIMEOUT_S": "2.0",
        }
        r = Rehearsal(f"http://127.0.0.1:{nginx_port}", pg_url, target, env)
        try:
            started = r.run("start")
            assert started.returncode == 0, started.stderr + _logs(workdir)
            yield r
        finally:
            stopped = r.run("stop")
            assert stopped.returncode == 0, stopped.stderr


def _logs(workdir: Path) -> str:
    logs = workdir.glob("cluster/replica-*/serve.log")
    return "\n".join(p.read_text(errors="replace")[-2000:] for p in logs)


@dataclass
class Tally:
    # request id -> (sdk, stream, status)
    answered: dict[str, tuple[str, bool, int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    unit_cost: dict[str, set[Decimal]] = field(default_factory=dict)  # sdk -> costs seen in headers

    def answer(self, sdk: str, stream: bool, status: int, headers: Any) -> None:
        rid = headers.get("x-switchyard-request-id")
        if rid is None:
            self.failures.append(f"{sdk} stream={stream}: {status} without a request id")
            return
        assert rid not in self.answered, rid
        self.answered[rid] = (sdk, stream, status)
        cost = headers.get("x-switchyard-cost-usd")
        if status == 200 and not stream and cost not in (None, "pending"):
            self.unit_cost.setdefault(sdk, set()).add(Decimal(cost))


MESSAGES = [{"role": "user", "content": "rehearse the rollout please"}]


async def _openai_call(client: openai.AsyncOpenAI, tally: Tally, stream: bool) -> None:
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model="rehearsal",
            messages=MESSAGES,
            max_tokens=16,
            stream=stream,  # type: ignore[arg-type]
        )
        if stream:
            chunks = [c async for c in raw.parse()]  # type: ignore[union-attr]
            assert chunks, "a stream with no chunk"
        else:
            assert raw.parse().choices[0].message.content  # type: ignore[union-attr]
        tally.answer("openai", stream, raw.status_code, raw.headers)
    except openai.RateLimitError as exc:
        tally.answer("openai", stream, 429, exc.response.headers)
        assert isinstance(exc.body, dict) and exc.body.get("code") == "rate_limit_exceeded", exc.body
    except (openai.APIError, AssertionError) as exc:
        tally.failures.append(f"openai stream={stream}: {type(exc).__name__}: {exc}")


async def _anthropic_call(client: anthropic.AsyncAnthropic, tally: Tally, stream: bool) -> None:
    try:
        raw = await client.messages.with_raw_response.create(
            model="rehearsal",
            messages=MESSAGES,
            max_tokens=16,
            stream=stream,  # type: ignore[arg-type]
        )
        if stream:
            events = [e.type async for e in await raw.parse()]  # type: ignore[union-attr]
            assert events[-1] == "message_stop", events
        else:
            assert (await raw.parse()).content  # type: ignore[union-attr]
        tally.answer("anthropic", stream, raw.status_code, raw.headers)
    except (anthropic.APIError, AssertionError) as exc:
        tally.failures.append(f"anthropic stream={stream}: {type(exc).__name__}: {exc}")


async def _load(url: str, key: str, tally: Tally, done: asyncio.Event) -> int:
    """CONCURRENCY workers, each cycling through the four kinds of call until `done`."""
    oa = openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30.0)
    an = anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0, timeout=30.0)
    sent = 0

    async def worker(w: int) -> None:
        nonlocal sent
        i = w
        while not done.is_set():
            stream = i % 2 == 1
            if (i // 2) % 2 == 0:
                await _openai_call(oa, tally, stream)
            else:
                await _anthropic_call(an, tally, stream)
            sent += 1
            i += 1

    async with oa, an:
        await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    return sent


async def _rpm_calls(url: str, key: str, tally: Tally, spread_s: float) -> None:
    """2 x RPM calls, evenly spread over `spread_s` (well within the 60 s window)."""
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30.0) as oa:
        calls = []
        for i in range(2 * RPM):
            calls.append(asyncio.create_task(_openai_call(oa, tally, stream=i % 3 == 0)))
            await asyncio.sleep(spread_s / (2 * RPM))
        await asyncio.gather(*calls)


def _redis_spent(target: RedisTarget, key_id: str) -> Decimal:
    """The key's budget total as the limiter keeps it (under a hash tag on a cluster)."""
    if target.cluster:
        client: redis.Redis | redis.RedisCluster = redis.RedisCluster.from_url(target.url)
        key = f"{{sy}}:b:key:{key_id}:total"
    else:
        client, key = redis.Redis.from_url(target.url), f"sy:b:key:{key_id}:total"
    try:
        raw = client.hget(key, "spent")
    finally:
        client.close()
    return Decimal(int(raw or 0)) / 10**9


async def test_rolling_restart_loses_nothing(rehearsal: Rehearsal) -> None:
    load_key = await new_key(rehearsal.pg_url, key={"budget_usd": Decimal(1000)})
    rpm_key = await new_key(rehearsal.pg_url, key={"rpm": RPM})
    load, limited = Tally(), Tally()
    done = asyncio.Event()
    t0 = time.monotonic()
    load_task = asyncio.create_task(_load(rehearsal.url, load_key.key, load, done))
    rpm_task = asyncio.create_task(_rpm_calls(rehearsal.url, rpm_key.key, limited, spread_s=20.0))
    await asyncio.sleep(1.0)  # the load is running before the first replica goes
    rollout = await asyncio.to_thread(rehearsal.run, "rollout")
    await asyncio.sleep(1.0)  # and still after the last is back
    done.set()
    sent = await load_task
    await rpm_task
    elapsed = time.monotonic() - t0
    assert rollout.returncode == 0, rollout.stderr

    # Records land within the spend writer's flush interval.
    deadline = time.monotonic() + 20
    while True:
        load_rows = await log_rows(rehearsal.pg_url, load_key.key_id)
        rpm_rows = await log_rows(rehearsal.pg_url, rpm_key.key_id)
        if len(load_rows) >= len(load.answered) and len(rpm_rows) >= len(limited.answered):
            break
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)

    statuses = Counter(s for _, _, s in limited.answered.values())
    kinds = Counter(f"{sdk}{' stream' if stream else ''}" for sdk, stream, _ in load.answered.values())
    unit = {sdk: costs for sdk, costs in load.unit_cost.items()}
    expected_spend = sum((next(iter(unit[sdk])) for sdk, _, _ in load.answered.values()), Decimal(0))
    recorded_spend = sum((r.cost_usd or Decimal(0) for r in load_rows), Decimal(0))
    redis_spend = _redis_spent(rehearsal.redis, load_key.key_id)
    print(
        f"\nrollout rehearsal ({'Redis Cluster' if rehearsal.redis.cluster else 'one Redis'}): "
        f"{elapsed:.1f}s\n{rollout.stderr.strip()}\n"
        f"  load: {sent} calls ({dict(kinds)}), {len(load.failures) + len(limited.failures)} failed\n"
        f"  records: {len(load_rows)} rows for {len(load.answered)} answered load calls, "
        f"{len(rpm_rows)} rows for {len(limited.answered)} answered RPM-key calls\n"
        f"  rpm {RPM}: {statuses[200]} x 200, {statuses[429]} x 429 of {2 * RPM}\n"
        f"  spend: client ${expected_spend}, request_log ${recorded_spend}, Redis budget ${redis_spend}"
    )

    assert not load.failures and not limited.failures, (load.failures + limited.failures)[:5]
    assert sent == len(load.answered) and all(s == 200 for _, _, s in load.answered.values())
    for tally, rows in ((load, load_rows), (limited, rpm_rows)):
        ids = [r.request_id for r in rows]
        assert len(ids) == len(set(ids)), "a call recorded twice"
        assert set(ids) == set(tally.answered), "records and answered calls differ"
    assert statuses == {200: RPM, 429: RPM}, statuses
    assert all(len(costs) == 1 for costs in unit.values()) and set(unit) == {"openai", "anthropic"}, unit
    assert recorded_spend == expected_spend
    assert redis_spend == expected_spend
