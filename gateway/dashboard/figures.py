"""The dashboard's charts and tables, from the hourly rollups (gateway.accounting.rollups) only: no
request_log scan. Each function returns the rows of one /dashboard/api answer (gateway.dashboard.schemas).

A reporting range (whole local days in an IANA zone) reads as the UTC hours that cover it
(rollups.window): exact local days in every zone with a whole-hour offset. Percentiles come from the
latency/TTFT histograms: the middle of the ~10%-wide bucket the exact nearest-rank value falls in.
Savings are the recorded per-request baselines (request_log.baseline_cost_usd) summed by the rollups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounting import rollups
from gateway.accounting.histogram import DIFFICULTY_BUCKETS, difficulty_bounds, percentile
from gateway.accounting.queries import format_usd
from gateway.dashboard.params import Bucket, Range, local_midnight
from providers.deployment import TIER_RANK

GroupBy = Literal["total", "team", "key", "model", "tier"]
TopBy = Literal["team", "key", "model"]
# error_type of a request the gateway refused before any upstream call (limits, budgets).
REFUSALS = frozenset({"rate_limit_error", "budget_exceeded"})
OTHER = rollups.OTHER


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose requests: a team, a key, a model (the deployment that answered, else the one asked
    for); None is everyone's. Access has been checked before a Scope is made."""

    team_id: str | None = None
    key_id: str | None = None
    model: str | None = None

    def filters(self) -> dict[str, str | None]:
        return {"team_id": self.team_id, "key_id": self.key_id, "model": self.model}


def window(rng: Range) -> rollups.Window:
    """The range's UTC hours: from the first day's local midnight to the one after the last day."""
    return rollups.window(rng.start, rng.end + timedelta(days=1), rng.tz_name)


