"""config_versions on both backends: seeding, appending against a version, history."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.engine import session_factory
from gateway.db.models import AuditLog
from gateway.live.store import ConfigStore, StaleVersion, document_hash

DOC = {"models": [{"name": "m", "provider": "openai", "model": "gpt-4o-mini"}]}


async def test_seed_once_then_append_against_the_current_version(engine: AsyncEngine) -> None:
    store = ConfigStore(session_factory(engine))
    assert await store.current_version() is None
    first = await store.seed(DOC, "file:switchyard.yaml")
    assert (first.version, first.document, first.hash) == (1, DOC, document_hash(DOC))
    assert (await store.seed({"models": []}, "other")).version == 1  # seeded already: kept
    changed = {**DOC, "routes": {"auto": {"candidates": ["m"]}}}
    second = await store.append(changed, "admin", "add a route", expected=1, detail={"diff": ["routes"]})
    assert second.version == 2 and await store.current_version() == 2
    with pytest.raises(StaleVersion) as stale:
        await store.append(DOC, "admin", expected=1)
    assert stale.value.current == 2
    assert [v.version for v in await store.history()] == [2, 1]
    assert [v.version for v in await store.history(before=2)] == [1]
    assert (await store.get(1)).document == DOC  # type: ignore[union-attr]
    assert await store.get(9) is None
    async with session_factory(engine)() as session:
        rows = (await session.scalars(select(AuditLog).order_by(AuditLog.id))).all()
    assert [(r.action, r.target) for r in rows] == [("config.seed", "config:1"), ("config.apply", "config:2")]
    assert rows[1].detail == {"version": 2, "diff": ["routes"]}


async def test_two_writers_on_one_version_one_wins(engine: AsyncEngine) -> None:
    store = ConfigStore(session_factory(engine))
    await store.seed(DOC, "seed")
    results = await asyncio.gather(
        *(store.append({**DOC, "n": i}, "admin", expected=1) for i in range(4)), return_exceptions=True
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, StaleVersion) for r in results if isinstance(r, Exception))
    assert await store.current_version() == 2
