"""`/admin`: teams, keys, budgets and limits, and spend reports. Master key only.

Routes are thin: the service (gateway.admin.service) does the work and commits; a route then drops
the affected entries from the auth cache (on every replica, through KeyCache), so a revoked key or a
lowered limit takes effect at once rather than when the cache entry expires.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.accounting.queries import GroupBy, InvalidCursorError, spend
from gateway.admin import service
from gateway.admin.schemas import (
    KeyCreate,
    KeyCreated,
    KeyOut,
    KeyPage,
    KeyUpdate,
    SpendPage,
    SpendRow,
    TeamCreate,
    TeamOut,
    TeamPage,
    TeamUpdate,
)
from gateway.api.openapi_schemas import ADMIN_ERRORS
from gateway.auth import KeyCache
from gateway.errors import GatewayError, bad_request, error_body
from gateway.live.validate import team_routing_errors
from routing.overrides import TeamRouting

ACTOR = "master"
# What a 503 asks a client to wait before trying again while the database is unreachable.
DB_RETRY_AFTER_S = 5

log = logging.getLogger("switchyard.admin")

# auto_error=False: the check below decides, so a missing key is an OpenAI-style 401, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <master key>")
_api_key = APIKeyHeader(name="x-api-key", auto_error=False, description="The master key")


async def require_master(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> None:
    expected: bytes | None = getattr(request.app.state, "master_key", None)
    if expected is None:
        # Without a master key the gateway has no notion of an administrator: refuse rather than
        # hand the admin API to anyone who can reach the port.
        raise GatewayError(
            403, "admin API needs SWITCHYARD_MASTER_KEY", type="permission_error", code="admin_disabled"
        )
    presented = bearer.credentials if bearer is not None else api_key
    if not presented:
        raise GatewayError(
            401,
            "missing master key: send Authorization: Bearer <master key>",
            type="authentication_error",
            code="invalid_api_key",
        )
    if not hmac.compare_digest(presented.encode(), expected):
        raise GatewayError(401, "invalid master key", type="authentication_error", code="invalid_api_key")


async def reject_nul(request: Request) -> None:
    """PostgreSQL text cannot hold NUL: an id or filter carrying one is the client's error (400), not
    the driver's (500). Bodies are checked by their schemas (gateway.admin.schemas.no_nul)."""
    for where, values in (("path", request.path_params), ("query", request.query_params)):
        for name, value in values.items():
            if "\x00" in value:
                raise bad_request(f"{name} must not contain NUL characters ({where})", param=name)


def _database_down() -> GatewayError:
    return GatewayError(
        503,
        "the database is unavailable; retry later",
        type="service_unavailable",
        code="database_unavailable",
        headers={"retry-after": str(DB_RETRY_AFTER_S)},
    )


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] | None = getattr(request.app.state, "sessions", None)
    if sessions is None:
        raise GatewayError(503, "admin API needs a database", type="api_error")
    try:
        async with sessions() as session:
            yield session
    except (OperationalError, InterfaceError, OSError, TimeoutError) as exc:
        # Connection refused, reset or timed out: the database is down, not the request wrong.
        log.warning("admin call failed, database unreachable: %s", type(exc).__name__)
        raise _database_down() from None
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("admin call failed, database connection lost")
        raise _database_down() from None


async def _invalidate(request: Request, *, key_id: str | None = None, team_id: str | None = None) -> None:
    cache: KeyCache | None = getattr(request.app.state, "key_cache", None)
    if cache is not None:
        await cache.invalidate(key_id=key_id, team_id=team_id)


# scope="function": the session closes before the answer is sent, so a database failure met while
# closing it can still become the 503 (after the response has started it could only cut the connection).
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Rows a page")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_master), Depends(reject_nul)],
    responses=ADMIN_ERRORS,
)


class DetailedError(GatewayError):
    """A GatewayError whose error object carries more fields (`errors`, `current_version`)."""

    def __init__(
        self, status: int, message: str, *, code: str, type: str = "invalid_request_error", **more: Any
    ) -> None:
        super().__init__(status, message, type=type, code=code, param=more.pop("param", None))
        self.more = more

    def response(self, headers: dict[str, str] | None = None, anthropic: bool = False) -> Response:
        body = orjson.loads(error_body(self.status, self.message, self.type, self.code, self.param, False))
        body["error"].update(self.more)
        return Response(
            orjson.dumps(body),
            status_code=self.status,
            media_type="application/json",
            headers={**(headers or {}), **self.headers},
        )


def rejected(
    errors: list[dict[str, str]], code: str = "invalid_config", what: str = "config"
) -> DetailedError:
    """400 listing every problem: the message names them all, `errors` has them one by one."""
    listed = "; ".join(f"{e['loc']}: {e['message']}" if e["loc"] else e["message"] for e in errors)
    message = listed if len(errors) == 1 else f"invalid {what} ({len(errors)} errors): {listed}"
    return DetailedError(
        400, message, code=code, errors=errors, param=errors[0]["loc"] or None if errors else None
    )


