"""Every figure the dashboard shows, as plain rows: the one module that reads the spend data.

STOPGAP. The views below read request_log directly and aggregate in Python: correct, exact, and slow
on a big log. They are to be swapped for the hourly rollups and histograms (one function at a time;
the rows each returns are the API's shapes, gateway.dashboard.schemas, and must stay as they are):

  totals, spend_series, top        hourly_spend summed over the range's hours
  latency                          hourly_histogram (latency, ttft): percentiles within one bucket
  errors                           hourly_spend rows with an error_type
  routing_mix                      hourly_spend by tier + hourly_histogram (difficulty)
  savings                          hourly_spend.baseline_cost_usd (recorded per request); until then
                                   the baseline is priced here from the live config (see Baseline)

Exact by nature and staying as they are: `budgets` (daily_spend, as the limiter counts budgets),
`request_page` (the explorer lists log rows; keyset on the (team_id, ts) index) and the name lookups.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import orjson
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounting.queries import format_usd, period_spend
from gateway.auth_store import period_since
from gateway.dashboard.params import Bucket, Range
from gateway.db.models import ApiKey, RequestLog, Team
from gateway.pricing import TokenPrice
from providers.base import Usage
from providers.deployment import TIER_RANK

GroupBy = Literal["total", "team", "key", "model", "tier"]
TopBy = Literal["team", "key", "model"]
StatusFilter = Literal["ok", "error", "refusal"]
# error_type of a request the gateway refused before any upstream call (limits, budgets).
REFUSALS = frozenset({"rate_limit_error", "budget_exceeded"})
DIFFICULTY_BUCKETS = 20
_RL = RequestLog


class InvalidCursorError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose requests: a team, a key, a model (the deployment that answered, else the one asked
    for); None is everyone's. Access has been checked before a Scope is made."""

    team_id: str | None = None
    key_id: str | None = None
    model: str | None = None


# -- the stopgap's one read -----------------------------------------------------------------------

_MODEL = func.coalesce(_RL.deployment, _RL.requested_model)


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


@dataclass(slots=True)
class _Row:
    ts: datetime
    team_id: str
    key_id: str
    model: str
    tier: str
    route: str | None
    difficulty: float | None
    status: int
    error_type: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: Decimal | None
    latency_ms: float
    ttft_ms: float | None


async def _rows(session: AsyncSession, scope: Scope, rng: Range) -> list[_Row]:
    stmt = _where(
        select(
            _RL.ts,
            _RL.team_id,
            _RL.key_id,
            _MODEL,
            _RL.tier,
            _RL.route,
            _RL.difficulty,
            _RL.status,
            _RL.error_type,
            _RL.prompt_tokens,
            _RL.completion_tokens,
            _RL.cached_tokens,
            _RL.cost_usd,
            _RL.latency_ms,
            _RL.ttft_ms,
        ),
        scope,
        rng,
    )
    out = []
    for r in (await session.execute(stmt)).all():
        ts = r[0] if r[0].tzinfo else r[0].replace(tzinfo=UTC)
        out.append(_Row(ts, r[1] or "", r[2] or "", r[3], r[4] or "", *r[5:]))
    return out


# -- sums -------------------------------------------------------------------------------------------


class _Sums:
    __slots__ = ("cached", "completion", "cost", "errors", "prompt", "refusals", "requests")

    def __init__(self) -> None:
        self.requests = self.errors = self.refusals = 0
        self.prompt = self.completion = self.cached = 0
        self.cost = Decimal(0)

    def add(self, r: _Row) -> None:
        self.requests += 1
        if r.status >= 400:
            self.errors += 1
            self.refusals += r.error_type in REFUSALS
        self.prompt += r.prompt_tokens
        self.completion += r.completion_tokens
        self.cached += r.cached_tokens
        self.cost += r.cost_usd or 0

    def out(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "cached_tokens": self.cached,
            "cost_usd": format_usd(self.cost),
        }


# -- savings: what the route's strongest candidate would have cost --------------------------------


