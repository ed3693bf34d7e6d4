"""Teams, keys and the audit log read back the same on PostgreSQL and SQLite."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.engine import session_factory
from gateway.db.models import ApiKey, AuditLog, Team


async def test_team_and_key_round_trip(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    expires = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    key = "sk-sy-" + "a" * 40
    async with sessions.begin() as s:
        team = Team(
            name="research",
            budget_usd=Decimal("1234.0000000001"),
            budget_period="monthly",
            rpm=60,
            routing={"auto": {"quality": 0.9}},
        )
        s.add(team)
        await s.flush()
        s.add(
            ApiKey(
                key_hash=hashlib.sha256(key.encode()).hexdigest(),
                prefix=key[:10],
                name="ci",
                team_id=team.id,
                expires_at=expires,
                budget_usd=Decimal("0.5"),
                budget_period="daily",
            )
        )
        s.add(AuditLog(actor="admin", action="team.create", target=team.id, detail={"name": "research"}))
    async with sessions() as s:
        got = (await s.execute(select(Team))).scalar_one()
        assert len(got.id) == 32
        assert got.budget_usd == Decimal("1234.0000000001")
        assert got.routing == {"auto": {"quality": 0.9}}
        assert got.created_at.tzinfo is not None and got.deleted_at is None
        k = (await s.execute(select(ApiKey))).scalar_one()
        assert k.team_id == got.id and k.revoked is False and k.prefix == "sk-sy-aaaa"
        assert k.key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert k.expires_at == expires and k.expires_at.tzinfo == UTC
        assert k.budget_usd == Decimal("0.5")
        audit = (await s.execute(select(AuditLog))).scalar_one()
        assert audit.id >= 1 and audit.detail == {"name": "research"}


async def test_constraints(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with sessions.begin() as s:
        team = Team(name="ops")
        s.add(team)
    # Team names are unique among live teams...
    with pytest.raises(IntegrityError):
        async with sessions.begin() as s:
            s.add(Team(name="ops"))
    # ...and free again once the team is soft-deleted.
    async with sessions.begin() as s:
        await s.execute(update(Team).where(Team.id == team.id).values(deleted_at=datetime.now(UTC)))
        s.add(Team(name="ops"))
    with pytest.raises(IntegrityError):
        async with sessions.begin() as s:
            s.add(Team(name="bad-period", budget_period="fortnightly"))
    with pytest.raises(IntegrityError):
        async with sessions.begin() as s:
            s.add(ApiKey(key_hash="0" * 64, prefix="sk-sy-0000", team_id="no-such-team"))
    async with sessions.begin() as s:
        s.add(ApiKey(key_hash="1" * 64, prefix="sk-sy-1111", team_id=team.id))
    with pytest.raises(IntegrityError):
        async with sessions.begin() as s:
            s.add(ApiKey(key_hash="1" * 64, prefix="sk-sy-1111", team_id=team.id))