def _check_routing(request: Request, routing: TeamRouting | None) -> None:
    """A team's overrides must make sense for the running config (gateway.live.validate)."""
    live = getattr(request.app.state, "live", None)
    if routing is None or live is None:
        return
    errors = team_routing_errors(routing, live.current.config)
    if errors:
        raise rejected(errors, "invalid_routing", "routing")


# -- teams ----------------------------------------------------------------------------------------


@router.post("/teams", status_code=201, response_model=TeamOut, summary="Create a team")
async def create_team(body: TeamCreate, session: Session, request: Request) -> TeamOut:
    _check_routing(request, body.routing)
    return TeamOut.model_validate(await service.create_team(session, body, actor=ACTOR))


@router.get("/teams", response_model=TeamPage, summary="List teams, oldest first")
async def list_teams(
    session: Session, limit: Limit = 100, cursor: Cursor = None, include_deleted: bool = False
) -> TeamPage:
    rows, next_cursor = await service.list_teams(
        session, limit=limit, cursor=cursor, include_deleted=include_deleted
    )
    return TeamPage(data=[TeamOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/teams/{team_id}", response_model=TeamOut, summary="Get a team")
async def get_team(team_id: str, session: Session) -> TeamOut:
    return TeamOut.model_validate(await service.get_team(session, team_id))


@router.patch("/teams/{team_id}", response_model=TeamOut, summary="Change a team (null clears a field)")
async def update_team(team_id: str, body: TeamUpdate, session: Session, request: Request) -> TeamOut:
    _check_routing(request, body.routing)
    team = await service.update_team(session, team_id, body, actor=ACTOR)
    await _invalidate(request, team_id=team.id)
    return TeamOut.model_validate(team)


@router.delete("/teams/{team_id}", response_model=TeamOut, summary="Delete a team and revoke its keys")
async def delete_team(team_id: str, session: Session, request: Request) -> TeamOut:
    team = await service.delete_team(session, team_id, actor=ACTOR)
    await _invalidate(request, team_id=team.id)
    return TeamOut.model_validate(team)


# -- keys -----------------------------------------------------------------------------------------


@router.post(
    "/keys",
    status_code=201,
    response_model=KeyCreated,
    summary="Create a key (the response is the only time it is shown)",
)
async def create_key(body: KeyCreate, session: Session, response: Response) -> KeyCreated:
    new = await service.create_key(session, body, actor=ACTOR)
    # The one response that carries a key: keep it out of any cache between here and the client.
    response.headers["cache-control"] = "no-store"
    return KeyCreated(**KeyOut.model_validate(new.row).model_dump(), key=new.key)


@router.get("/keys", response_model=KeyPage, summary="List keys, oldest first")
async def list_keys(
    session: Session,
    team_id: str | None = None,
    revoked: bool | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> KeyPage:
    rows, next_cursor = await service.list_keys(
        session, team_id=team_id, revoked=revoked, limit=limit, cursor=cursor
    )
    return KeyPage(data=[KeyOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/keys/{key_id}", response_model=KeyOut, summary="Get a key (its prefix, never the key)")
async def get_key(key_id: str, session: Session) -> KeyOut:
    return KeyOut.model_validate(await service.get_key(session, key_id))


@router.patch("/keys/{key_id}", response_model=KeyOut, summary="Change a key (null clears a field)")
async def update_key(key_id: str, body: KeyUpdate, session: Session, request: Request) -> KeyOut:
    row = await service.update_key(session, key_id, body, actor=ACTOR)
    await _invalidate(request, key_id=row.id)
    return KeyOut.model_validate(row)


@router.post("/keys/{key_id}/revoke", response_model=KeyOut, summary="Revoke a key, effective at once")
async def revoke_key(key_id: str, session: Session, request: Request) -> KeyOut:
    row = await service.revoke_key(session, key_id, actor=ACTOR)
    await _invalidate(request, key_id=row.id)
    return KeyOut.model_validate(row)


# -- spend ----------------------------------------------------------------------------------------


@router.get(
    "/spend",
    response_model=SpendPage,
    response_model_exclude_unset=True,
    summary="Spend totals by day, model, key, tier or team",
)
async def get_spend(
    session: Session,
    team_id: str | None = None,
    key_id: str | None = None,
    model: str | None = None,
    start: Annotated[date | None, Query(description="First UTC day, inclusive")] = None,
    end: Annotated[date | None, Query(description="Last UTC day, inclusive")] = None,
    group_by: GroupBy = "day",
    limit: Limit = 100,
    cursor: Cursor = None,
) -> SpendPage:
    if start is not None and end is not None and start > end:
        raise bad_request("start is after end", param="start")
    try:
        rows, next_cursor = await spend(
            session,
            team_id=team_id,
            key_id=key_id,
            model=model,
            start=start,
            end=end,
            group_by=group_by,
            limit=limit,
            cursor=cursor,
        )
    except InvalidCursorError as exc:
        raise bad_request(str(exc), param="cursor") from exc
    # Built from only the keys each row has, so exclude_unset shows just the group_by column.
    return SpendPage(rows=[SpendRow.model_validate(r) for r in rows], next_cursor=next_cursor)
