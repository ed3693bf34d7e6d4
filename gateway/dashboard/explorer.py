"""The request explorer: a team's logged requests, newest first, a keyset page at a time (the one
dashboard view that reads request_log rows; never any prompt or answer text, which the log does not
hold). The index (team_id, ts, request_id) (migration 0004) serves the order and the cursor."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounting.queries import format_usd
from gateway.dashboard.figures import REFUSALS, Scope
from gateway.dashboard.params import Range
from gateway.db.models import RequestLog

StatusFilter = Literal["ok", "error", "refusal"]
_RL = RequestLog
_MODEL = func.coalesce(_RL.deployment, _RL.requested_model)
COLUMNS = (
    "request_id",
    "ts",
    "team_id",
    "key_id",
    "requested_model",
    "route",
    "deployment",
    "tier",
    "difficulty",
    "status",
    "error_type",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "streamed",
    "fallbacks",
)


class InvalidCursorError(ValueError):
    pass


def _encode_cursor(ts: datetime, request_id: str) -> str:
    raw = orjson.dumps({"t": ts.astimezone(UTC).isoformat(), "i": request_id})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ts, ident = datetime.fromisoformat(data["t"]), data["i"]
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidCursorError("invalid cursor") from exc
    if not isinstance(ident, str) or "\x00" in ident or ts.tzinfo is None:
        raise InvalidCursorError("invalid cursor")
    return ts.astimezone(UTC), ident


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _where(stmt: Select[Any], scope: Scope, rng: Range) -> Select[Any]:
    first, after = rng.bounds()
    stmt = stmt.where(_RL.ts >= first, _RL.ts < after)
    if scope.team_id is not None:
        stmt = stmt.where(_RL.team_id == scope.team_id)
    if scope.key_id is not None:
        stmt = stmt.where(_RL.key_id == scope.key_id)
    if scope.model is not None:
        stmt = stmt.where(scope.model == _MODEL)
    return stmt


async def request_page(
    session: AsyncSession,
    scope: Scope,
    rng: Range,
    *,
    status: StatusFilter | int | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, `limit` a page; keyset on (ts, request_id). Raises InvalidCursorError for a
    cursor this did not make."""
    stmt = _where(select(*(getattr(_RL, c) for c in COLUMNS)), scope, rng)
    if status == "ok":
        stmt = stmt.where(_RL.status < 400)
    elif status == "error":
        stmt = stmt.where(_RL.status >= 400)
    elif status == "refusal":
        stmt = stmt.where(_RL.error_type.in_(sorted(REFUSALS)))
    elif isinstance(status, int):
        stmt = stmt.where(_RL.status == status)
    if cursor is not None:
        ts, ident = _decode_cursor(cursor)
        # (ts, request_id) < the cursor's, written so that `ts <= cursor` is a bound an index on
        # (team_id, ts, ...) seeks to on both databases: a deep page does not walk the pages before it.
        stmt = stmt.where(_RL.ts <= ts, or_(_RL.ts < ts, _RL.request_id < ident))
    stmt = stmt.order_by(_RL.ts.desc(), _RL.request_id.desc()).limit(limit + 1)
    result = (await session.execute(stmt)).mappings().all()
    rows = []
    for r in result[:limit]:
        row = dict(r)
        row["ts"] = _aware(row["ts"]).astimezone(rng.tz).isoformat()
        row["cost_usd"] = None if row["cost_usd"] is None else format_usd(row["cost_usd"])
        rows.append(row)
    next_cursor = None
    if len(result) > limit:
        last = result[limit - 1]
        next_cursor = _encode_cursor(_aware(last["ts"]), last["request_id"])
    return rows, next_cursor
