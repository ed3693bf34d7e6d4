"""Two `switchyard serve` processes sharing one Redis and one PostgreSQL.

One pair of gateway subprocesses serves the whole module (started once, both with --access-log and
--log-level debug): the key limited to 60 RPM, the team with a $1.00 budget, and at the end the scan
for keys in logs, records and admin responses, which stops the pair first so their logs are complete.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from sqlalchemy import select

from gateway.admin import service
from gateway.admin.schemas import KeyOut, KeyUpdate, TeamOut
from gateway.auth import hash_key
from gateway.db.engine import make_engine, session_factory
from gateway.db.models import ApiKey, Base
from tests.fakes.server import ServerThread
from tests.integration.conftest import (
    ACTOR,
    COMPLETION_TOKENS,
    CREATED_KEYS,
    MASTER_KEY,
    Call,
    GatewayProcess,
    assert_daily_matches,
    chat,
    daily_rows,
    deployment,
    expected_cost,
    new_key,
    wait_rows,
    words,
    write_config,
)

# $0.01 a token either way: a 5-word prompt with max_tokens=3 costs exactly $0.08 at the fake.
BUDGET_PRICE = Decimal(10_000)
BUDGET_PROMPT = "one two three four five"
BUDGET_COST = expected_cost(5, COMPLETION_TOKENS, BUDGET_PRICE, BUDGET_PRICE)
# The denial says what the request would have reserved (gateway.limits.errors.denial_error).
WORST_CASE = re.compile(r"may cost up to \$(\d+(?:\.\d+)?)")


@dataclass
class Pair:
    gateways: list[GatewayProcess]
    workdir: Path

    def url(self, i: int) -> str:
        return self.gateways[i % 2].url


@pytest.fixture(scope="module")
async def pair(
    pg_url: str, redis_url: str, upstream: ServerThread, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pair]:
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


async def fallback_acquires(pair: Pair) -> list[int]:
    """Admissions each gateway made from its per-process limiter (Redis too slow or down)."""
    counts = []
    async with httpx.AsyncClient(timeout=10.0) as c:
        for g in pair.gateways:
            text = (await c.get(g.url + "/metrics")).text
            found = re.search(r"^switchyard_limiter_fallback_acquires_total (\d+)$", text, re.M)
            assert found, "the limiter reports its fallbacks in /metrics"
            counts.append(int(found.group(1)))
    return counts


def client(concurrency: int = 50) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(timeout=30.0, limits=limits)


def error_of(call: Call) -> dict[str, Any]:
    assert isinstance(call.body, dict) and isinstance(call.body.get("error"), dict), call.body
    return call.body["error"]


# --------------------------------------------------------------------------- 60 RPM over two gateways


async def test_rpm_60_across_two_gateways(pair: Pair, pg_url: str) -> None:
    creds = await new_key(pg_url, key={"rpm": 60})
    sem = asyncio.Semaphore(20)

    async def one(c: httpx.AsyncClient, i: int) -> tuple[int, Call]:
        async with sem:
            return i % 2, await chat(
                c, pair.url(i), creds.key, model="priced", content=words(3, f"q{i}-"), stream=i % 5 == 0
            )

    started = time.monotonic()
    async with client() as c:
        results = await asyncio.gather(*(one(c, i) for i in range(200)))
    elapsed = time.monotonic() - started
    calls = [call for _, call in results]

    assert elapsed < 30, f"200 calls took {elapsed:.1f}s: the RPM window would not be the same minute"
    assert not [c.error for c in calls if c.error], "every call was answered"
    ok = [(g, c) for g, c in results if c.status == 200]
    denied = [c for c in calls if c.status == 429]
    fallbacks = await fallback_acquires(pair)
    assert (len(ok), len(denied)) == (60, 140), (
        sorted({c.status for c in calls if c.status}),
        f"per-process (fail-open) admissions per gateway: {fallbacks}",
    )
    assert fallbacks == [0, 0], "every admission went through the shared Redis limiter"
    per_gateway = [sum(1 for g, _ in ok if g == i) for i in (0, 1)]
    assert all(per_gateway), f"both gateways admitted some: {per_gateway}"
    assert all(c.completed for _, c in ok)
    for _, c in ok:
        assert c.headers["x-ratelimit-limit-requests"] == "60"
    for c in denied:
        err = error_of(c)
        assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded", err
        assert int(c.headers["retry-after"]) >= 1
        assert int(c.headers["retry-after-ms"]) >= 1
        assert c.headers["x-ratelimit-limit-requests"] == "60"
        assert c.headers["x-ratelimit-remaining-requests"] == "0"
        assert "x-ratelimit-reset-requests" in c.headers

    # Denied calls are recorded too, as 429s that cost nothing.
    rows = await wait_rows(pg_url, creds.key_id, 200, within_s=15.0)
    assert len(rows) == 200
    assert sorted(r.status for r in rows) == [200] * 60 + [429] * 140
    assert all(r.error_type == "rate_limit_error" and r.cost_usd == 0 for r in rows if r.status == 429)
    assert {r.request_id for r in rows} == {c.request_id for c in calls}
    assert_daily_matches(rows, await daily_rows(pg_url, creds.key_id))
    print(f"rpm: {len(ok)}/200 allowed (per gateway {per_gateway}), 140 denied, in {elapsed:.1f}s")


# --------------------------------------------------------------------------- $1.00 budget over two gateways


async def test_team_budget_never_exceeded_by_more_than_one_request(pair: Pair, pg_url: str) -> None:
    creds = await new_key(pg_url, team={"budget_usd": Decimal("1.00")})
    budget = Decimal("1.00")
    bursts: list[list[Call]] = []
    per_gateway = [0, 0]
    async with client(60) as c:
        # The acceptance case is the first burst; more run the budget down to what is left. A burst
        # with no 200 ends it once a lone call a second later (reservations all settled) is refused too.
        for _ in range(8):
            burst = await asyncio.gather(
                *(
                    chat(
                        c,
                        pair.url(i),
                        creds.key,
                        model="budget",
                        content=BUDGET_PROMPT,
                        max_tokens=3,
                        stream=i % 3 == 0,  # a stream settles when it ends, not when it starts
                    )
                    for i in range(50)
                )
            )
            bursts.append(burst)
            for i, call in enumerate(burst):
                per_gateway[i % 2] += call.status == 200
            if not any(call.status == 200 for call in burst):
                await asyncio.sleep(1.0)
                g = len(bursts) % 2
                probe = await chat(
                    c, pair.url(g), creds.key, model="budget", content=BUDGET_PROMPT, max_tokens=3
                )
                bursts.append([probe])
                per_gateway[g] += probe.status == 200
                if probe.status != 200:
                    break
            await asyncio.sleep(0.3)  # settlements are sent off the request path

    calls = [call for burst in bursts for call in burst]
    assert not [call.error for call in calls if call.error]
    assert await fallback_acquires(pair) == [0, 0], "every admission went through the shared Redis limiter"
    first_ok = sum(1 for call in bursts[0] if call.status == 200)
    assert 0 < first_ok < 50, f"the first burst of 50 ({50 * BUDGET_COST} worst case) was capped: {first_ok}"
    for call in calls:
        if call.status == 200:
            assert call.completed
            cost = call.headers["x-switchyard-cost-usd"]
            assert cost == "pending" if isinstance(call.body, str) else Decimal(cost) == BUDGET_COST
            continue
        assert call.status == 429, (call.status, call.body)
        err = error_of(call)
        assert err["type"] == "budget_exceeded" and err["code"] == "budget_exceeded", err

    rows = await wait_rows(pg_url, creds.key_id, len(calls), within_s=15.0)
    assert len(rows) == len(calls)
    assert all(r.team_id == creds.team_id for r in rows)
    charged = [r.cost_usd for r in rows if r.cost_usd]
    assert len(charged) == sum(1 for call in calls if call.status == 200)
    spent = sum(charged, Decimal(0))
    biggest = max(charged)
    assert set(charged) == {BUDGET_COST}
    assert spent <= budget + biggest, f"team charged ${spent} of ${budget}"
    assert_daily_matches(rows, await daily_rows(pg_url, creds.key_id))
    # And the budget was used, not refused early: what is left is less than one request's reservation.
    last = error_of(bursts[-1][0])["message"]
    match = WORST_CASE.search(last)
    assert match, last
    worst = Decimal(match.group(1))
    assert budget - spent < worst, (spent, worst, last)
    print(
        f"budget: team charged ${spent.normalize()} of ${budget} (max single request ${biggest.normalize()}, "
        f"reservation ${worst}); 200s per burst {[sum(1 for x in b if x.status == 200) for b in bursts]} "
        f"(per gateway {per_gateway}), first burst {first_ok}/50 admitted"
    )


# --------------------------------------------------------------------------- no key anywhere


async def _admin(c: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
    return await c.request(method, url, headers={"authorization": f"Bearer {MASTER_KEY}"}, **kw)


async def _database_text(url: str) -> tuple[str, list[str]]:
    """Every table's rows as text (api_keys without key_hash), and the api_keys.key_hash values."""
    engine = make_engine(url)
    parts: list[str] = []
    try:
        async with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                cols = [
                    col for col in table.columns if not (table.name == "api_keys" and col.name == "key_hash")
                ]
                for row in (await conn.execute(select(*cols))).all():
                    parts.append(f"{table.name}: " + " | ".join(map(str, row)))
            hashes = list((await conn.execute(select(ApiKey.key_hash))).scalars())
    finally:
        await engine.dispose()
    return "\n".join(parts), hashes


