"""A small, exact data set for the dashboard tests: two teams, three keys, a route over two priced
models, and 60 request records spread over three UTC days around midnight, so a time-zone switch moves
requests between days. Expected figures are computed here from the records, independently of the
gateway's code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from gateway.accounting.histogram import bucket_of
from gateway.accounting.record import RequestRecord
from gateway.accounting.store import write_records
from gateway.admin import service
from gateway.admin.schemas import KeyCreate, TeamCreate
from gateway.db.engine import make_engine, session_factory

MASTER = "sk-master-dashboard"
MTOK = Decimal(1_000_000)
# input, output, cached input: USD per million tokens.
PRICES = {
    "small-a": (Decimal(1), Decimal(2), Decimal("0.5")),
    "large-b": (Decimal(10), Decimal(30), Decimal(5)),
}
TIERS = {"small-a": "small", "large-b": "large"}
CONFIG: dict[str, Any] = {
    "models": [
        {
            "name": name,
            "provider": "openai_compatible",
            "model": name,
            "api_base": "http://127.0.0.1:9/v1",
            "tier": TIERS[name],
            "price": {
                "input_per_mtok": float(i),
                "output_per_mtok": float(o),
                "cached_input_per_mtok": float(c),
            },
        }
        for name, (i, o, c) in PRICES.items()
    ],
    "routes": {"auto": {"candidates": ["small-a", "large-b"]}},
}
N = 60


def price(model: str, prompt: int, completion: int, cached: int) -> Decimal:
    i, o, c = PRICES[model]
    return ((prompt - cached) * i + cached * c + completion * o) / MTOK


@dataclass
class Seeded:
    first_day: date  # the first UTC day with records; they span three
    teams: dict[str, str]  # name -> id
    keys: dict[str, str]  # name -> id
    secrets: dict[str, str]  # name -> the key itself (for signing in)
    records: list[RequestRecord]
    baselines: dict[str, Decimal] = field(default_factory=dict)  # request id -> baseline cost

    def of(self, team: str | None = None, key: str | None = None) -> list[RequestRecord]:
        return [
            r
            for r in self.records
            if (team is None or r.team_id == self.teams[team]) and (key is None or r.key_id == self.keys[key])
        ]


def make_records(
    first_day: date, teams: dict[str, str], keys: dict[str, str]
) -> tuple[list[RequestRecord], dict]:
    base = datetime.combine(first_day, time(20, 0), tzinfo=UTC)
    records, baselines = [], {}
    for i in range(N):
        team = "alpha" if i % 3 != 2 else "beta"
        key = ("a1" if i % 2 == 0 else "a2") if team == "alpha" else "b1"
        routed = i % 4 != 3
        refused = i % 13 == 0
        failed = not refused and i % 11 == 0
        deployment = None if refused else ("large-b" if not routed or i % 5 == 0 else "small-a")
        prompt, completion, cached = (0, 0, 0) if refused else (100 + 7 * i, 20 + 3 * i, (i % 4) * 10)
        if refused or deployment is None:
            cost: Decimal | None = Decimal(0)
        else:
            cost = None if i % 17 == 0 else price(deployment, prompt, completion, cached)
        latency = 100.5 + (i * 37) % 900
        record = RequestRecord(
            request_id=f"req-{i:03d}",
            ts=base + timedelta(minutes=47 * i),
            team_id=teams[team],
            key_id=keys[key],
            requested_model="auto" if routed else "large-b",
            route="auto" if routed else None,
            deployment=deployment,
            provider=None if deployment is None else "openai_compatible",
            tier=None if deployment is None else TIERS[deployment],
            difficulty=round((i * 0.13) % 1, 4) if routed and not refused else None,
            status=429 if refused else 502 if failed else 200,
            error_type="budget_exceeded" if refused else "upstream_error" if failed else None,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached,
            cache_write_5m_tokens=0 if refused else (i % 3) * 5,
            cache_write_1h_tokens=0 if refused else (i % 5) * 2,
            cost_usd=cost,
            latency_ms=latency,
            ttft_ms=latency / 4 if i % 2 == 0 else None,
            streamed=i % 2 == 0,
            fallbacks=0,
        )
        # The strongest candidate of "auto" is large-b; a direct request's baseline is its own cost.
        if cost is not None:
            baselines[record.request_id] = (
                price("large-b", prompt, completion, cached) if routed and not refused else cost
            )
        record.baseline_cost_usd = baselines.get(record.request_id)
        records.append(record)
    return records, baselines


async def seed(url: str, first_day: date) -> Seeded:
    """Teams, keys and records into the migrated database at `url` (records by the spend writer's
    own batch write, so daily_spend and any rollups hold them too)."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    try:
        teams: dict[str, str] = {}
        keys: dict[str, str] = {}
        secrets: dict[str, str] = {}
        async with sessions() as session:
            for name, budget in (("alpha", Decimal(1000)), ("beta", None)):
                team = await service.create_team(
                    session, TeamCreate(name=name, budget_usd=budget), actor="test"
                )
                teams[name] = team.id
            for name, team, budget in (
                ("a1", "alpha", Decimal("0.01")),
                ("a2", "alpha", None),
                ("b1", "beta", None),
            ):
                new = await service.create_key(
                    session, KeyCreate(team_id=teams[team], name=name, budget_usd=budget), actor="test"
                )
                keys[name], secrets[name] = new.row.id, new.key
        records, baselines = make_records(first_day, teams, keys)
        async with engine.begin() as conn:
            await write_records(conn, records)
    finally:
        await engine.dispose()
    return Seeded(first_day, teams, keys, secrets, records, baselines)


# -- expected figures --------------------------------------------------------------------------------


def usd(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def total_cost(records: list[RequestRecord]) -> Decimal:
    return sum((r.cost_usd or Decimal(0) for r in records), Decimal(0))


def savings(seeded: Seeded, records: list[RequestRecord]) -> Decimal:
    return sum(
        (seeded.baselines[r.request_id] - r.cost_usd for r in records if r.request_id in seeded.baselines),
        Decimal(0),
    )


def per_local_day(records: list[RequestRecord], tz: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        day = r.ts.astimezone(ZoneInfo(tz)).date().isoformat()
        out[day] = out.get(day, 0) + 1
    return out


def p95_latency(records: list[RequestRecord]) -> float:
    values = sorted(r.latency_ms for r in records if r.status < 400)
    return values[max(0, math.ceil(0.95 * len(values)) - 1)]


def within_one_bucket(shown: float, exact: float) -> bool:
    """A percentile from the rollups' histograms: the middle of the bucket the exact value is in."""
    return bucket_of(shown) == bucket_of(exact)


def savings_by_model(seeded: Seeded, records: list[RequestRecord]) -> dict[str, str]:
    """Model that answered (else the name asked for) -> savings, as the savings table lists them."""
    out: dict[str, Decimal] = {}
    for r in records:
        model = r.deployment or r.requested_model
        saved = seeded.baselines[r.request_id] - r.cost_usd if r.request_id in seeded.baselines else 0
        out[model] = out.get(model, Decimal(0)) + saved
    return {model: usd(v) for model, v in out.items()}
