"""write_records moves each key's last_used_at up to its newest record, on both backends, never back."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.record import RequestRecord
from gateway.accounting.store import write_records
from gateway.db.engine import session_factory
from gateway.db.models import ApiKey, Team
from tests.gateway.accounting.helpers import BASE_TS, make_record


async def test_last_used_at_follows_the_newest_record(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        session.add(Team(id="t", name="t"))
        await session.flush()
        session.add_all(
            [ApiKey(id=k, key_hash=k * 16, prefix="sk-sy-" + k, team_id="t") for k in ("aaaa", "bbbb")]
        )
    async with sessions() as session:
        updated = (await session.get(ApiKey, "aaaa")).updated_at  # type: ignore[union-attr]

    def rec(i: int, key: str | None, seconds: int) -> RequestRecord:
        return dataclasses.replace(make_record(i), key_id=key, ts=BASE_TS + timedelta(seconds=seconds))

    async with engine.begin() as conn:
        await write_records(conn, [rec(1, "aaaa", 5), rec(2, "aaaa", 9), rec(3, None, 50), rec(4, "zzzz", 1)])
    async with engine.begin() as conn:  # an older batch, replayed late, does not move it back
        await write_records(conn, [rec(5, "aaaa", 2)])

    async with sessions() as session:
        a = await session.get(ApiKey, "aaaa")
        b = await session.get(ApiKey, "bbbb")
    assert a is not None and b is not None
    assert a.last_used_at == BASE_TS + timedelta(seconds=9)
    assert a.updated_at == updated  # usage is not a change to the key
    assert b.last_used_at is None