class Baseline:
    """Prices a request on its route's strongest candidate (highest tier; the dearest of equals).

    STOPGAP: priced with the live config as it is now, not the one the request ran on; the rollups
    record the baseline with each request (request_log.baseline_cost_usd) and replace this. A direct
    request's baseline is its own cost; an unknown cost or price claims no saving (`unpriced`)."""

    def __init__(self, routes: Mapping[str, TokenPrice | None]) -> None:
        self._routes = routes

    @classmethod
    def from_snapshot(cls, snapshot: Any) -> Baseline:
        if snapshot is None:
            return cls({})
        config, prices = snapshot.config, snapshot.prices
        routes: dict[str, TokenPrice | None] = {}
        for name, route in config.routes.items():
            deps = [d for d in config.models if d.name in route.candidates]
            if not deps:
                continue
            top = max(TIER_RANK.get(d.tier, 0) for d in deps)
            priced = [prices.get(d.id) for d in deps if TIER_RANK.get(d.tier, 0) == top]
            known = [p for p in priced if p is not None]
            routes[name] = (
                max(known, key=lambda p: (p.input + p.output, p.output))
                if len(known) == len(priced)
                else None
            )
        return cls(routes)

    def of(self, route: str | None, cost: Decimal | None, usage: Usage) -> Decimal | None:
        """The baseline cost, or None when it is unknown (no saving is then claimed)."""
        if cost is None:
            return None
        if route is None or route not in self._routes:
            return cost if route is None else None
        price = self._routes[route]
        return None if price is None else price.cost(usage)


def _saving(baseline: Baseline, r: _Row) -> tuple[Decimal, Decimal, bool]:
    """(cost, baseline, unpriced) of one request, as the rollup sums them: unpriced adds its cost."""
    cost = r.cost_usd or Decimal(0)
    base = baseline.of(r.route, r.cost_usd, Usage(r.prompt_tokens, r.completion_tokens, r.cached_tokens))
    return (cost, cost, True) if base is None else (cost, base, False)


# -- views ------------------------------------------------------------------------------------------


async def totals(session: AsyncSession, scope: Scope, rng: Range, baseline: Baseline) -> dict[str, Any]:
    """One range's totals: requests, errors, refusals, tokens, cost and savings."""
    sums = _Sums()
    saved = Decimal(0)
    for r in await _rows(session, scope, rng):
        sums.add(r)
        cost, base, _ = _saving(baseline, r)
        saved += base - cost
    return {
        **rng.describe(),
        **sums.out(),
        "refusals": sums.refusals,
        "savings_usd": format_usd(saved),
    }


def _group_of(by: GroupBy) -> Callable[[_Row], str]:
    if by == "total":
        return lambda r: ""
    attr = {"team": "team_id", "key": "key_id", "model": "model", "tier": "tier"}[by]
    return lambda r: getattr(r, attr)


async def spend_series(
    session: AsyncSession, scope: Scope, rng: Range, bucket: Bucket, by: GroupBy
) -> list[dict[str, Any]]:
    """Sums per bucket x group, non-empty cells only, by bucket then group. `group` is the id ('' for
    an absent team, key or tier, and for by=total)."""
    key = _group_of(by)
    cells: dict[tuple[datetime, str], _Sums] = defaultdict(_Sums)
    for r in await _rows(session, scope, rng):
        cells[(rng.bucket_of(r.ts, bucket), key(r))].add(r)
    return [
        {"bucket": rng.label(start, bucket), "ts": int(start.timestamp()), "group": group, **sums.out()}
        for (start, group), sums in sorted(cells.items())
    ]


