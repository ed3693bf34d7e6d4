"""Each team's monthly shadow budget: what its shadow and judge calls cost this UTC month, read from
the request log once per team and month, then counted here as this process makes them.

Several replicas each count their own calls on top of what the log held when they first looked, so
together they may pass a budget by what their calls in flight cost, never by more.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.db.models import RequestLog

SHADOW_KINDS = ("shadow", "judge")


def month_start(now: datetime) -> date:
    return now.astimezone(UTC).date().replace(day=1)


class ShadowBudget:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        # (team, month) -> spent; only the current month's entries are kept.
        self._spent: dict[tuple[str | None, date], Decimal] = {}

    async def spent(self, team_id: str | None, now: datetime) -> Decimal:
        month = month_start(now)
        key = (team_id, month)
        if key not in self._spent:
            for old in [k for k in self._spent if k[1] != month]:
                del self._spent[old]
            self._spent[key] = await self._logged(team_id, month)
        return self._spent[key]

    async def allows(self, team_id: str | None, cap: Decimal | None, now: datetime) -> bool:
        """Whether the team may shadow another request: no cap, or this month's spend below it."""
        return cap is None or await self.spent(team_id, now) < cap

    def add(self, team_id: str | None, cost: Decimal | None, now: datetime) -> None:
        key = (team_id, month_start(now))
        if cost and key in self._spent:
            self._spent[key] += cost

    async def _logged(self, team_id: str | None, month: date) -> Decimal:
        since = datetime(month.year, month.month, 1, tzinfo=UTC)
        team = RequestLog.team_id.is_(None) if team_id is None else RequestLog.team_id == team_id
        stmt = select(func.sum(RequestLog.cost_usd)).where(
            team, RequestLog.kind.in_(SHADOW_KINDS), RequestLog.ts >= since
        )
        async with self._sessions() as session:
            total = (await session.execute(stmt)).scalar()
        return Decimal(0) if total is None else total
