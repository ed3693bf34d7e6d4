"""Seed a database with demo traffic for the dashboards: teams, keys and N requests.

    python -m gateway.accounting.seed_demo --url URL [--requests 10000] [--teams 20] [--keys 100]
        [--models 12] [--days 7] [--end YYYY-MM-DD] [--seed 0] [--batch 20000] [--jobs 2]
        [--config-out switchyard.demo.yaml] [--keys-out keys.csv]

    # the dashboards' benchmark: 10M requests, 200 teams, 2,000 keys, 30 models, 90 days
    python -m gateway.accounting.seed_demo --url postgresql://... --requests 10000000 \\
        --teams 200 --keys 2000 --models 30 --days 90

Migrates the database (alembic upgrade head), adds --teams teams and --keys virtual keys (some with
budgets), then --requests request records spread over the --days days before --end (midnight UTC;
default: the current hour, so the data runs up to now). They are written through the spend writer's
store (gateway.accounting.store): on PostgreSQL copy_records, a binary COPY straight into the
tables, a transaction per whole UTC days (at least --batch records); on SQLite write_records, the
writer's own multi-row INSERTs, --batch records a transaction. Either way the log rows and the daily
and hourly rollup rows are those the spend writer would have written for the same records. The
records are what gateway.control.record_of makes of such requests: cost and baseline priced from
the demo models (--config-out writes them as a gateway config), refusals and failures included.

--keys-out writes team_id,key_id,key for every key (the keys are shown nowhere else; they are
usable against a gateway on this database). Prints records/s at the end. Seeds an empty database
only (no logged request): the bulk load writes the rollup rows outright, no upserts.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, insert, select, text

from gateway.accounting.grains import GRAINS
from gateway.accounting.record import RequestRecord
from gateway.accounting.store import copy_records, write_records
from gateway.auth import display_prefix, generate_key, hash_key
from gateway.config import GatewayConfig, parse_config
from gateway.db.engine import make_engine, normalize_url
from gateway.db.migrate import upgrade
from gateway.db.models import ApiKey, RequestLog, Team
from gateway.live.snapshot import strongest_prices
from gateway.pricing import TokenPrice, price_for
from providers.base import Usage

TIERS = ("local", "small", "medium", "large")
# USD per million tokens (input, output) a tier's models are priced between.
_TIER_PRICES = {
    "local": ((0.0, 0.0), (0.0, 0.0)),
    "small": ((0.05, 0.2), (0.6, 2.4)),
    "medium": ((0.5, 2.0), (3.0, 12.0)),
    "large": ((2.5, 10.0), (15.0, 75.0)),
}
# Median latency per tier (ms).
_TIER_LATENCY = {"local": 120.0, "small": 450.0, "medium": 900.0, "large": 2200.0}
# (status, error type, share of requests, reached a deployment)
_OUTCOMES = (
    (200, None, 0.95, True),
    (429, "rate_limit_error", 0.02, False),
    (429, "budget_exceeded", 0.005, False),
    (502, "upstream_error", 0.015, True),
    (499, "client_disconnected", 0.005, True),
    (400, "invalid_request_error", 0.005, False),
)
# Traffic over the day (UTC hour), a broad daytime hump.
_HOUR_WEIGHTS = [0.35 + math.sin(math.pi * max(0.0, (h - 5) / 16)) ** 2 for h in range(24)]


@dataclass(frozen=True, slots=True)
class Demo:
    raw: dict[str, Any]  # the config as a gateway config file holds it
    config: GatewayConfig
    prices: dict[str, TokenPrice | None]
    baselines: dict[str, TokenPrice | None]
    teams: list[tuple[str, str]]  # (id, name)
    keys: list[tuple[str, str]]  # (key id, team id)
    key_weights: list[float]
    # Per key: the routes it calls and the models it calls directly.
    key_routes: list[list[str]]
    key_models: list[list[str]]


def demo_config(n_models: int, rng: random.Random) -> dict[str, Any]:
    """n_models deployments spread over the tiers (at least one each) and three routes over them."""
    if n_models < len(TIERS):
        raise ValueError(f"--models must be at least {len(TIERS)} (one per tier)")
    models = []
    for i in range(n_models):
        tier = TIERS[i % len(TIERS)]
        (lo_in, hi_in), (lo_out, hi_out) = _TIER_PRICES[tier]
        models.append(
            {
                "name": f"{tier}-{i // len(TIERS) + 1:02d}",
                "provider": "openai_compatible",
                "model": f"demo-{tier}-{i // len(TIERS) + 1:02d}",
                "api_base": "http://127.0.0.1:9000/v1",
                "api_key": "unused",
                "tier": tier,
                "price": {
                    "input_per_mtok": round(rng.uniform(lo_in, hi_in), 3),
                    "output_per_mtok": round(rng.uniform(lo_out, hi_out), 3),
                },
            }
        )
    by_tier = {t: [m["name"] for m in models if m["tier"] == t] for t in TIERS}
    routes = {
        "auto": {"candidates": [by_tier["small"][0], by_tier["medium"][0], by_tier["large"][0]]},
        "auto-cheap": {"candidates": [by_tier["local"][0], by_tier["small"][-1], by_tier["medium"][-1]]},
        "auto-code": {"candidates": [by_tier["medium"][0], by_tier["large"][-1]]},
    }
    return {"models": models, "routes": routes}


def build_demo(n_teams: int, n_keys: int, n_models: int, rng: random.Random) -> Demo:
    if n_teams < 1 or n_keys < n_teams:
        raise ValueError("need 1 <= --teams <= --keys")
    raw = demo_config(n_models, rng)
    config = parse_config(raw, env={})
    prices = {d.id: price_for(d, {}) for d in config.models}
    teams = [(f"{rng.getrandbits(128):032x}", f"demo-team-{i + 1:03d}") for i in range(n_teams)]
    # Every team gets a key; the rest go to teams by a Zipf-like weight (a few big teams).
    team_weights = [1 / (i + 1) ** 0.8 for i in range(n_teams)]
    owners = list(range(n_teams)) + rng.choices(range(n_teams), team_weights, k=n_keys - n_teams)
    keys = [(f"{rng.getrandbits(128):032x}", teams[t][0]) for t in owners]
    key_weights = [rng.paretovariate(1.2) for _ in keys]
    route_names = list(config.routes)
    names = list(dict.fromkeys(d.name for d in config.models))
    key_routes = [rng.sample(route_names, rng.randint(1, 2)) for _ in keys]
    key_models = [rng.sample(names, rng.randint(1, 3)) for _ in keys]
    return Demo(
        raw,
        config,
        prices,
        strongest_prices(config, prices),
        teams,
        keys,
        key_weights,
        key_routes,
        key_models,
    )


def _tier_of(config: GatewayConfig) -> dict[str, str]:
    return {d.name: d.tier for d in config.models}


def records_between(
    demo: Demo, lo: datetime, hi: datetime, n: int, rng: random.Random
) -> Iterator[RequestRecord]:
    """n records in [lo, hi) (whole UTC hours), as gateway.control.record_of would have made them."""
    config = demo.config
    tiers = _tier_of(config)
    deployments = {d.name: d for d in config.models}
    key_ix = rng.choices(range(len(demo.keys)), demo.key_weights, k=n)
    starts = [lo + timedelta(hours=h) for h in range(int((hi - lo).total_seconds()) // 3600)]
    hours = rng.choices(starts, [_HOUR_WEIGHTS[h.hour] for h in starts], k=n)
    outcomes = rng.choices(_OUTCOMES, [o[2] for o in _OUTCOMES], k=n)
    gauss, uniform = rng.gauss, rng.random
    zero = Decimal(0)
    for k, hour, (status, error_type, _, reached) in zip(key_ix, hours, outcomes, strict=True):
        key_id, team_id = demo.keys[k]
        route: str | None = None
        difficulty: float | None = None
        if uniform() < 0.7:
            route = rng.choice(demo.key_routes[k])
            candidates = config.routes[route].candidates
            difficulty = rng.triangular(0.0, 1.0, 0.3)
            # The ladder: the strongest tier takes the hardest ~30%, the weakest the easiest half.
            rank = 0 if difficulty < 0.35 else (len(candidates) - 1 if difficulty > 0.55 else 1)
            name = candidates[min(rank, len(candidates) - 1)]
            requested = route
        else:
            name = rng.choice(demo.key_models[k])
            requested = name
        dep = deployments[name] if reached else None
        tier = tiers[name]
        streamed = uniform() < 0.5
        prompt = int(math.exp(gauss(6.2, 1.0)))
        completion = int(math.exp(gauss(5.0, 0.9)))
        cached = int(prompt * uniform()) if uniform() < 0.2 else 0
        usage: Usage | None = None
        if status == 200:
            usage = Usage(prompt, completion, cached)
        elif status == 499:
            usage = Usage(prompt, int(completion * uniform()))
        latency = _TIER_LATENCY[tier] * math.exp(gauss(0.0, 0.6))
        if status != 200:
            latency = 30.0 * math.exp(gauss(0.0, 0.8)) if not reached else latency * uniform()
        ttft = latency * (0.05 + 0.45 * uniform()) if streamed and status == 200 else None
        # As record_of: no usage and no cost is $0 (nothing was answered); a baseline needs usage.
        price = demo.prices[dep.id] if dep is not None else None
        cost = price.cost(usage) if price is not None and usage is not None else zero
        if route is None or usage is None:
            baseline: Decimal | None = cost
        else:
            strongest = demo.baselines[route]
            baseline = strongest.cost(usage) if strongest is not None else None
        yield RequestRecord(
            request_id=f"{rng.getrandbits(128):032x}",
            ts=hour + timedelta(microseconds=rng.randrange(3_600_000_000)),
            team_id=team_id,
            key_id=key_id,
            requested_model=requested,
            route=route,
            deployment=dep.id if dep else None,
            provider=dep.provider if dep else None,
            tier=dep.tier if dep else None,
            difficulty=difficulty,
            status=status,
            error_type=error_type,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cached_tokens=usage.cached_tokens if usage else 0,
            cost_usd=cost,
            latency_ms=latency,
            ttft_ms=ttft,
            streamed=streamed,
            fallbacks=1 if reached and uniform() < 0.01 else 0,
            tokens_estimated=status == 499,
            baseline_cost_usd=baseline,
        )


def _write_outputs(demo: Demo, plain: list[str], config_out: Path | None, keys_out: Path | None) -> None:
    if keys_out is not None:
        with keys_out.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["team_id", "key_id", "key"])
            out.writerows((tid, kid, key) for (kid, tid), key in zip(demo.keys, plain, strict=True))
    if config_out is not None:
        config_out.write_text(yaml.safe_dump(demo.raw, sort_keys=False))


def utc_days(begin: datetime, stop: datetime) -> list[tuple[datetime, datetime]]:
    """[begin, stop) cut at UTC midnights (the first and last piece may be short)."""
    out = []
    lo = begin
    while lo < stop:
        hi = min(stop, datetime(lo.year, lo.month, lo.day, tzinfo=UTC) + timedelta(days=1))
        out.append((lo, hi))
        lo = hi
    return out


def split(total: int, spans: list[tuple[datetime, datetime]], rng: random.Random) -> list[int]:
    """`total` over the spans by their length, +-20% from one to the next, summing to `total`."""
    weights = [(hi - lo).total_seconds() * rng.uniform(0.8, 1.2) for lo, hi in spans]
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    for i in range(total - sum(counts)):
        counts[i % len(counts)] += 1
    return counts


async def seed(
    url: str,
    *,
    requests: int = 10_000,
    teams: int = 20,
    keys: int = 100,
    models: int = 12,
    days: int = 7,
    end: date | None = None,
    seed_value: int = 0,
    batch: int = 20_000,
    jobs: int = 2,
    config_out: Path | None = None,
    keys_out: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Seed `url`; returns the figures it printed (records, seconds, records_per_s, ...)."""
    if requests < 0 or days < 1 or batch < 1:
        raise ValueError("need --requests >= 0, --days >= 1, --batch >= 1")
    url = normalize_url(url)
    rng = random.Random(seed_value)
    demo = build_demo(teams, keys, models, rng)
    if end is None:
        stop = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    else:
        stop = datetime(end.year, end.month, end.day, tzinfo=UTC)
    begin = stop - timedelta(days=days)
    say = (lambda *_: None) if quiet else print

    await upgrade(url)
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            if (await conn.execute(select(RequestLog.request_id).limit(1))).first() is not None:
                raise SystemExit("request_log is not empty: seed an empty database")
            now = datetime.now(UTC)
            budgeted = set(rng.sample(range(len(demo.teams)), len(demo.teams) // 3))
            await conn.execute(
                insert(Team),
                [
                    {
                        "id": tid,
                        "name": name,
                        "budget_usd": Decimal(rng.choice([50, 200, 1000, 5000])) if i in budgeted else None,
                        "budget_period": "monthly" if i in budgeted else None,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i, (tid, name) in enumerate(demo.teams)
                ],
            )
            plain = [generate_key() for _ in demo.keys]
            await conn.execute(
                insert(ApiKey),
                [
                    {
                        "id": kid,
                        "key_hash": hash_key(key),
                        "prefix": display_prefix(key),
                        "name": f"demo-key-{i + 1:04d}",
                        "team_id": tid,
                        "revoked": False,
                        "budget_usd": Decimal(rng.choice([10, 25, 100])) if i % 10 == 3 else None,
                        "budget_period": "monthly" if i % 10 == 3 else None,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i, ((kid, tid), key) in enumerate(zip(demo.keys, plain, strict=True))
                ],
            )
        _write_outputs(demo, plain, config_out, keys_out)

        say(
            f"seeding {requests:,} requests over {days} days "
            f"({begin:%Y-%m-%d %H:00} .. {stop:%Y-%m-%d %H:00} UTC), "
            f"{len(demo.teams)} teams, {len(demo.keys)} keys, {len(demo.config.models)} models "
            f"into {engine.dialect.name}"
        )
        generating = 0.0
        spans = utc_days(begin, stop)
        counts = split(requests, spans, rng)
        # PostgreSQL: COPY straight into the tables, a transaction per whole UTC days (so that no
        # rollup row is written twice: the teams are new, nothing else adds to their rows), up to
        # `jobs` transactions at once while the next days are generated in a thread.
        pg = engine.dialect.name == "postgresql"
        jobs = max(1, jobs if pg else 1)
        progress = {"written": 0, "report": max(batch, requests // 10)}

        async def write(chunk: list[RequestRecord]) -> None:
            for part in [chunk] if pg else [chunk[i : i + batch] for i in range(0, len(chunk), batch)]:
                async with engine.begin() as conn:
                    n = await (copy_records if pg else write_records)(conn, part)
                progress["written"] += n
            if progress["written"] >= progress["report"]:
                progress["report"] += max(batch, requests // 10)
                rate = progress["written"] / (time.perf_counter() - started)
                say(f"  {progress['written']:,} records, {rate:,.0f} records/s")

        def generate(todo: list[tuple[tuple[datetime, datetime], int]]) -> list[RequestRecord]:
            out: list[RequestRecord] = []
            while todo and len(out) < batch:
                (lo, hi), n = todo.pop(0)
                out.extend(records_between(demo, lo, hi, n, rng))
            return out

        todo = list(zip(spans, counts, strict=True))
        started = time.perf_counter()
        running: set[asyncio.Task[None]] = set()
        while todo:
            t = time.perf_counter()
            chunk = await asyncio.to_thread(generate, todo)
            generating += time.perf_counter() - t
            if len(running) >= jobs:
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            running.add(asyncio.create_task(write(chunk)))
        for task in asyncio.as_completed(running):
            await task
        written = progress["written"]
        elapsed = time.perf_counter() - started
        if pg:
            # Fresh statistics: the planner would otherwise take the new rows for a handful until
            # autovacuum's next round (and sort on disk where a hash would do).
            async with engine.connect() as conn:
                tables = ["request_log", "daily_spend", *(g.table.name for g in GRAINS), "api_keys", "teams"]
                await conn.execute(text(f"ANALYZE {', '.join(tables)}"))
                await conn.commit()
        async with engine.connect() as conn:
            logged = (await conn.execute(select(func.count()).select_from(RequestLog))).scalar_one()
    finally:
        await engine.dispose()
    figures = {
        "records": written,
        "seconds": round(elapsed, 2),
        "records_per_s": round(written / elapsed) if elapsed else 0,
        "generating_s": round(generating, 2),
        "request_log_rows": logged,
        "start": begin.isoformat(),
        "end": stop.isoformat(),
    }
    say(
        f"{written:,} records in {elapsed:.1f} s: {figures['records_per_s']:,} records/s "
        f"(waiting on generation {generating:.1f} s); request_log now holds {logged:,} rows"
    )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.accounting.seed_demo",
        description="Seed a database with demo teams, keys and requests for the dashboards.",
    )
    parser.add_argument("--url", required=True, help="postgresql://... or sqlite:///path.db")
    parser.add_argument("--requests", type=int, default=10_000, help="request records (default 10000)")
    parser.add_argument("--teams", type=int, default=20, help="teams (default 20)")
    parser.add_argument(
        "--keys", type=int, default=100, help="virtual keys, at least one a team (default 100)"
    )
    parser.add_argument("--models", type=int, default=12, help="deployments over the four tiers (default 12)")
    parser.add_argument("--days", type=int, default=7, help="days of traffic (default 7)")
    parser.add_argument(
        "--end",
        type=date.fromisoformat,
        default=None,
        help="traffic ends at this day's midnight, UTC (default: the current hour)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same data each time")
    parser.add_argument("--batch", type=int, default=20_000, help="records a transaction (default 20000)")
    parser.add_argument(
        "--config-out", type=Path, help="write the demo models and routes as a gateway config"
    )
    parser.add_argument("--keys-out", type=Path, help="write team_id,key_id,key of every key (CSV)")
    parser.add_argument(
        "--jobs", type=int, default=2, help="PostgreSQL: transactions in flight at once (default 2)"
    )
    args = parser.parse_args(argv)
    asyncio.run(
        seed(
            args.url,
            requests=args.requests,
            teams=args.teams,
            keys=args.keys,
            models=args.models,
            days=args.days,
            end=args.end,
            seed_value=args.seed,
            batch=args.batch,
            jobs=args.jobs,
            config_out=args.config_out,
            keys_out=args.keys_out,
        )
    )


if __name__ == "__main__":
    main()
