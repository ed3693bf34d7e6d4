"""The quality estimate (`GET /admin/routing/quality`, the dashboard's panel): per route, team and
tier that answered, how often the judge found the cheaper tier's answer better than, as good as or
worse than the strongest candidate's (with 95% Wilson intervals), the clients' feedback, and the cost
the routing saved over sending everything to the strongest candidate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.labels import Feedback, ShadowVerdict
from gateway.db.models import RequestLog
from gateway.quality.judging import OUTCOMES
from gateway.quality.stats import wilson

Key = tuple[str, str | None, str | None]  # route, team, tier


@dataclass
class QualityRow:
    route: str
    team_id: str | None
    tier: str | None
    requests: int = 0
    cost_usd: Decimal = Decimal(0)
    baseline_cost_usd: Decimal = Decimal(0)
    judged: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    shadow_cost_usd: Decimal = Decimal(0)
    feedback_count: int = 0
    feedback_score_sum: float = 0.0

    def to_json(self) -> dict[str, Any]:
        n = sum(self.judged.values())
        rates = {}
        counts = {**self.judged, "not_worse": self.judged["win"] + self.judged["tie"]}
        for outcome, count in counts.items():
            low, high = wilson(count, n)
            rates[outcome] = {"count": count, "rate": count / n if n else None, "low": low, "high": high}
        return {
            "route": self.route,
            "team_id": self.team_id,
            "tier": self.tier,
            "requests": self.requests,
            "cost_usd": str(self.cost_usd),
            "saved_usd": str(self.baseline_cost_usd - self.cost_usd),
            "judged": n,
            **rates,
            "shadow_cost_usd": str(self.shadow_cost_usd),
            "feedback": {
                "count": self.feedback_count,
                "mean_score": self.feedback_score_sum / self.feedback_count if self.feedback_count else None,
            },
        }


async def quality_rows(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    team_id: str | None = None,
    route: str | None = None,
) -> list[QualityRow]:
    """The estimate over [start, end), by route, team and tier that have verdicts or feedback;
    optionally one team's or route's."""
    rows: dict[Key, QualityRow] = {}

    def row(key: Sequence[Any]) -> QualityRow:
        k: Key = (key[0], key[1], key[2])
        return rows.setdefault(k, QualityRow(*k))

    log = RequestLog
    where = [log.kind == "request", log.route.is_not(None), log.ts >= start, log.ts < end, log.status < 400]
    if team_id is not None:
        where.append(log.team_id == team_id)
    if route is not None:
        where.append(log.route == route)
    group = (log.route, log.team_id, log.tier)
    v = ShadowVerdict
    vwhere = [v.ts >= start, v.ts < end]
    if team_id is not None:
        vwhere.append(v.team_id == team_id)
    if route is not None:
        vwhere.append(v.route == route)
    vgroup = (v.route, v.team_id, v.tier, v.outcome)
    verdicts = select(*vgroup, func.count(), func.sum(v.cost_usd)).where(*vwhere).group_by(*vgroup)
    for rt, team, tier, outcome, n, cost in (await session.execute(verdicts)).all():
        r = row((rt, team, tier))
        r.judged[outcome] = r.judged.get(outcome, 0) + n
        r.shadow_cost_usd += cost or Decimal(0)

    f = Feedback
    ratings = (
        select(*group, func.count(), func.sum(f.score))
        .join(log, log.request_id == f.request_id)
        .where(*where)
        .group_by(*group)
    )
    for *key, n, total in (await session.execute(ratings)).all():
        r = row(key)
        r.feedback_count, r.feedback_score_sum = n, float(total or 0)
    if not rows:
        return []
    # Only the routes and teams that have labels get a row; their spend is read through the log's
    # (team_id, ts) index rather than by scanning every routed request of the window.
    teams = {k[1] for k in rows}
    where.append(log.route.in_({k[0] for k in rows}))
    of_teams = log.team_id.in_([t for t in teams if t is not None])
    where.append(or_(of_teams, log.team_id.is_(None)) if None in teams else of_teams)
    priced = and_(log.cost_usd.is_not(None), log.baseline_cost_usd.is_not(None))
    spend = select(
        *group,
        func.count(),
        func.sum(log.cost_usd).filter(priced),
        func.sum(log.baseline_cost_usd).filter(priced),
    )
    for *key, n, cost, baseline in (await session.execute(spend.where(*where).group_by(*group))).all():
        if (key[0], key[1], key[2]) not in rows:
            continue
        r = row(key)
        r.requests, r.cost_usd, r.baseline_cost_usd = n, cost or Decimal(0), baseline or Decimal(0)
    return sorted(rows.values(), key=lambda r: (r.route, r.team_id or "", r.tier or ""))
