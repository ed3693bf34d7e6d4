"""Daily rollups (daily_key_totals, daily_team_totals, daily_team_spend, daily_model_spend), filled
from the hourly ones; request_log indexes for the config preview and the request explorer.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08

Self-contained like 0001-0003 (no imports from gateway.db.models). The daily tables are the hourly
rollups summed per UTC day (the spend writer adds to both in one transaction from now on); the
hours already stored are summed into them here, histograms merged bucket by bucket, so that a day
read from either grain gives the same figures.

request_log: (route, ts) serves "the last N requests of a route" (the config preview), which
otherwise walked ix_request_log_ts back until N of that route turned up; (team_id, ts) becomes
(team_id, ts, request_id), the request explorer's keyset order, so a page is read off the index
without a sort.
"""

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(20, 10).with_variant(sa.BigInteger(), "sqlite")
# SQL NULL for None, as the hourly rollups' histograms (an empty histogram is NULL).
JSON = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(astext_type=sa.Text(), none_as_null=True), "postgresql"
)
SUMS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "unpriced",
    "errors",
    "rate_limited",
    "budget_refused",
)
HISTOGRAMS = ("latency_hist", "ttft_hist", "difficulty_hist")
# daily table -> (the hourly table it sums, its key columns after the day, histograms?)
DAILY = {
    "daily_key_totals": ("hourly_spend", ("team_id", "key_id"), False),
    "daily_team_spend": ("hourly_team_spend", ("team_id", "model", "tier", "error_type"), True),
    "daily_model_spend": ("hourly_model_spend", ("model", "tier", "error_type"), True),
    "daily_team_totals": ("hourly_team_totals", ("team_id",), False),
}
_TYPES = {
    "team_id": sa.String(32),
    "key_id": sa.String(32),
    "model": sa.Text(),
    "tier": sa.String(32),
    "error_type": sa.Text(),
}
_FILL_STEP = timedelta(days=7)


def _columns(key: tuple[str, ...], histograms: bool) -> list[sa.Column]:
    cols = [sa.Column("day", sa.Date(), nullable=False)]
    cols += [sa.Column(name, _TYPES[name], nullable=False) for name in key]
    for name in SUMS:
        kind = MONEY if name.endswith("_usd") else sa.BigInteger()
        cols.append(sa.Column(name, kind, server_default="0", nullable=False))
    if histograms:
        cols += [sa.Column(name, JSON, nullable=True) for name in HISTOGRAMS]
    return cols


def upgrade() -> None:
    for table, (_, key, histograms) in DAILY.items():
        op.create_table(
            table,
            *_columns(key, histograms),
            sa.PrimaryKeyConstraint("day", *key, name=op.f(f"pk_{table}")),
        )
    op.create_index(
        "ix_daily_key_totals_team_id_day",
        "daily_key_totals",
        ["team_id", "day"],
        postgresql_include=["key_id", "cost_usd"],
    )
    op.create_index("ix_daily_key_totals_key_id_day", "daily_key_totals", ["key_id", "day"])
    op.create_index("ix_daily_team_spend_team_id_day", "daily_team_spend", ["team_id", "day"])
    if op.get_bind().dialect.name == "postgresql":
        # As the hourly rollups (0003): room on each page for today's rows' new versions.
        for table in DAILY:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = 80)")
    for table, (hourly, key, histograms) in DAILY.items():
        _fill(table, hourly, key, histograms)

    op.drop_index("ix_request_log_team_id_ts", table_name="request_log")
    op.create_index("ix_request_log_team_id_ts_request_id", "request_log", ["team_id", "ts", "request_id"])
    op.create_index("ix_request_log_route_ts", "request_log", ["route", "ts"])


def _weeks(conn: sa.Connection, hourly: sa.TableClause) -> Iterator[tuple[datetime, datetime]]:
    """[from, to) a week of whole UTC days at a time, over the hours the table holds."""
    first, last = conn.execute(sa.select(sa.func.min(hourly.c.hour), sa.func.max(hourly.c.hour))).one()
    if first is None:
        return
    at = datetime.combine(_utc(first).date(), time(0), tzinfo=UTC)
    while at <= _utc(last):
        yield at, at + _FILL_STEP
        at += _FILL_STEP


def _utc(value: Any) -> datetime:
    """An hour as read (aware on PostgreSQL, naive UTC or text on SQLite) as an aware datetime."""
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _fill(table: str, hourly_name: str, key: tuple[str, ...], histograms: bool) -> None:
    """Sum the hourly rows into daily ones, a week of hours at a time, in Python: the histogram maps
    merge the same way on both databases, and memory stays a week's cells whatever the history."""
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    sums = [sa.column(n, MONEY if n.endswith("_usd") else sa.BigInteger()) for n in SUMS]
    maps = [sa.column(n, JSON) for n in HISTOGRAMS] if histograms else []
    hourly = sa.table(
        hourly_name, sa.column("hour", sa.DateTime(timezone=True)), *(sa.column(n) for n in key), *sums, *maps
    )
    names = ("day", *key, *SUMS, *(HISTOGRAMS if histograms else ()))
    daily = sa.table(table, *(sa.column(n, JSON if n in HISTOGRAMS else None) for n in names))
    n_sums = len(SUMS)
    for lo, hi in _weeks(conn, hourly):
        bounds = (lo, hi) if not sqlite else (lo.replace(tzinfo=None), hi.replace(tzinfo=None))
        cells: dict[tuple[Any, ...], list[Any]] = {}
        rows = conn.execute(sa.select(hourly).where(hourly.c.hour >= bounds[0], hourly.c.hour < bounds[1]))
        for row in rows.mappings():
            cell = (_utc(row["hour"]).date(), *(row[n] for n in key))
            acc = cells.get(cell)
            if acc is None:
                acc = cells[cell] = [0] * n_sums + ([{}, {}, {}] if histograms else [])
            for i, n in enumerate(SUMS):
                acc[i] += row[n] or 0
            for j, n in enumerate(HISTOGRAMS if histograms else ()):
                counts = acc[n_sums + j]
                for b, c in (row[n] or {}).items():
                    counts[b] = counts.get(b, 0) + int(c)
        values = [
            dict(zip(names, (*cell, *acc[:n_sums], *(m or None for m in acc[n_sums:])), strict=True))
            for cell, acc in cells.items()
        ]
        if values:
            conn.execute(sa.insert(daily), values)


def downgrade() -> None:
    op.drop_index("ix_request_log_route_ts", table_name="request_log")
    op.drop_index("ix_request_log_team_id_ts_request_id", table_name="request_log")
    op.create_index("ix_request_log_team_id_ts", "request_log", ["team_id", "ts"])
    for table in reversed(DAILY):
        op.drop_table(table)
