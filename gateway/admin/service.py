"""Teams and keys: the database side of the admin API and of `switchyard teams|keys`.

Each mutation commits itself together with its audit_log row, so a caller that invalidates caches
afterwards does so only for a change that is durable. Failures are GatewayErrors (404, 409, 400) that
the HTTP layer sends as they are and the CLI prints. Keys exist in plaintext only in create_key's
return value: the table holds their SHA-256, and neither audit rows nor log lines carry either.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import orjson
from sqlalchemy import and_, false, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounting.queries import format_usd
from gateway.admin.schemas import KeyCreate, KeyUpdate, TeamCreate, TeamUpdate
from gateway.auth import display_prefix, generate_key, hash_key
from gateway.db.models import ApiKey, AuditLog, Team, new_id
from gateway.db.types import utcnow
from gateway.errors import GatewayError, bad_request

log = logging.getLogger("switchyard.admin")

Row = TypeVar("Row", Team, ApiKey)


class NotFoundError(GatewayError):
    def __init__(self, what: str, param: str | None = None) -> None:
        # The id is not echoed: someone pasting a key where an id belongs must not see it come back.
        super().__init__(
            404, f"{what} not found", type="not_found_error", code=f"{what}_not_found", param=param
        )


class ConflictError(GatewayError):
    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(409, message, code=code, param=param)


@dataclass(frozen=True, slots=True)
class NewKey:
    key: str  # the plaintext key: hand it to the caller once, then let it go
    row: ApiKey


# -- teams ----------------------------------------------------------------------------------------


async def create_team(session: AsyncSession, data: TeamCreate, *, actor: str) -> Team:
    await _name_free(session, data.name)
    team = Team(id=new_id(), **data.model_dump())
    _budget_default(team)
    session.add(team)
    _audit(session, actor, "team.create", team.id, {"name": team.name, **_limits_of(team)})
    await _commit_team(session, team.name)
    log.info("team %s (%s) created by %s", team.id, team.name, actor)
    return team


async def get_team(
    session: AsyncSession, team_id: str, *, include_deleted: bool = False, param: str | None = None
) -> Team:
    team = await session.get(Team, team_id)
    if team is None or (team.deleted_at is not None and not include_deleted):
        raise NotFoundError("team", param)
    return team


async def team_by_name(session: AsyncSession, name: str) -> Team:
    team = (
        await session.execute(select(Team).where(Team.name == name.strip(), Team.deleted_at.is_(None)))
    ).scalar_one_or_none()
    if team is None:
        raise NotFoundError("team", "team")
    return team


async def list_teams(
    session: AsyncSession, *, limit: int = 100, cursor: str | None = None, include_deleted: bool = False
) -> tuple[list[Team], str | None]:
    where = [] if include_deleted else [Team.deleted_at.is_(None)]
    return await _page(session, Team, "teams", where, limit, cursor)


async def update_team(session: AsyncSession, team_id: str, data: TeamUpdate, *, actor: str) -> Team:
    team = await get_team(session, team_id)
    changes = data.changes()
    if "name" in changes and changes["name"] != team.name:
        await _name_free(session, changes["name"], exclude=team.id)
    diff = _apply(team, changes)
    diff.update(_budget_default(team))
    if diff:
        _audit(session, actor, "team.update", team.id, diff)
        await _commit_team(session, team.name)
        log.info("team %s updated by %s: %s", team.id, actor, ", ".join(diff))
    return team


async def delete_team(session: AsyncSession, team_id: str, *, actor: str) -> Team:
    """Soft delete (the name becomes free); the team's live keys are revoked with it."""
    team = await get_team(session, team_id)
    now = utcnow()
    team.deleted_at = now
    revoked = await session.execute(
        update(ApiKey)
        .where(ApiKey.team_id == team.id, ApiKey.revoked.is_(false()))
        .values(revoked=True, revoked_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    count: int = revoked.rowcount  # type: ignore[attr-defined]
    _audit(session, actor, "team.delete", team.id, {"name": team.name, "keys_revoked": count})
    await session.commit()
    log.info("team %s (%s) deleted by %s, %d keys revoked", team.id, team.name, actor, count)
    return team


# -- keys -----------------------------------------------------------------------------------------


async def create_key(session: AsyncSession, data: KeyCreate, *, actor: str) -> NewKey:
    team = await get_team(session, data.team_id, param="team_id")
    if data.expires_at is not None and data.expires_at <= utcnow():
        raise bad_request("expires_at is in the past", param="expires_at")
    key = generate_key()
    row = ApiKey(id=new_id(), key_hash=hash_key(key), prefix=display_prefix(key), **data.model_dump())
    _budget_default(row)
    session.add(row)
    _audit(session, actor, "key.create", row.id, {"team_id": team.id, "name": row.name, **_limits_of(row)})
    try:
        await session.commit()
    except IntegrityError:
        # The team was deleted since the check above. `from None`: the driver's message lists the
        # statement's parameters, the key's hash among them, and must not reach a log.
        await session.rollback()
        raise NotFoundError("team", "team_id") from None
    log.info("key %s created for team %s by %s", row.id, team.id, actor)
    return NewKey(key, row)


async def get_key(session: AsyncSession, key_id: str) -> ApiKey:
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise NotFoundError("key")
    return row


async def list_keys(
    session: AsyncSession,
    *,
    team_id: str | None = None,
    revoked: bool | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[ApiKey], str | None]:
    where = []
    if team_id is not None:
        where.append(ApiKey.team_id == team_id)
    if revoked is not None:
        where.append(ApiKey.revoked.is_(revoked))
    return await _page(session, ApiKey, "keys", where, limit, cursor)


async def update_key(session: AsyncSession, key_id: str, data: KeyUpdate, *, actor: str) -> ApiKey:
    row = await get_key(session, key_id)
    diff = _apply(row, data.changes())
    diff.update(_budget_default(row))
    if diff:
        _audit(session, actor, "key.update", row.id, diff)
        await session.commit()
        log.info("key %s updated by %s: %s", row.id, actor, ", ".join(diff))
    return row


async def revoke_key(session: AsyncSession, key_id: str, *, actor: str) -> ApiKey:
    """Revoke for good; revoking a revoked key changes nothing (and keeps the first revoked_at)."""
    row = await get_key(session, key_id)
    if not row.revoked:
        row.revoked = True
        row.revoked_at = utcnow()
        _audit(session, actor, "key.revoke", row.id, {"team_id": row.team_id})
        await session.commit()
        log.info("key %s revoked by %s", row.id, actor)
    return row


# -- helpers --------------------------------------------------------------------------------------


def _audit(session: AsyncSession, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
    session.add(AuditLog(ts=utcnow(), actor=actor, action=action, target=target, detail=detail))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_usd(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


_LIMITS = ("budget_usd", "budget_period", "rpm", "tpm", "expires_at")


def _limits_of(row: Team | ApiKey) -> dict[str, Any]:
    return {f: _jsonable(getattr(row, f)) for f in _LIMITS if getattr(row, f, None) is not None}


def _apply(row: Team | ApiKey, changes: dict[str, Any]) -> dict[str, Any]:
    """Set the changed fields; returns {field: [old, new]} for those whose value really changed."""
    diff: dict[str, Any] = {}
    for name, new in changes.items():
        old = getattr(row, name)
        if old != new:
            setattr(row, name, new)
            diff[name] = [_jsonable(old), _jsonable(new)]
    return diff


def _budget_default(row: Team | ApiKey) -> dict[str, Any]:
    # Spelled out rather than left null, so what an admin reads back is what the limiter enforces.
    if row.budget_usd is not None and row.budget_period is None:
        row.budget_period = "total"
        return {"budget_period": [None, "total"]}
    return {}


async def _name_free(session: AsyncSession, name: str, *, exclude: str | None = None) -> None:
    stmt = select(Team.id).where(Team.name == name, Team.deleted_at.is_(None))
    if exclude is not None:
        stmt = stmt.where(Team.id != exclude)
    if (await session.execute(stmt.limit(1))).first() is not None:
        raise _name_taken(name)


def _name_taken(name: str) -> ConflictError:
    return ConflictError(f"a team named {name!r} already exists", "team_name_taken", "name")


async def _commit_team(session: AsyncSession, name: str) -> None:
    try:
        await session.commit()
    except IntegrityError as exc:
        # Lost a race for the name with a concurrent create (the unique index is the real guard).
        await session.rollback()
        raise _name_taken(name) from exc


async def _page(
    session: AsyncSession, model: type[Row], kind: str, where: list[Any], limit: int, cursor: str | None
) -> tuple[list[Row], str | None]:
    """Keyset pages in creation order: stable while rows are added, unlike offsets."""
    if not 1 <= limit <= 1000:
        raise bad_request("limit must be between 1 and 1000", param="limit")
    stmt = select(model).where(*where)
    if cursor is not None:
        created, ident = _decode_cursor(cursor, kind)
        stmt = stmt.where(
            or_(model.created_at > created, and_(model.created_at == created, model.id > ident))
        )
    rows = list((await session.execute(stmt.order_by(model.created_at, model.id).limit(limit + 1))).scalars())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], _encode_cursor(kind, last.created_at, last.id)


def _encode_cursor(kind: str, created: datetime, ident: str) -> str:
    raw = orjson.dumps({"k": kind, "t": created.isoformat(), "i": ident})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, kind: str) -> tuple[datetime, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        created, ident = datetime.fromisoformat(data["t"]), data["i"]
        ok = (
            data["k"] == kind
            and isinstance(ident, str)
            and "\x00" not in ident
            and created.tzinfo is not None
        )
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise bad_request("invalid cursor", param="cursor")
    return created, ident
