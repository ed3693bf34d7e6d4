"""Stored responses on PostgreSQL and SQLite: read back only by their owner, gone past retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.engine import session_factory
from gateway.db.models import StoredResponse
from gateway.errors import GatewayError
from gateway.responses.store import ResponseStore

RESPONSE = {"id": "resp_1", "object": "response", "output": [{"type": "message", "role": "assistant"}]}
CONTEXT = [{"type": "message", "role": "user", "content": "hi"}]


async def test_owner_reads_its_chain_and_no_one_else_does(engine: AsyncEngine) -> None:
    store = ResponseStore(session_factory(engine), retention_days=30)
    await store.save("key-a", RESPONSE, CONTEXT)
    stored = await store.get("key-a", "resp_1")
    assert stored.history() == [*CONTEXT, *RESPONSE["output"]]
    for owner, rid in (("key-b", "resp_1"), ("key-a", "resp_2"), ("key-a", "x" * 500), ("key-a", "a\x00b")):
        with pytest.raises(GatewayError) as caught:
            await store.get(owner, rid)
        assert caught.value.status == 404
    with pytest.raises(GatewayError):
        await store.delete("key-b", "resp_1")
    await store.delete("key-a", "resp_1")
    with pytest.raises(GatewayError):
        await store.get("key-a", "resp_1")


async def test_any_json_a_client_sends_is_kept_as_sent(engine: AsyncEngine) -> None:
    """PostgreSQL's JSONB refuses a NUL in a string; the store keeps it."""
    store = ResponseStore(session_factory(engine), retention_days=30)
    context = [{"type": "message", "role": "user", "content": "a\x00b \u2028 \U0001f600"}]
    await store.save("key-a", {**RESPONSE, "id": "resp_nul"}, context)
    assert (await store.get("key-a", "resp_nul")).context == context


async def test_retention_hides_then_purges(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    store = ResponseStore(sessions, retention_days=1)
    await store.save("key-a", {**RESPONSE, "id": "resp_old"}, CONTEXT)
    await store.save("key-a", {**RESPONSE, "id": "resp_new"}, CONTEXT)
    async with sessions.begin() as s:
        aged = datetime.now(UTC) - timedelta(days=2)
        await s.execute(update(StoredResponse).where(StoredResponse.id == "resp_old").values(created_at=aged))
    with pytest.raises(GatewayError):  # past retention: not found even before the purge runs
        await store.get("key-a", "resp_old")
    assert await store.purge() == 1
    assert (await store.get("key-a", "resp_new")).response["id"] == "resp_new"
    # 0 keeps everything until deleted.
    assert await ResponseStore(sessions, retention_days=0).purge(datetime.now(UTC) + timedelta(days=999)) == 0


async def test_a_store_that_is_down_is_a_503(engine: AsyncEngine) -> None:
    store = ResponseStore(session_factory(engine), retention_days=30)
    await engine.dispose()
    async with engine.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE stored_responses")
    with pytest.raises(GatewayError) as caught:
        await store.get("key-a", "resp_1")
    assert caught.value.status == 503
    await store.save("key-a", RESPONSE, CONTEXT)  # logged, not raised: the answer still goes out
