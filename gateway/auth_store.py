"""What a virtual key grants (`Principal`), read from the database in one transaction.

A key's row, its team's row and, when either carries a budget, the spend already recorded this period
(the limiter's budget seeds) are read in one session: one pool checkout and one transaction a cache
miss, where a second session for the spend used to cost another of each.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.accounting.queries import period_spend
from gateway.db.models import ApiKey, Team
from routing.overrides import TeamRouting

log = logging.getLogger("switchyard.auth")


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["master", "key", "anonymous"]
    key_id: str | None = None
    team_id: str | None = None
    key_rpm: int | None = None
    key_tpm: int | None = None
    team_rpm: int | None = None
    team_tpm: int | None = None
    key_budget_usd: Decimal | None = None
    key_budget_period: str | None = None
    team_budget_usd: Decimal | None = None
    team_budget_period: str | None = None
    team_routing: TeamRouting | None = None
    expires_at: datetime | None = None
    # Durable spend this period when the key was loaded: seeds the limiter's budget counters.
    team_spent_usd: Decimal | None = None
    key_spent_usd: Decimal | None = None
    # Measuring routing (gateway.quality): the team's opt-in prompt capture, and its monthly cap on
    # shadow and judge calls (None: its requests are not shadowed).
    capture_prompts: bool = False
    capture_retention_days: int | None = None
    shadow_budget_usd: Decimal | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def now_utc() -> datetime:
    return datetime.now(UTC)


def period_since(period: str | None, now: datetime) -> date:
    today = now.astimezone(UTC).date()
    if period == "daily":
        return today
    if period == "weekly":
        return today - timedelta(days=today.weekday())
    if period == "monthly":
        return today.replace(day=1)
    return date(1970, 1, 1)


def legacy_routing(routing: Any) -> Any:
    """Rows written before the schema may name a routed name at the top level (`{"auto": {...}}`),
    which the planner then applied to that name: read them as `{"routes": {"auto": {...}}}`."""
    if not isinstance(routing, dict):
        return routing
    known = set(TeamRouting.model_fields)
    named = {k: v for k, v in routing.items() if k not in known and isinstance(v, dict)}
    if not named or "routes" in routing:
        return routing
    return {**{k: v for k, v in routing.items() if k not in named}, "routes": named}


def stored_routing(team: Team) -> TeamRouting | None:
    """The team's routing overrides; a row written before they were checked may hold anything, and
    such a one is ignored (the team routes as if it had none) rather than failing its requests."""
    if team.routing is None:
        return None
    try:
        return TeamRouting.model_validate(legacy_routing(team.routing))
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'routing'}: {e['msg']}" for e in exc.errors())
        log.warning("team %s: stored routing override ignored, it is invalid (%s)", team.id, where)
        return None


async def load_principal(
    sessions: async_sessionmaker[AsyncSession], digest: str, now: datetime
) -> Principal | None:
    """The live key whose SHA-256 is `digest` with its team's settings and spend; None if there is none."""
    async with sessions() as session, session.begin():
        row = (
            await session.execute(
                select(ApiKey, Team).join(Team, Team.id == ApiKey.team_id).where(ApiKey.key_hash == digest)
            )
        ).first()
        if row is None:
            return None
        key, team = row
        if key.revoked or team.deleted_at is not None:
            return None
        # The stored hash matched by index; compare again in constant time before trusting it.
        if not hmac.compare_digest(key.key_hash, digest):
            return None
        team_spent = key_spent = None
        if team.budget_usd is not None:
            since = period_since(team.budget_period, now)
            team_spent = await period_spend(session, team_id=team.id, since=since)
        if key.budget_usd is not None:
            since = period_since(key.budget_period, now)
            key_spent = await period_spend(session, key_id=key.id, since=since)
    return Principal(
        "key",
        key_id=key.id,
        team_id=team.id,
        key_rpm=key.rpm,
        key_tpm=key.tpm,
        team_rpm=team.rpm,
        team_tpm=team.tpm,
        key_budget_usd=key.budget_usd,
        key_budget_period=key.budget_period,
        team_budget_usd=team.budget_usd,
        team_budget_period=team.budget_period,
        team_routing=stored_routing(team),
        expires_at=key.expires_at,
        team_spent_usd=team_spent,
        key_spent_usd=key_spent,
        capture_prompts=team.capture_prompts,
        capture_retention_days=team.capture_retention_days,
        shadow_budget_usd=team.shadow_budget_usd,
    )
