"""The demo seeder writes what the spend writer would have: its rollups equal its log, on PostgreSQL
(COPY) and SQLite (the writer's own inserts), and each record is priced as record_of prices it."""

from __future__ import annotations

import csv
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.record import RequestRecord
from gateway.accounting.rollups import totals, window
from gateway.accounting.seed_demo import seed, split, utc_days
from gateway.auth import hash_key
from gateway.config import parse_config
from gateway.db.engine import session_factory
from gateway.db.models import ApiKey, RequestLog, Team
from gateway.live.snapshot import strongest_prices
from gateway.pricing import price_for
from providers.base import Usage
from tests.gateway.accounting.helpers import assert_rollups_match


async def logged(engine: AsyncEngine) -> list[RequestRecord]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(RequestLog.__table__))).mappings().all()
    return [RequestRecord(**row) for row in rows]


async def test_seeded_rollups_equal_the_seeded_log(db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    figures = await seed(
        db_url,
        requests=3000,
        teams=6,
        keys=15,
        models=8,
        days=3,
        end=date(2026, 5, 4),
        batch=700,  # several transactions, some days split on SQLite
        config_out=tmp_path / "demo.yaml",
        keys_out=tmp_path / "keys.csv",
        quiet=True,
    )
    assert figures["records"] == figures["request_log_rows"] == 3000
    records = await logged(engine)
    assert len(records) == 3000
    await assert_rollups_match(engine, records)
    assert min(r.ts for r in records) >= datetime(2026, 5, 1, tzinfo=UTC)
    assert max(r.ts for r in records) < datetime(2026, 5, 4, tzinfo=UTC)

    # Priced as the gateway prices them, from the config it wrote.
    config = parse_config(yaml.safe_load((tmp_path / "demo.yaml").read_text()), env={})
    prices = {d.id: price_for(d, {}) for d in config.models}
    baselines = strongest_prices(config, prices)
    kinds = set()
    for r in records:
        usage = Usage(r.prompt_tokens, r.completion_tokens, r.cached_tokens)
        price = prices[r.deployment] if r.deployment else None
        answered = r.status in (200, 499)
        assert r.cost_usd == (price.cost(usage) if price and answered else Decimal(0))
        if r.route is not None and answered:
            base = baselines[r.route]
            assert base is not None and r.baseline_cost_usd == base.cost(usage)
            kinds.add("routed")
        else:
            assert r.baseline_cost_usd == r.cost_usd
            kinds.add("direct" if r.route is None else "refused")
        assert (r.ttft_ms is not None) == (r.streamed and r.status == 200)
    assert kinds == {"routed", "direct", "refused"}
    assert {r.error_type for r in records} >= {None, "rate_limit_error", "budget_exceeded", "upstream_error"}

    # Teams and keys: the keys in the CSV are the ones whose hashes are stored.
    with (tmp_path / "keys.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15
    async with engine.connect() as conn:
        hashes = dict((await conn.execute(select(ApiKey.id, ApiKey.key_hash))).all())
        assert (await conn.execute(select(func.count()).select_from(Team))).scalar_one() == 6
    assert {r["key_id"]: hash_key(r["key"]) for r in rows} == hashes
    assert {r.key_id for r in records} <= set(hashes)

    async with session_factory(engine)() as session:
        [everything] = await totals(session, window(date(2026, 5, 1), date(2026, 5, 4)))
    assert everything["requests"] == 3000 and everything["savings_usd"] > 0

    with pytest.raises(SystemExit, match="seed an empty database"):
        await seed(db_url, requests=10, teams=6, keys=15, models=8, days=1, quiet=True)


def test_days_and_split() -> None:
    begin = datetime(2026, 5, 1, 17, tzinfo=UTC)
    spans = utc_days(begin, begin + timedelta(days=2))
    assert [(lo.isoformat(), hi.isoformat()) for lo, hi in spans] == [
        ("2026-05-01T17:00:00+00:00", "2026-05-02T00:00:00+00:00"),
        ("2026-05-02T00:00:00+00:00", "2026-05-03T00:00:00+00:00"),
        ("2026-05-03T00:00:00+00:00", "2026-05-03T17:00:00+00:00"),
    ]
    counts = split(1001, spans, random.Random(1))
    assert sum(counts) == 1001 and counts[1] > counts[0]
