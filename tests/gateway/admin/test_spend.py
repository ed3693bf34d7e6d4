"""GET /admin/spend over records written by the spend writer's store, on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from gateway.accounting.queries import format_usd
from gateway.accounting.record import RequestRecord
from gateway.accounting.rollups import totals, window
from gateway.accounting.store import write_records
from tests.gateway.accounting.helpers import random_records
from tests.gateway.admin.conftest import Admin, assert_error


def record(
    i: int,
    day: int,
    team: str,
    key: str,
    model: str,
    tier: str,
    cost: str,
    cache: tuple[int, int, int] = (0, 0, 0),
) -> RequestRecord:
    """`cache`: tokens read from a prompt cache, and written to it for 5 minutes and for an hour."""
    return RequestRecord(
        request_id=f"req-{i}",
        ts=datetime(2026, 4, day, 12, 0, tzinfo=UTC),
        team_id=team,
        key_id=key,
        requested_model="auto",
        route="auto",
        deployment=model,
        provider="openai",
        tier=tier,
        difficulty=0.5,
        status=200,
        error_type=None,
        prompt_tokens=100 + i,
        completion_tokens=10 * i,
        cached_tokens=cache[0],
        cache_write_5m_tokens=cache[1],
        cache_write_1h_tokens=cache[2],
        cost_usd=Decimal(cost),
        latency_ms=10.0,
        ttft_ms=None,
        streamed=False,
        fallbacks=0,
    )


async def test_spend_groups_and_pages(admin: Admin) -> None:
    records = [
        record(0, 1, "t1", "k1", "gpt-4o-mini", "small", "0.0000000001"),
        record(1, 1, "t1", "k2", "gpt-4o", "large", "0.25", cache=(20, 30, 5)),
        record(2, 2, "t1", "k1", "gpt-4o-mini", "small", "0.1"),
        record(3, 3, "t2", "k3", "smollm2", "local", "0"),
        record(4, 3, "t1", "k2", "gpt-4o", "large", "1.2"),
    ]
    async with admin.engine.begin() as conn:
        await write_records(conn, records)

    async def pages(**params: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, "limit": 1, **({"cursor": cursor} if cursor else {})}
            r = await admin.client.get("/admin/spend", params=query)
            assert r.status_code == 200, r.text
            rows += r.json()["rows"]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                return rows

    def total(rows: list[dict[str, Any]]) -> str:
        return format_usd(sum((Decimal(r["cost_usd"]) for r in rows), Decimal(0)))

    by_day = await pages(group_by="day")
    assert [r["day"] for r in by_day] == ["2026-04-01", "2026-04-02", "2026-04-03"]
    assert set(by_day[0]) == {
        "day",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "errors",
        "cost_usd",
    }
    assert by_day[0]["cost_usd"] == "0.2500000001" and by_day[0]["requests"] == 2
    for group_by, expected in {
        "model": ["gpt-4o", "gpt-4o-mini", "smollm2"],
        "key": ["k1", "k2", "k3"],
        "tier": ["large", "local", "small"],
        "team": ["t1", "t2"],
    }.items():
        rows = await pages(group_by=group_by)
        assert [r[group_by] for r in rows] == expected
        assert total(rows) == "1.5500000001"
        assert sum(r["requests"] for r in rows) == 5

    t1 = await pages(group_by="model", team_id="t1", start="2026-04-02", end="2026-04-03")
    assert [(r["model"], r["cost_usd"]) for r in t1] == [("gpt-4o", "1.2"), ("gpt-4o-mini", "0.1")]
    k2 = (await admin.client.get("/admin/spend", params={"key_id": "k2", "model": "gpt-4o"})).json()
    assert k2 == {
        "rows": [
            {
                "day": "2026-04-01",
                "requests": 1,
                "prompt_tokens": 101,
                "completion_tokens": 10,
                "cached_tokens": 20,
                "cache_write_tokens": 35,
                "errors": 0,
                "cost_usd": "0.25",
            },
            {
                "day": "2026-04-03",
                "requests": 1,
                "prompt_tokens": 104,
                "completion_tokens": 40,
                "cached_tokens": 0,
                "cache_write_tokens": 0,
                "errors": 0,
                "cost_usd": "1.2",
            },
        ],
        "next_cursor": None,
    }

    day_cursor = (await admin.client.get("/admin/spend", params={"limit": 1})).json()["next_cursor"]
    error = assert_error(
        await admin.client.get("/admin/spend", params={"group_by": "model", "cursor": day_cursor}), 400
    )
    assert error["param"] == "cursor"
    assert_error(await admin.client.get("/admin/spend", params={"group_by": "week"}), 400)
    assert_error(
        await admin.client.get("/admin/spend", params={"start": "2026-04-03", "end": "2026-04-01"}), 400
    )
    assert_error(await admin.client.get("/admin/spend", params={"start": "yesterday"}), 400)


async def test_the_dashboard_rollups_give_what_spend_gives_for_the_same_range(admin: Admin) -> None:
    """gateway.accounting.rollups in UTC over [first, last + 1 day) against GET /admin/spend over
    first..last (inclusive UTC days): the same totals, group by group."""
    records = random_records(600, seed=11, hours=24 * 5)
    async with admin.engine.begin() as conn:
        await write_records(conn, records)
    first, last = date(2026, 3, 2), date(2026, 3, 4)
    w = window(first, last + timedelta(days=1), "UTC")
    fields = (
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "errors",
    )
    for group_by in ("day", "model", "key", "tier", "team"):
        r = await admin.client.get(
            "/admin/spend",
            params={"group_by": group_by, "start": first.isoformat(), "end": last.isoformat(), "limit": 1000},
        )
        assert r.status_code == 200, r.text
        want = {row[group_by]: ({f: row[f] for f in fields}, row["cost_usd"]) for row in r.json()["rows"]}
        async with admin.sessions() as session:
            rows = await totals(session, w, group_by=[group_by])  # type: ignore[list-item]
        got = {
            (str(row[group_by]) if group_by == "day" else row[group_by]): (
                {f: row[f] for f in fields},
                format_usd(row["cost_usd"]),
            )
            for row in rows
        }
        assert got == want, group_by
        assert sum(v[0]["requests"] for v in got.values()) == sum(
            first <= rec.ts.date() <= last for rec in records
        )
