"""Dashboard query times: `python -m gateway.accounting.rollups_bench --url URL [--tz Europe/Berlin]`.

Runs the queries the dashboards make (gateway.accounting.rollups) over the last --days days of a
seeded database (gateway.accounting.seed_demo), each --runs times, and prints p50 / p95 / max in ms
per query with the rows it returned. Not a test: the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import func, select

from gateway.accounting import rollups
from gateway.db.engine import make_engine, normalize_url, session_factory
from gateway.db.models import HourlySpend, RequestLog


async def run(url: str, tz: str, days: int, runs: int) -> list[dict[str, Any]]:
    engine = make_engine(normalize_url(url))
    sessions = session_factory(engine)
    try:
        async with sessions() as s:
            last = (await s.execute(select(func.max(HourlySpend.hour)))).scalar()
            if last is None:
                raise SystemExit(
                    "hourly_spend is empty: seed the database first (gateway.accounting.seed_demo)"
                )
            logged = (await s.execute(select(func.count()).select_from(RequestLog))).scalar_one()
            cells = (await s.execute(select(func.count()).select_from(HourlySpend))).scalar_one()
            [(team,)] = (
                await s.execute(
                    select(HourlySpend.team_id)
                    .group_by(HourlySpend.team_id)
                    .order_by(func.sum(HourlySpend.requests).desc())
                    .limit(1)
                )
            ).all()
            [(key,)] = (
                await s.execute(
                    select(HourlySpend.key_id)
                    .where(HourlySpend.team_id == team)
                    .group_by(HourlySpend.key_id)
                    .order_by(func.sum(HourlySpend.requests).desc())
                    .limit(1)
                )
            ).all()
        end = (last + timedelta(hours=1)).astimezone(UTC)
        w = rollups.window(end - timedelta(days=days), end, tz)
        day = rollups.window(end - timedelta(days=1), end, tz)
        queries: dict[str, Callable[[Any], Awaitable[list[dict[str, Any]]]]] = {
            "org: total": lambda s: rollups.totals(s, w),
            "org: by day x team": lambda s: rollups.totals(s, w, group_by=["day", "team"]),
            "org: by day x model": lambda s: rollups.totals(s, w, group_by=["day", "model"]),
            "org: top 10 keys": lambda s: rollups.totals(s, w, group_by=["key"], top=10),
            "org: previous period": lambda s: rollups.totals(s, w.previous()),
            "org: last 24h by hour": lambda s: rollups.totals(s, day, group_by=["hour"]),
            "team: by day x model": lambda s: rollups.totals(s, w, team_id=team, group_by=["day", "model"]),
            "team: by tier": lambda s: rollups.totals(s, w, team_id=team, group_by=["tier"]),
            "team: errors by type": lambda s: rollups.totals(s, w, team_id=team, group_by=["error_type"]),
            "team: latency p50/95/99 by model": lambda s: rollups.percentiles(
                s, w, "latency", team_id=team, group_by=["model"]
            ),
            "team: ttft p50/95 by model": lambda s: rollups.percentiles(
                s, w, "ttft", qs=(0.5, 0.95), team_id=team, group_by=["model"]
            ),
            "team: difficulty histogram": lambda s: rollups.histograms(s, w, "difficulty", team_id=team),
            "key: by day": lambda s: rollups.totals(s, w, key_id=key, group_by=["day"]),
            "org: latency p50/95/99 by model": lambda s: rollups.percentiles(
                s, w, "latency", group_by=["model"]
            ),
        }
        print(
            f"{engine.dialect.name}: {logged:,} logged requests, {cells:,} hourly_spend rows; "
            f"window {days} days in {tz} ({w.hours} hours), {runs} runs each"
        )
        results = []
        for name, query in queries.items():
            times = []
            rows = 0
            for _ in range(runs):
                async with sessions() as s:
                    t = time.perf_counter()
                    rows = len(await query(s))
                    times.append((time.perf_counter() - t) * 1000)
            times.sort()
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            result = {"query": name, "rows": rows, "p50_ms": statistics.median(times), "p95_ms": p95}
            result["max_ms"] = times[-1]
            results.append(result)
            print(f"  {name:34s} {rows:6d} rows  p50 {result['p50_ms']:7.1f} ms  p95 {p95:7.1f} ms")
        return results
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="postgresql://... or sqlite:///path.db")
    parser.add_argument("--tz", default="UTC", help="reporting time zone (default UTC)")
    parser.add_argument("--days", type=int, default=30, help="the window: the last N days (default 30)")
    parser.add_argument("--runs", type=int, default=20, help="runs of each query (default 20)")
    args = parser.parse_args()
    asyncio.run(run(args.url, args.tz, args.days, args.runs))


if __name__ == "__main__":
    main()
