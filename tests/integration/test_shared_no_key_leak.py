"""No virtual key anywhere after its creation: the scan of the `pair` gateways' logs, the database,
Redis, spool files, upstream requests and admin responses for every key the session made.

It stops the pair first so their logs are complete, so it runs after test_shared_limits (this file's
name sorts after that one's: pytest runs the files of a directory in name order).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import redis
from sqlalchemy import select

from gateway.admin import service
from gateway.admin.schemas import KeyOut, KeyUpdate, TeamOut
from gateway.auth import hash_key
from gateway.db.engine import make_engine, session_factory
from gateway.db.models import ApiKey, Base
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY
from tests.integration.harness import ACTOR, CREATED_KEYS, Call, chat, new_key, wait_rows, words
from tests.integration.shared_pair import Pair, client


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
