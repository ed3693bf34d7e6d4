"""Spend queries for the admin API and budget seeding. They read daily_spend, never the log."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal, Protocol

import orjson
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.db.models import DailySpend
from gateway.limits.money import period_first_day

GroupBy = Literal["day", "model", "key", "tier", "team"]

_GROUP_COLUMNS: Mapping[str, Any] = MappingProxyType(
    {
        "day": DailySpend.day,
        "model": DailySpend.model,
        "key": DailySpend.key_id,
        "tier": DailySpend.tier,
        "team": DailySpend.team_id,
    }
)


class InvalidCursorError(ValueError):
    """The cursor is not one this query handed out (or was made for another group_by)."""


def format_usd(value: Decimal) -> str:
    """Exact, plain notation, no trailing zeros: Decimal('1.2300000000') -> '1.23', 0 -> '0'."""
    return format(value.normalize(), "f") if value else "0"


def _encode_cursor(group_by: str, last: str) -> str:
    raw = orjson.dumps({"g": group_by, "a": last})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, group_by: str) -> str:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after, made_for = data["a"], data["g"]
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidCursorError("invalid cursor") from exc
    if made_for != group_by or not isinstance(after, str):
        raise InvalidCursorError(f"cursor was made for group_by={made_for!r}")
    return after


def _after(cursor: str, group_by: str) -> str | date:
    after = _decode_cursor(cursor, group_by)
    if "\x00" in after:  # PostgreSQL text cannot hold NUL: the driver would fail the query
        raise InvalidCursorError("invalid cursor")
    if group_by != "day":
        return after
    try:
        return date.fromisoformat(after)
    except ValueError:
        raise InvalidCursorError("invalid cursor") from None


def _filters(
    *,
    team_id: str | None,
    key_id: str | None,
    model: str | None,
    start: date | None,
    end: date | None,
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if team_id is not None:
        where.append(DailySpend.team_id == team_id)
    if key_id is not None:
        where.append(DailySpend.key_id == key_id)
    if model is not None:
        where.append(DailySpend.model == model)
    if start is not None:
        where.append(DailySpend.day >= start)
    if end is not None:
        where.append(DailySpend.day <= end)
    return where


async def spend(
    session: AsyncSession,
    *,
    team_id: str | None = None,
    key_id: str | None = None,
    model: str | None = None,
    start: date | None = None,
    end: date | None = None,
    group_by: GroupBy = "day",
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Spend totals grouped by day (ascending), model, key, tier or team, `limit` groups a page.

    `start` and `end` are inclusive UTC days. Rows: {<group_by>: value, "requests", "prompt_tokens",
    "completion_tokens", "cached_tokens" (cache reads), "cache_write_tokens", "errors", "cost_usd" (exact
    decimal string)}; a missing
    key, team or tier reads None. Returns the rows and the cursor for the next page (None at the end).
    Raises InvalidCursorError for a cursor it did not make, ValueError for a bad group_by or limit.
    """
    column = _GROUP_COLUMNS.get(group_by)
    if column is None:
        raise ValueError(f"group_by must be one of {', '.join(_GROUP_COLUMNS)}")
    if not 1 <= limit <= 10_000:
        raise ValueError("limit must be between 1 and 10000")
    where = _filters(team_id=team_id, key_id=key_id, model=model, start=start, end=end)
    if cursor is not None:
        # Keyset: the group column is the sort key and unique per output row.
        where.append(column > _after(cursor, group_by))
    stmt = (
        select(
            column,
            func.sum(DailySpend.requests),
            func.sum(DailySpend.prompt_tokens),
            func.sum(DailySpend.completion_tokens),
            func.sum(DailySpend.cached_tokens),
            func.sum(DailySpend.cache_write_tokens),
            func.sum(DailySpend.errors),
            func.sum(DailySpend.cost_usd),
        )
        .where(*where)
        .group_by(column)
        .order_by(column)
        .limit(limit + 1)
    )
    result = (await session.execute(stmt)).all()
    rows = []
    for value, requests, prompt, completion, cached, written, errors, cost in result[:limit]:
        rows.append(
            {
                group_by: value.isoformat() if isinstance(value, date) else (value or None),
                "requests": int(requests),
                "prompt_tokens": int(prompt),
                "completion_tokens": int(completion),
                "cached_tokens": int(cached),
                "cache_write_tokens": int(written),
                "errors": int(errors),
                "cost_usd": format_usd(cost or Decimal(0)),
            }
        )
    next_cursor = None
    if len(result) > limit:
        last = result[limit - 1][0]
        next_cursor = _encode_cursor(group_by, last.isoformat() if isinstance(last, date) else last)
    return rows, next_cursor


async def period_spend(
    session: AsyncSession,
    *,
    team_id: str | None = None,
    key_id: str | None = None,
    since: date,
) -> Decimal:
    """Total cost from `since` (inclusive UTC day) to now, for a team, a key, or both; for seeding budgets."""
    where = _filters(team_id=team_id, key_id=key_id, model=None, start=since, end=None)
    total = (await session.execute(select(func.sum(DailySpend.cost_usd)).where(*where))).scalar()
    return Decimal(0) if total is None else total


class Unflushed(Protocol):
    async def unflushed_cost(
        self, *, team_id: str | None = None, key_id: str | None = None, since: date
    ) -> Decimal: ...


def durable_spend_reader(
    sessions: async_sessionmaker[AsyncSession], writer: Unflushed
) -> Callable[[str, str], Awaitable[Decimal]]:
    """The limiters' reseed (gateway.limits.Reseed): a budget subject's (`team:<id>`, `key:<id>`)
    spend in a period, from daily_spend plus what this process has not flushed to it yet. Read afresh
    on every call: it runs only when a limiter has no total for the budget."""

    async def read(subject: str, period_start: str) -> Decimal:
        kind, _, ident = subject.partition(":")
        if kind not in ("team", "key") or not ident:
            raise ValueError(f"not a budget subject: {subject!r}")
        where = {"team_id": ident} if kind == "team" else {"key_id": ident}
        since = period_first_day(period_start)
        # Unflushed first, then the database: a record flushed in between counts twice (the budget
        # refuses a little early), never not at all.
        pending = await writer.unflushed_cost(since=since, **where)
        async with sessions() as session:
            durable = await period_spend(session, since=since, **where)
        return durable + pending

    return read
