"""Names and ownership: teams and keys by id, for labels and access checks (never a key itself)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.models import ApiKey, Team

# Lists of teams or keys are cut here (a dashboard picker, not an export).
MAX_ROWS = 1000


async def team_names(session: AsyncSession, ids: Iterable[str] | None = None) -> dict[str, str]:
    """id -> name of live teams (`ids` None: all, oldest first, MAX_ROWS at most)."""
    stmt = select(Team.id, Team.name).where(Team.deleted_at.is_(None))
    if ids is not None:
        wanted = sorted({i for i in ids if i})
        if not wanted:
            return {}
        stmt = stmt.where(Team.id.in_(wanted))
    stmt = stmt.order_by(Team.created_at, Team.id).limit(MAX_ROWS)
    return {i: n for i, n in (await session.execute(stmt)).all()}


async def key_names(session: AsyncSession, ids: Iterable[str]) -> dict[str, str]:
    """id -> name (else the key's display prefix) of these keys, revoked ones included."""
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    stmt = select(ApiKey.id, ApiKey.name, ApiKey.prefix).where(ApiKey.id.in_(wanted))
    return {i: n or f"{p}..." for i, n, p in (await session.execute(stmt)).all()}


async def team_keys(session: AsyncSession, team_id: str | None) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id).limit(MAX_ROWS)
    if team_id is not None:
        stmt = stmt.where(ApiKey.team_id == team_id)
    return list((await session.execute(stmt)).scalars())


async def key_team(session: AsyncSession, key_id: str) -> str | None:
    """The team a key belongs to (None: no such key)."""
    return (await session.execute(select(ApiKey.team_id).where(ApiKey.id == key_id))).scalar()


async def visible_teams(session: AsyncSession, team_id: str | None) -> list[Team]:
    """Live teams, oldest first (MAX_ROWS at most); just `team_id`'s when given."""
    stmt = select(Team).where(Team.deleted_at.is_(None)).order_by(Team.created_at, Team.id).limit(MAX_ROWS)
    if team_id is not None:
        stmt = stmt.where(Team.id == team_id)
    return list((await session.execute(stmt)).scalars())