def _redis_text(url: str) -> str:
    r = redis.Redis.from_url(url)
    parts: list[str] = []
    try:
        for name in r.scan_iter(count=1000):
            parts.append(name.decode(errors="replace"))
            kind = r.type(name).decode()
            if kind == "string":
                parts.append(str(r.get(name)))
            elif kind == "hash":
                parts.append(str(r.hgetall(name)))
            elif kind == "zset":
                parts.append(str(r.zrange(name, 0, -1, withscores=True)))
            elif kind == "set":
                parts.append(str(r.smembers(name)))
            elif kind == "list":
                parts.append(str(r.lrange(name, 0, -1)))
    finally:
        r.close()
    return "\n".join(parts)


async def test_key_never_appears_after_creation(
    pair: Pair, pg_url: str, redis_url: str, upstream: ServerThread
) -> None:
    creds = await new_key(pg_url, key={"rpm": 4, "name": "leak-check"})
    responses: list[str] = []  # everything a client got back after the key was created

    def keep(resp: httpx.Response | Call) -> None:
        if isinstance(resp, Call):
            responses.append(f"{resp.status} {resp.headers} {resp.body}")
        else:
            responses.append(f"{resp.status_code} {dict(resp.headers)} {resp.text}")

    async with client() as c:
        admin_mounted = (await _admin(c, "GET", pair.url(0) + "/admin/teams")).status_code == 200
        keys = [creds]
        if admin_mounted:
            made = await _admin(c, "POST", pair.url(0) + "/admin/keys", json={"team_id": creds.team_id})
            assert made.status_code == 201, made.text
            key = made.json()["key"]  # the one response allowed to carry it
            CREATED_KEYS.append((pg_url, key))
            keys.append(type(creds)(creds.team_id, made.json()["id"], key))
        for k in keys:
            # Served, streamed, rate limited (rpm 4 for the first), and a near miss that is refused.
            for i in range(6):
                keep(
                    await chat(
                        c, pair.url(i), k.key, model="priced", content=words(2 + i, "leak"), stream=i % 2 == 1
                    )
                )
            keep(await chat(c, pair.url(0), k.key + "x", model="priced", content="wrong key"))
        if admin_mounted:
            base = pair.url(1)
            for method, path, body in (
                ("GET", f"/admin/keys?team_id={creds.team_id}", None),
                ("GET", f"/admin/keys/{creds.key_id}", None),
                ("PATCH", f"/admin/keys/{creds.key_id}", {"name": "renamed"}),
                ("GET", f"/admin/teams/{creds.team_id}", None),
                ("GET", "/admin/teams", None),
                ("GET", f"/admin/spend?key_id={creds.key_id}&group_by=key", None),
                ("POST", f"/admin/keys/{creds.key_id}/revoke", None),
            ):
                resp = await _admin(c, method, base + path, json=body)
                assert resp.status_code == 200, (path, resp.text)
                keep(resp)
            revoked = await chat(c, base, creds.key, model="priced", content="revoked")
            assert revoked.status == 401, revoked.body
            keep(revoked)
            # The other gateway cached the key when it served it; the revocation reaches it via Redis.
            deadline = time.monotonic() + 3.0
            while (
                other := await chat(c, pair.url(0), creds.key, model="priced", content="revoked")
            ).status != 401:
                assert time.monotonic() < deadline, (
                    f"revoked key still served by the other gateway: {other.status}"
                )
                await asyncio.sleep(0.1)
            keep(other)
    # The admin service's own answers (what the API and the CLI print), however the API is mounted.
    engine = make_engine(pg_url)
    try:
        async with session_factory(engine)() as session:
            rows, _ = await service.list_keys(session, team_id=creds.team_id)
            responses.extend(KeyOut.model_validate(r).model_dump_json() for r in rows)
            updated = await service.update_key(session, creds.key_id, KeyUpdate(name="again"), actor=ACTOR)
            responses.append(KeyOut.model_validate(updated).model_dump_json())
            team = await service.get_team(session, creds.team_id)
            responses.append(TeamOut.model_validate(team).model_dump_json())
    finally:
        await engine.dispose()

    # Stop the pair: shutdown lines are logged and the writers have flushed.
    codes = await asyncio.gather(*(g.stop(30.0) for g in pair.gateways))
    logs = {g.name: g.output() for g in pair.gateways}
    for name, text in logs.items():
        assert '"POST /v1/chat/completions HTTP/1.1" 200' in text, f"{name}: access log is on"
        assert " DEBUG " in text or "DEBUG:" in text, f"{name}: debug logging is on"
    assert all(code in (0, -15) for code in codes), codes
    await wait_rows(pg_url, creds.key_id, 6, within_s=5.0)

    db_text, stored_hashes = await _database_text(pg_url)
    redis_text = _redis_text(redis_url)
    spool_text = "\n".join(
        p.read_text(errors="replace")
        for g in pair.gateways
        if g.spool_dir.exists()
        for p in g.spool_dir.rglob("*")
        if p.is_file()
    )
    upstream_text = "\n".join(
        f"{r.headers} {orjson.dumps(r.body).decode() if r.body is not None else ''}"
        for r in upstream.app.state.requests
    )
    assert len(CREATED_KEYS) >= 3
    places = {
        **{f"log of {name}": text for name, text in logs.items()},
        "database (every table; api_keys without key_hash)": db_text,
        "redis": redis_text,
        "spool files": spool_text,
        "requests sent upstream": upstream_text,
        "responses after creation": "\n".join(responses),
    }
    leaks = []
    for db, key in CREATED_KEYS:
        digest = hash_key(key)
        if db == pg_url:
            assert digest in stored_hashes, "the key's hash is stored in api_keys.key_hash"
        for where, text in places.items():
            if key in text:
                leaks.append(f"key {key[:10]}... in {where}")
            if digest in text:
                leaks.append(f"sha256 of key {key[:10]}... in {where}")
    assert not leaks, leaks
    assert MASTER_KEY not in "\n".join(logs.values()), "the master key is not logged either"
    print(
        f"leak scan: {len(CREATED_KEYS)} keys, {sum(len(t) for t in logs.values())} bytes of gateway logs, "
        f"{len(db_text)} of database rows, {len(responses)} responses; admin API mounted: {admin_mounted}"
    )