def _sums(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "requests": row["requests"],
        "errors": row["errors"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "cached_tokens": row["cached_tokens"],
        "cache_write_tokens": row["cache_write_tokens"],
        "cost_usd": format_usd(row["cost_usd"]),
    }


async def totals(session: AsyncSession, scope: Scope, rng: Range) -> dict[str, Any]:
    """One range's totals: requests, errors, refusals, tokens, cost and savings."""
    [row] = await rollups.totals(session, window(rng), **scope.filters())
    return {
        **rng.describe(),
        **_sums(row),
        "refusals": row["rate_limited"] + row["budget_refused"],
        "savings_usd": format_usd(row["savings_usd"]),
    }


def _bucket_start(value: date | datetime, rng: Range) -> datetime:
    """A rollup group (a local day, or an hour) as the bucket's first instant."""
    return value if isinstance(value, datetime) else local_midnight(value, rng.tz)


async def spend_series(
    session: AsyncSession, scope: Scope, rng: Range, bucket: Bucket, by: GroupBy, limit: int | None = None
) -> list[dict[str, Any]]:
    """Sums per bucket x group, non-empty cells only, by bucket then group. `group` is the id ('' for
    an absent team, key or tier, and for by=total). With `limit`, the `limit` groups that cost the
    most over the range keep theirs and the rest are one group, OTHER (a chart of 200 teams is
    neither readable nor cheap)."""
    w = window(rng)
    group_by: list[rollups.GroupBy] = [bucket] if by == "total" else [bucket, by]
    keep = None
    if limit is not None and by != "total":
        top = await rollups.totals(session, w, group_by=[by], top=limit + 1, **scope.filters())
        if len(top) > limit:
            keep = {by: [row[by] or "" for row in top[:limit]]}
    rows = await rollups.totals(session, w, group_by=group_by, keep=keep, **scope.filters())
    out = []
    for row in rows:
        start = _bucket_start(row[bucket], rng)
        group = "" if by == "total" else row[by] or ""
        out.append(
            {"bucket": rng.label(start, bucket), "ts": int(start.timestamp()), "group": group, **_sums(row)}
        )
    out.sort(key=lambda r: (r["ts"], r["group"]))
    return out


async def top(session: AsyncSession, scope: Scope, rng: Range, by: TopBy, limit: int) -> list[dict[str, Any]]:
    """The `limit` largest spenders by cost (ties: by id), with their share of the range's cost."""
    rows = await rollups.totals(session, window(rng), group_by=[by], top=limit, **scope.filters())
    return [
        {
            "id": row[by] or "",
            **_sums(row),
            "share": float(row["cost_usd"] / row["all_cost_usd"]) if row["all_cost_usd"] else 0.0,
        }
        for row in rows
    ]


async def latency(session: AsyncSession, scope: Scope, rng: Range) -> list[dict[str, Any]]:
    """Latency p50/p95/p99 and TTFT p50/p95 (ms) over successful requests: first all models together
    (model None), then each model by name. Two histogram reads (per model); "all" is their sum."""
    w = window(rng)
    hists: dict[str, dict[str | None, dict[int, int]]] = {}
    for metric in ("latency", "ttft"):
        per_model: dict[str | None, dict[int, int]] = {None: {}}
        for row in await rollups.histograms(session, w, metric, group_by=["model"], **scope.filters()):
            per_model[row["model"]] = row["buckets"]
            every = per_model[None]
            for b, n in row["buckets"].items():
                every[b] = every.get(b, 0) + n
        hists[metric] = per_model
    lat, ttft = hists["latency"], hists["ttft"]
    out = []
    for model in sorted(lat, key=lambda m: (m is not None, m or "")):
        a, b = lat[model], ttft.get(model, {})
        out.append(
            {
                "model": model,
                "requests": sum(a.values()),
                "latency_p50_ms": percentile(a, 0.50),
                "latency_p95_ms": percentile(a, 0.95),
                "latency_p99_ms": percentile(a, 0.99),
                "ttft_p50_ms": percentile(b, 0.50),
                "ttft_p95_ms": percentile(b, 0.95),
            }
        )
    return out


async def errors(session: AsyncSession, scope: Scope, rng: Range) -> list[dict[str, Any]]:
    """Failed requests by error type (most first; the type, else http_<status>); refusals are the
    limits' and budgets' 429s."""
    rows = await rollups.totals(session, window(rng), group_by=["error_type"], **scope.filters())
    counts = [(row["error_type"], row["requests"]) for row in rows if row["error_type"]]
    counts.sort(key=lambda kv: (-kv[1], kv[0]))
    return [
        {"error_type": t, "kind": "refusal" if t in REFUSALS else "error", "requests": n} for t, n in counts
    ]


async def routing_mix(session: AsyncSession, scope: Scope, rng: Range) -> list[dict[str, Any]]:
    """Share of requests per tier (by tier rank), then the difficulty distribution of routed requests
    in 20 buckets 0.05 wide ('0.00-0.05' ... '0.95-1.00')."""
    w = window(rng)
    tiers = await rollups.totals(session, w, group_by=["tier"], **scope.filters())
    tiers.sort(key=lambda r: (TIER_RANK.get(r["tier"] or "", 99), r["tier"] or ""))
    total = sum(r["requests"] for r in tiers)
    out: list[dict[str, Any]] = [
        {"dimension": "tier", "value": r["tier"], "requests": r["requests"], "share": r["requests"] / total}
        for r in tiers
    ]
    found = await rollups.histograms(session, w, "difficulty", **scope.filters())
    buckets = found[0]["buckets"] if found else {}
    routed = sum(buckets.values())
    for i in range(DIFFICULTY_BUCKETS):
        low, high = difficulty_bounds(i)
        n = buckets.get(i, 0)
        out.append(
            {
                "dimension": "difficulty",
                "value": f"{low:.2f}-{high:.2f}",
                "requests": n,
                "share": n / routed if routed else 0.0,
            }
        )
    return out


async def savings(session: AsyncSession, scope: Scope, rng: Range) -> list[dict[str, Any]]:
    """Per model that answered (else the name asked for): cost, the cost on the strongest candidate
    of each request's route (a request that named a model: its own cost) and the difference; the
    largest saving first."""
    rows = await rollups.totals(session, window(rng), group_by=["model"], **scope.filters())
    rows.sort(key=lambda r: (-r["savings_usd"], -r["cost_usd"], r["model"] or ""))
    return [
        {
            "model": row["model"],
            "requests": row["requests"],
            "cost_usd": format_usd(row["cost_usd"]),
            "baseline_cost_usd": format_usd(row["baseline_cost_usd"]),
            "savings_usd": format_usd(row["savings_usd"]),
            "unpriced": row["unpriced"],
        }
        for row in rows
    ]