async def top(session: AsyncSession, scope: Scope, rng: Range, by: TopBy, limit: int) -> list[dict[str, Any]]:
    """The `limit` largest spenders by cost (then requests), with their share of the range's cost."""
    key = _group_of(by)
    groups: dict[str, _Sums] = defaultdict(_Sums)
    whole = Decimal(0)
    for r in await _rows(session, scope, rng):
        groups[key(r)].add(r)
        whole += r.cost_usd or 0
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1].cost, -kv[1].requests, kv[0]))[:limit]
    return [
        {"id": ident, **sums.out(), "share": float(sums.cost / whole) if whole else 0.0}
        for ident, sums in ranked
    ]


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank q-quantile of sorted `values` (the rollup histograms' definition)."""
    if not values:
        return None
    return values[max(0, math.ceil(q * len(values)) - 1)]


async def latency(session: AsyncSession, scope: Scope, rng: Range) -> list[dict[str, Any]]:
    """Latency p50/p95/p99 and TTFT p50/p95 (ms) over successful requests: first all models together
    (model None), then each model by name."""
    lat: dict[str | None, list[float]] = defaultdict(list)
    ttft: dict[str | None, list[float]] = defaultdict(list)
    for r in await _rows(session, scope, rng):
        if r.status >= 400:
            continue
        for model in (None, r.model):
            lat[model].append(r.latency_ms)
            if r.ttft_ms is not None:
                ttft[model].append(r.ttft_ms)
    out = []
    for model in sorted(lat, key=lambda m: (m is not None, m or "")):
        a, b = sorted(lat[model]), sorted(ttft[model])
        out.append(
            {
                "model": model,
                "requests": len(a),
                "latency_p50_ms": nearest_rank(a, 0.50),
                "latency_p95_ms": nearest_rank(a, 0.95),
                "latency_p99_ms": nearest_rank(a, 0.99),
                "ttft_p50_ms": nearest_rank(b, 0.50),
                "ttft_p95_ms": nearest_rank(b, 0.95),
            }
        )
    return out


def error_label(status: int, error_type: str | None) -> str:
    return error_type or f"http_{status}"


async def errors(session: AsyncSession, scope: Scope, rng: Range) -> list[dict[str, Any]]:
    """Failed requests by error type (most first); refusals are the limits' and budgets' 429s."""
    counts: dict[str, int] = defaultdict(int)
    for r in await _rows(session, scope, rng):
        if r.status >= 400:
            counts[error_label(r.status, r.error_type)] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [
        {"error_type": t, "kind": "refusal" if t in REFUSALS else "error", "requests": n} for t, n in ranked
    ]


def difficulty_bucket(d: float) -> int:
    return min(DIFFICULTY_BUCKETS - 1, max(0, int(d * DIFFICULTY_BUCKETS)))


async def routing_mix(session: AsyncSession, scope: Scope, rng: Range) -> list[dict[str, Any]]:
    """Share of requests per tier (by tier rank), then the difficulty distribution of routed requests
    in 20 buckets 0.05 wide ('0.00-0.05' ... '0.95-1.00')."""
    tiers: dict[str, int] = defaultdict(int)
    buckets = [0] * DIFFICULTY_BUCKETS
    for r in await _rows(session, scope, rng):
        tiers[r.tier] += 1
        if r.difficulty is not None:
            buckets[difficulty_bucket(r.difficulty)] += 1
    total, routed = sum(tiers.values()), sum(buckets)
    out: list[dict[str, Any]] = [
        {"dimension": "tier", "value": tier or None, "requests": n, "share": n / total}
        for tier, n in sorted(tiers.items(), key=lambda kv: (TIER_RANK.get(kv[0], 99), kv[0]))
    ]
    width = 1 / DIFFICULTY_BUCKETS
    for i, n in enumerate(buckets):
        out.append(
            {
                "dimension": "difficulty",
                "value": f"{i * width:.2f}-{(i + 1) * width:.2f}",
                "requests": n,
                "share": n / routed if routed else 0.0,
            }
        )
    return out


async def savings(
    session: AsyncSession, scope: Scope, rng: Range, baseline: Baseline
) -> list[dict[str, Any]]:
    """Per route (None: requests sent to a model by name): cost, baseline cost and the difference."""
    acc: dict[str | None, list[Any]] = defaultdict(lambda: [0, Decimal(0), Decimal(0), 0])
    for r in await _rows(session, scope, rng):
        cost, base, unpriced = _saving(baseline, r)
        a = acc[r.route]
        a[0] += 1
        a[1] += cost
        a[2] += base
        a[3] += unpriced
    return [
        {
            "route": route,
            "requests": n,
            "cost_usd": format_usd(cost),
            "baseline_cost_usd": format_usd(base),
            "savings_usd": format_usd(base - cost),
            "unpriced": unpriced,
        }
        for route, (n, cost, base, unpriced) in sorted(
            acc.items(), key=lambda kv: (kv[0] is None, kv[0] or "")
        )
    ]


# -- budgets (exact already: daily_spend is what the limiter counts) -------------------------------


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


async def _budget(
    session: AsyncSession, subject: str, ident: str, limit: Decimal | None, period: str | None, now: datetime
) -> dict[str, Any]:
    first, after = period_bounds(period, now)
    where = {"team_id": ident} if subject == "team" else {"key_id": ident}
    spent = await period_spend(session, since=first, **where)
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


async def budgets(
    session: AsyncSession, team_id: str, key_id: str | None, now: datetime
) -> list[dict[str, Any]]:
    """The team's budget, then each live key's (or just `key_id`'s), spent this period (UTC periods,
    as the limiter counts them; records not flushed yet are not in; no budget: the team's period,
    else all time). On a key, `binding` says which
    budget runs out first for it: 'key', 'team' (also when the key has none), or None (neither has one);
    `effective_remaining_usd` is what it may still spend."""
    team = await session.get(Team, team_id)
    if team is None:
        return []
    team_row = await _budget(session, "team", team.id, team.budget_usd, team.budget_period, now)
    team_row.update(binding="team" if team.budget_usd is not None else None)
    team_row["effective_remaining_usd"] = team_row["remaining_usd"]
    rows = [team_row]
    stmt = (
        select(ApiKey).where(ApiKey.team_id == team_id, ApiKey.revoked.is_(False)).order_by(ApiKey.created_at)
    )
    if key_id is not None:
        stmt = stmt.where(ApiKey.id == key_id)
    team_left = None if team.budget_usd is None else Decimal(team_row["remaining_usd"])
    for key in (await session.execute(stmt.limit(1000))).scalars():
        # A key with no budget of its own is counted over its team's period (what binds it).
        period = key.budget_period if key.budget_usd is not None else team.budget_period
        row = await _budget(session, "key", key.id, key.budget_usd, period, now)
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


# -- the request explorer ---------------------------------------------------------------------------


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


_EXPLORER_COLUMNS = (
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
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "streamed",
    "fallbacks",
)


async def request_page(
    session: AsyncSession,
    scope: Scope,
    rng: Range,
    *,
    status: StatusFilter | int | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, `limit` a page; keyset on (ts, request_id). The log holds no prompt or answer
    text, and none is read. Raises InvalidCursorError for a cursor this did not make."""
    stmt = _where(select(*(getattr(_RL, c) for c in _EXPLORER_COLUMNS)), scope, rng)
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
        stmt = stmt.where(or_(_RL.ts < ts, and_(_RL.ts == ts, _RL.request_id < ident)))
    stmt = stmt.order_by(_RL.ts.desc(), _RL.request_id.desc()).limit(limit + 1)
    result = (await session.execute(stmt)).mappings().all()
    rows = []
    for r in result[:limit]:
        row = dict(r)
        ts = row["ts"] if row["ts"].tzinfo else row["ts"].replace(tzinfo=UTC)
        row["ts"] = ts.astimezone(rng.tz).isoformat()
        row["cost_usd"] = None if row["cost_usd"] is None else format_usd(row["cost_usd"])
        rows.append(row)
    next_cursor = None
    if len(result) > limit:
        last = result[limit - 1]
        ts = last["ts"] if last["ts"].tzinfo else last["ts"].replace(tzinfo=UTC)
        next_cursor = _encode_cursor(ts, last["request_id"])
    return rows, next_cursor


# -- names ------------------------------------------------------------------------------------------


async def team_names(session: AsyncSession, ids: Iterable[str] | None = None) -> dict[str, str]:
    """id -> name of live teams (`ids` None: all, oldest first, 1000 at most)."""
    stmt = select(Team.id, Team.name).where(Team.deleted_at.is_(None))
    if ids is not None:
        wanted = sorted({i for i in ids if i})
        if not wanted:
            return {}
        stmt = stmt.where(Team.id.in_(wanted))
    stmt = stmt.order_by(Team.created_at, Team.id).limit(1000)
    return {i: n for i, n in (await session.execute(stmt)).all()}


async def key_names(session: AsyncSession, ids: Iterable[str]) -> dict[str, str]:
    """id -> name (else the key's display prefix) of these keys, revoked ones included."""
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    stmt = select(ApiKey.id, ApiKey.name, ApiKey.prefix).where(ApiKey.id.in_(wanted))
    return {i: n or f"{p}..." for i, n, p in (await session.execute(stmt)).all()}


async def team_keys(session: AsyncSession, team_id: str | None) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id).limit(1000)
    if team_id is not None:
        stmt = stmt.where(ApiKey.team_id == team_id)
    return list((await session.execute(stmt)).scalars())


async def key_team(session: AsyncSession, key_id: str) -> str | None:
    """The team a key belongs to (None: no such key)."""
    return (await session.execute(select(ApiKey.team_id).where(ApiKey.id == key_id))).scalar()


async def visible_teams(session: AsyncSession, team_id: str | None) -> list[Team]:
    """Live teams, oldest first (1000 at most); just `team_id`'s when given."""
    stmt = select(Team).where(Team.deleted_at.is_(None)).order_by(Team.created_at, Team.id).limit(1000)
    if team_id is not None:
        stmt = stmt.where(Team.id == team_id)
    return list((await session.execute(stmt)).scalars())
