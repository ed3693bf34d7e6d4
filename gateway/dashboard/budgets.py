"""Budget burn of a team and its keys, counted as the limiter counts budgets: cost per UTC day over UTC
periods (records not flushed yet are not in). One read for the team, one per distinct period start
for all of its keys together (grouped by key), not one per key."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounting.queries import format_usd
from gateway.auth_store import period_since
from gateway.db.models import ApiKey, DailyKeyTotals, DailySpend, DailyTeamTotals, Team

# The keys a team's budget table lists at most (newest keys past it are left out).
MAX_KEYS = 1000


def period_bounds(period: str | None, now: datetime) -> tuple[date, date | None]:
    """[first UTC day, first day after) of the budget period holding `now`; None: no end (total)."""
    first = period_since(period, now)
    if period == "daily":
        return first, first + timedelta(days=1)
    if period == "weekly":
        return first, first + timedelta(days=7)
    if period == "monthly":
        nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return first, nxt
    return first, None


def _projected(spent: Decimal, first: date, after: date | None, now: datetime) -> Decimal | None:
    """Spend at the period's end if it goes on at this period's average rate so far."""
    if after is None:
        return None
    start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(after, datetime.min.time(), tzinfo=UTC)
    elapsed = Decimal((now - start).total_seconds())
    if elapsed <= 0:
        return spent
    return (spent * Decimal((end - start).total_seconds()) / elapsed).quantize(Decimal("0.0000000001"))


def _row(
    subject: str,
    ident: str,
    limit: Decimal | None,
    period: str | None,
    spent: Decimal,
    now: datetime,
) -> dict[str, Any]:
    first, after = period_bounds(period, now)
    projected = _projected(spent, first, after, now)
    return {
        "subject": subject,
        "id": ident,
        "period": period or "total",
        "period_start": first.isoformat(),
        "period_end": None if after is None else after.isoformat(),
        "limit_usd": None if limit is None else format_usd(limit),
        "spent_usd": format_usd(spent),
        "remaining_usd": None if limit is None else format_usd(max(limit - spent, Decimal(0))),
        "projected_usd": None if projected is None else format_usd(projected),
    }


async def _spent(
    session: AsyncSession,
    team_id: str,
    since: date,
    first: date | None,
    key_ids: Iterable[str] | None = None,
) -> dict[str, Decimal]:
    """Cost from `since` (inclusive UTC day) on: the team's ({"": cost}), or each of `key_ids`' (one
    grouped read for them all). The daily rollups hold each day's cost as daily_spend does, in far
    fewer rows (a key a day, not a key and model); daily_spend answers the days up to the first the
    rollups hold (`first`), that one included (history written before they existed, and that day's
    part of it)."""
    wanted = None if key_ids is None else sorted(set(key_ids))
    reads = []
    if first is None or since <= first:
        old = DailySpend
        stmt = select(old.key_id if wanted is not None else literal(""), func.sum(old.cost_usd)).where(
            old.team_id == team_id, old.day >= since
        )
        reads.append(stmt.where(old.day <= first) if first is not None else stmt)
    if first is not None:
        new: Any = DailyKeyTotals if wanted is not None else DailyTeamTotals
        on = max(since, first + timedelta(days=1))
        reads.append(
            select(new.key_id if wanted is not None else literal(""), func.sum(new.cost_usd)).where(
                new.team_id == team_id, new.day >= on
            )
        )
    out: dict[str, Decimal] = {}
    for stmt in reads:
        if wanted is not None:
            stmt = stmt.where(stmt.selected_columns[0].in_(wanted)).group_by(stmt.selected_columns[0])
        for ident, cost in (await session.execute(stmt)).all():
            out[ident] = out.get(ident, Decimal(0)) + (cost or Decimal(0))
    return out


async def budgets(
    session: AsyncSession, team_id: str, key_id: str | None, now: datetime
) -> list[dict[str, Any]]:
    """The team's budget, then each live key's (or just `key_id`'s), spent this period (UTC periods,
    as the limiter counts them; no budget: the team's period, else all time). On a key, `binding`
    says which budget runs out first for it: 'key', 'team' (also when the key has none), or None
    (neither has one); `effective_remaining_usd` is what it may still spend."""
    team = await session.get(Team, team_id)
    if team is None:
        return []
    first = (await session.execute(select(func.min(DailyTeamTotals.day)))).scalar()
    since = period_since(team.budget_period, now)
    spent = (await _spent(session, team.id, since, first)).get("", Decimal(0))
    team_row = _row("team", team.id, team.budget_usd, team.budget_period, spent, now)
    team_row.update(binding="team" if team.budget_usd is not None else None)
    team_row["effective_remaining_usd"] = team_row["remaining_usd"]
    stmt = (
        select(ApiKey).where(ApiKey.team_id == team_id, ApiKey.revoked.is_(False)).order_by(ApiKey.created_at)
    )
    if key_id is not None:
        stmt = stmt.where(ApiKey.id == key_id)
    keys = list((await session.execute(stmt.limit(MAX_KEYS))).scalars())
    # A key with no budget of its own is counted over its team's period (what binds it).
    periods = {k.id: k.budget_period if k.budget_usd is not None else team.budget_period for k in keys}
    spent_by_key: dict[str, Decimal] = {}
    for start in {period_since(p, now) for p in periods.values()}:
        ids = [k for k, p in periods.items() if period_since(p, now) == start]
        spent_by_key.update(await _spent(session, team_id, start, first, ids))
    team_left = None if team.budget_usd is None else Decimal(team_row["remaining_usd"])
    rows = [team_row]
    for key in keys:
        row = _row("key", key.id, key.budget_usd, periods[key.id], spent_by_key.get(key.id, Decimal(0)), now)
        key_left = None if key.budget_usd is None else Decimal(row["remaining_usd"])
        if key_left is None and team_left is None:
            binding, left = None, None
        elif key_left is None or (team_left is not None and team_left < key_left):
            binding, left = "team", team_left
        else:
            binding, left = "key", key_left
        row.update(binding=binding, effective_remaining_usd=None if left is None else format_usd(left))
        rows.append(row)
    return rows
