"""Spend queries over daily_spend: groups, filters, keyset pages, exact decimal strings."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.queries import InvalidCursorError, format_usd, period_spend, spend
from gateway.accounting.record import RequestRecord
from gateway.accounting.store import write_records
from gateway.db.engine import session_factory
from tests.gateway.accounting.helpers import make_record

GROUP_OF = {
    "day": lambda r: r.ts.date().isoformat(),
    "model": lambda r: r.deployment or r.requested_model,
    "key": lambda r: r.key_id,
    "tier": lambda r: r.tier,
    "team": lambda r: r.team_id,
}


def spread(n: int) -> list[RequestRecord]:
    records = [make_record(i) for i in range(n)]
    for i, r in enumerate(records):
        r.ts -= timedelta(days=i % 4)
    return records


def expected(records: list[RequestRecord], group_by: str) -> dict[Any, dict[str, Any]]:
    acc: dict[Any, dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": Decimal(0)}
    )
    for r in records:
        a = acc[GROUP_OF[group_by](r)]
        a["requests"] += 1
        a["prompt_tokens"] += r.prompt_tokens
        a["completion_tokens"] += r.completion_tokens
        a["cost"] += r.cost_usd or 0
    for v in acc.values():
        v["cost_usd"] = format_usd(v.pop("cost"))
    return dict(acc)


async def load(engine: AsyncEngine, records: list[RequestRecord]) -> None:
    async with engine.begin() as conn:
        await write_records(conn, records)


@pytest.mark.parametrize("group_by", ["day", "model", "key", "tier", "team"])
async def test_groups_and_pages_add_up_to_the_records(engine: AsyncEngine, group_by: str) -> None:
    records = spread(500)
    await load(engine, records)
    async with session_factory(engine)() as session:
        whole, cursor = await spend(session, group_by=group_by)  # type: ignore[arg-type]
        assert cursor is None
        paged: list[dict[str, Any]] = []
        while True:
            page, cursor = await spend(session, group_by=group_by, limit=2, cursor=cursor)  # type: ignore[arg-type]
            paged += page
            if cursor is None:
                break
    assert paged == whole
    got = {row.pop(group_by): row for row in whole}
    want = expected(records, group_by)
    assert {k: {f: v[f] for f in want[k]} for k, v in got.items()} == want


async def test_filters_and_period_spend(engine: AsyncEngine) -> None:
    records = spread(500)
    await load(engine, records)
    days = sorted({r.ts.date() for r in records})
    start, end = days[1], days[2]

    def chosen(r: RequestRecord) -> bool:
        return r.team_id == "team1" and r.deployment == "claude-sonnet" and start <= r.ts.date() <= end

    async with session_factory(engine)() as session:
        rows, _ = await spend(
            session, team_id="team1", model="claude-sonnet", start=start, end=end, group_by="key"
        )
        want = expected([r for r in records if chosen(r)], "key")
        assert {row["key"]: row["cost_usd"] for row in rows} == {k: v["cost_usd"] for k, v in want.items()}

        total = await period_spend(session, key_id="key2", since=days[2])
        assert total == sum(
            (r.cost_usd or Decimal(0) for r in records if r.key_id == "key2" and r.ts.date() >= days[2]),
            Decimal(0),
        )
        team_total = await period_spend(session, team_id="team0", since=date.min)
        assert team_total == sum((r.cost_usd or 0 for r in records if r.team_id == "team0"), Decimal(0))
        assert await period_spend(session, team_id="nobody", since=date.min) == Decimal(0)


async def test_bad_cursors_and_arguments_are_refused(engine: AsyncEngine) -> None:
    await load(engine, spread(50))
    async with session_factory(engine)() as session:
        _, cursor = await spend(session, group_by="model", limit=1)
        assert cursor is not None
        with pytest.raises(InvalidCursorError):
            await spend(session, group_by="day", cursor=cursor)
        with pytest.raises(InvalidCursorError):
            await spend(session, group_by="model", cursor="not a cursor")
        with pytest.raises(ValueError):
            await spend(session, group_by="week")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await spend(session, limit=0)


def test_format_usd_is_exact_and_plain() -> None:
    assert format_usd(Decimal("1.2300000000")) == "1.23"
    assert format_usd(Decimal("100.0000000000")) == "100"
    assert format_usd(Decimal("0E-10")) == "0"
    assert format_usd(Decimal("1E-10")) == "0.0000000001"
