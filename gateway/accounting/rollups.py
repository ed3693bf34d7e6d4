"""Dashboard queries over the rollups: totals, savings, errors and percentiles for a range of time in
a reporting time zone, grouped by day or hour in that zone and by team, key, model, tier or error type.

They read the rollups only, never the request log (gateway.accounting.grains.GRAINS): the UTC days
wholly inside the range from the smallest daily rollup that has the columns a query groups and
filters by, the rest from the smallest such hourly one (gateway.accounting.windows.split: by local
day, each day's UTC day corrected by the hours that belong to another local day); a query by hour,
or one no daily rollup answers (a key by model), reads hourly rows only. Either way the figures are
the sums of the hours that start in the range. Plain async functions returning plain data (dicts of
str, int, Decimal, date, datetime, float); the pages and JSON endpoints format them.

Time (gateway.accounting.windows): `window(start, end, tz)` is [start, end) in an IANA zone, as the
UTC hours that cover it. With tz="UTC" a range of whole days gives exactly what /admin/spend
(daily_spend) gives for it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Date,
    Select,
    Table,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from gateway.accounting.grains import GRAINS
from gateway.accounting.histogram import (
    DIFFICULTY,
    DIFFICULTY_BUCKETS,
    LATENCY,
    TTFT,
    difficulty_bounds,
    percentile,
)
from gateway.accounting.windows import Hours, InvalidZoneError, Window, offsets, split, window, zone_of
from gateway.db.types import UTCDateTime

__all__ = [
    "OTHER",
    "InvalidZoneError",
    "Window",
    "difficulty_distribution",
    "histograms",
    "offsets",
    "percentiles",
    "totals",
    "window",
    "zone_of",
]

Db = AsyncSession | AsyncConnection
GroupBy = Literal["day", "hour", "team", "key", "model", "tier", "error_type"]
Metric = Literal["latency", "ttft", "difficulty"]

# Summed counts every totals() row has.
_COUNTS = (
    "requests",
    "errors",
    "rate_limited",
    "budget_refused",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "unpriced",
)
_SUMMED = (*_COUNTS, "cost_usd", "baseline_cost_usd")
# The group that sums the values `keep` leaves out.
OTHER = "(other)"

# group_by names -> columns.
_COLUMNS: Mapping[str, str] = {
    "team": "team_id",
    "key": "key_id",
    "model": "model",
    "tier": "tier",
    "error_type": "error_type",
}
_HIST_COLUMN: Mapping[str, str] = {LATENCY: "latency_hist", TTFT: "ttft_hist", DIFFICULTY: "difficulty_hist"}
# The rollups a query may read, the smallest first (gateway.accounting.grains.GRAINS).
_BY_SIZE = sorted(GRAINS, key=lambda g: ("team_id" in g.key, "key_id" in g.key, len(g.key)))


def grain_for(columns: set[str], *, histograms: bool = False, daily: bool = False) -> Table | None:
    """The smallest hourly (or daily) rollup that has these columns (and histograms, if asked); None
    when no daily one has them (the finest hourly one has them all)."""
    for grain in _BY_SIZE:
        if grain.daily == daily and columns <= set(grain.key) and (grain.histograms or not histograms):
            return grain.table
    return None


def _dialect(db: Db) -> str:
    if isinstance(db, AsyncConnection):
        return db.dialect.name
    return db.get_bind().dialect.name


def _shifted(dialect: str, hour: ColumnElement[Any], minutes: int) -> ColumnElement[Any]:
    """SQL: the date of `hour` + `minutes` (a UTC hour's local date at that offset)."""
    if dialect == "postgresql":
        utc = func.timezone("UTC", hour)  # timestamptz -> UTC wall time
        return cast(utc + literal_column(f"INTERVAL '{minutes} minutes'"), Date)
    return type_coerce(func.date(hour, literal(f"{minutes:+d} minutes")), Date())


def _local_day(dialect: str, w: Window, t: Table) -> ColumnElement[Any]:
    """SQL: the local date of each row's hour (a CASE over the window's offsets)."""
    segments = offsets(w)
    hour = t.c.hour
    if len(segments) == 1:
        return _shifted(dialect, hour, segments[0][1])
    whens = [
        (hour < literal(segments[i + 1][0], UTCDateTime()), _shifted(dialect, hour, minutes))
        for i, (_, minutes) in enumerate(segments[:-1])
    ]
    return case(*whens, else_=_shifted(dialect, hour, segments[-1][1]))


@dataclass(frozen=True, slots=True)
class _Part:
    """Rows of one rollup a query sums: the group expressions, the WHERE, and whether they are taken
    away (a local day's hours counted in another UTC day's daily row)."""

    table: Table
    groups: list[tuple[str, ColumnElement[Any]]]
    where: list[ColumnElement[bool]]
    negative: bool = False


def _hours_in(t: Table, ranges: Hours) -> ColumnElement[bool]:
    return or_(*(and_(t.c.hour >= a, t.c.hour < b) for a, b in ranges))


def _plan(
    db: Db,
    w: Window,
    by: Sequence[str],
    filters: Mapping[str, str | None],
    *,
    histograms: bool = False,
    keep: Mapping[str, Collection[str]] | None = None,
) -> list[_Part]:
    """The rollup rows a query reads (see the module's docstring)."""
    if len(set(by)) != len(by):
        raise ValueError("group_by names a column twice")
    if "day" in by and "hour" in by:
        raise ValueError("group by day or by hour, not both")
    unknown = [name for name in by if name not in _COLUMNS and name not in ("day", "hour")]
    if unknown:
        raise ValueError(f"cannot group by {unknown[0]!r}: use day, hour, {', '.join(_COLUMNS)}")
    given = {column: value for column, value in filters.items() if value is not None}
    columns = {_COLUMNS[n] for n in by if n in _COLUMNS} | set(given)
    hourly = grain_for(columns, histograms=histograms)
    assert hourly is not None  # the finest has every column
    daily = grain_for(columns, histograms=histograms, daily=True)
    dialect = _dialect(db)

    def part(t: Table, where: list[ColumnElement[bool]], day: Any, negative: bool = False) -> _Part:
        groups = []
        for name in by:
            if name == "day":
                groups.append((name, day))
            elif name == "hour":
                groups.append((name, t.c.hour))
            else:
                column = t.c[_COLUMNS[name]]
                if keep and name in keep:
                    column = case((column.in_(sorted(keep[name])), column), else_=literal(OTHER))
                groups.append((name, column))
        where += [t.c[column] == value for column, value in given.items()]
        return _Part(t, groups, where, negative)

    how = None if daily is None or "hour" in by else split(w, "day" in by)
    if how is None:
        within = [hourly.c.hour >= w.start, hourly.c.hour < w.end]
        return [part(hourly, within, _local_day(dialect, w, hourly) if "day" in by else None)]
    first, last = how.days
    parts = [part(daily, [daily.c.day >= first, daily.c.day <= last], daily.c.day)]
    if how.plus:
        parts.append(part(hourly, [_hours_in(hourly, how.plus)], _local_day(dialect, w, hourly)))
    if how.minus:
        utc_day = _shifted(dialect, hourly.c.hour, 0)
        parts.append(part(hourly, [_hours_in(hourly, how.minus)], utc_day, negative=True))
    return parts


def _label(name: str, value: Any, w: Window) -> Any:
    """A group value as returned: day a date, hour an aware datetime in the zone, '' as None."""
    if name == "day":
        return value if isinstance(value, date) else date.fromisoformat(value)
    if name == "hour":
        return value.astimezone(w.zone)
    return value or None


Columns = Callable[[_Part], tuple[list[ColumnElement[Any]], list[ColumnElement[bool]]]]


def _union(parts: list[_Part], columns: Columns) -> Any:
    """One FROM of all the parts' rows: g_<group>... then the labelled expressions `columns(part)`
    gives (with any condition of its own)."""

    def rows(p: _Part) -> Select[Any]:
        groups = [expr.label(f"g_{name}") for name, expr in p.groups]
        exprs, where = columns(p)
        # The table first: a table function among the columns (json_each) reads the row before it.
        return select(*groups, *exprs).select_from(p.table).where(*p.where, *where)

    selects = [rows(p) for p in parts]
    return (union_all(*selects) if len(selects) > 1 else selects[0]).subquery()


async def totals(
    db: Db,
    w: Window,
    *,
    group_by: Sequence[GroupBy] = (),
    team_id: str | None = None,
    key_id: str | None = None,
    model: str | None = None,
    tier: str | None = None,
    top: int | None = None,
    keep: Mapping[GroupBy, Collection[str]] | None = None,
) -> list[dict[str, Any]]:
    """Sums over the window, one row per group (one row in all without `group_by`).

    Rows: the group columns (day: date; hour: aware datetime in the zone; team, key, model, tier,
    error_type: str, None where absent) and requests, errors (any error type), rate_limited,
    budget_refused, prompt_tokens, completion_tokens, cached_tokens (cache reads), cache_write_tokens,
    cost_usd, baseline_cost_usd,
    savings_usd (= baseline - cost, exact Decimals) and unpriced (requests whose cost or baseline is
    unknown: counted at cost, no saving). Sorted by the groups ascending, or with `top`, the `top`
    groups by cost descending, each row with `all_cost_usd`, the cost of every group (for shares).
    Empty groups are not returned; without group_by there is always a row.
    `keep`: for a group_by name, the values kept as groups of their own ('' for absent); the others
    are summed into one group, OTHER.
    """
    if top is not None and not 1 <= top <= 10_000:
        raise ValueError("top must be between 1 and 10000")
    filters = {"team_id": team_id, "key_id": key_id, "model": model, "tier": tier}
    parts = _plan(db, w, group_by, filters, keep=keep)

    def sums(p: _Part) -> tuple[list[ColumnElement[Any]], list[ColumnElement[bool]]]:
        return [(-p.table.c[n] if p.negative else p.table.c[n]).label(n) for n in _SUMMED], []

    src = _union(parts, sums)
    keys = [src.c[f"g_{name}"] for name in group_by]
    cost = func.coalesce(func.sum(src.c.cost_usd), 0)
    stmt = select(
        *keys,
        # PostgreSQL sums bigints as numeric: back to bigint, which decodes ~10x faster.
        *(cast(func.coalesce(func.sum(src.c[n]), 0), BigInteger).label(n) for n in _COUNTS),
        func.sum(src.c.cost_usd).label("cost_usd"),
        func.sum(src.c.baseline_cost_usd).label("baseline_cost_usd"),
    )
    if top and keys:
        # Computed over every group before LIMIT keeps the top ones.
        stmt = stmt.add_columns(func.sum(func.sum(src.c.cost_usd)).over().label("all_cost_usd"))
    if keys:
        stmt = stmt.group_by(*keys)
        if any(p.negative for p in parts):
            # A group whose only rows were taken away again (hours of another local day).
            stmt = stmt.having(func.sum(src.c.requests) != 0)
        stmt = stmt.order_by(cost.desc(), *keys).limit(top) if top else stmt.order_by(*keys)
    rows = []
    for row in (await db.execute(stmt)).mappings():
        out: dict[str, Any] = {name: _label(name, row[f"g_{name}"], w) for name in group_by}
        for field in _COUNTS:
            out[field] = row[field]
        spent = row["cost_usd"] or Decimal(0)
        baseline = row["baseline_cost_usd"] or Decimal(0)
        out.update(cost_usd=spent, baseline_cost_usd=baseline, savings_usd=baseline - spent)
        if "all_cost_usd" in row:
            out["all_cost_usd"] = row["all_cost_usd"] or Decimal(0)
        rows.append(out)
    return rows


async def histograms(
    db: Db,
    w: Window,
    metric: Metric,
    *,
    group_by: Sequence[GroupBy] = (),
    team_id: str | None = None,
    key_id: str | None = None,
    model: str | None = None,
    tier: str | None = None,
) -> list[dict[str, Any]]:
    """The metric's histogram over the window per group: rows of the group columns and "buckets",
    {bucket: count} (gateway.accounting.histogram's scheme), sorted by the groups. Groups with nothing
    counted are left out."""
    name = _HIST_COLUMN.get(metric)
    if name is None:
        raise ValueError(f"metric must be one of {', '.join(_HIST_COLUMN)}")
    if "error_type" in group_by:
        raise ValueError("latency and TTFT are of successful requests only: no group by error_type")
    filters = {"team_id": team_id, "key_id": key_id, "model": model, "tier": tier}
    parts = _plan(db, w, group_by, filters, histograms=True)
    pg = _dialect(db) == "postgresql"

    def entries(p: _Part) -> tuple[list[ColumnElement[Any]], list[ColumnElement[bool]]]:
        # The map's entries as rows.
        column = p.table.c[name]
        if pg:
            each = func.jsonb_each_text(column).table_valued("key", "value", joins_implicitly=True)
            count: ColumnElement[Any] = cast(each.c.value, BigInteger)
        else:
            each = func.json_each(column).table_valued("key", "value", joins_implicitly=True)
            count = each.c.value
        n = (-count if p.negative else count).label("n")
        return [each.c.key.label("bucket"), n], [column.is_not(None)]

    src = _union(parts, entries)
    keys = [src.c[f"g_{g}"] for g in group_by]
    stmt = select(*keys, src.c.bucket, cast(func.sum(src.c.n), BigInteger)).group_by(*keys, src.c.bucket)
    if any(p.negative for p in parts):
        stmt = stmt.having(func.sum(src.c.n) != 0)
    out: dict[tuple[Any, ...], dict[int, int]] = {}
    for row in (await db.execute(stmt)).all():
        labels = tuple(_label(g, v, w) for g, v in zip(group_by, row, strict=False))
        bucket, n = int(row[-2]), int(row[-1])
        out.setdefault(labels, {})[bucket] = n
    ordered = sorted(out.items(), key=lambda kv: tuple((v is None, v) for v in kv[0]))
    return [{**dict(zip(group_by, labels, strict=True)), "buckets": counts} for labels, counts in ordered]


async def percentiles(
    db: Db,
    w: Window,
    metric: Literal["latency", "ttft"] = "latency",
    *,
    qs: Sequence[float] = (0.5, 0.95, 0.99),
    group_by: Sequence[GroupBy] = (),
    team_id: str | None = None,
    key_id: str | None = None,
    model: str | None = None,
    tier: str | None = None,
) -> list[dict[str, Any]]:
    """Latency or TTFT percentiles (ms) over the window per group, from the histograms: rows of the
    group columns, "count" and "p50", "p95"... (named after each q: 0.999 -> "p99.9"). Each figure is
    the middle of the bucket the exact nearest-rank percentile falls in (buckets ~10% wide)."""
    if metric not in (LATENCY, TTFT):
        raise ValueError("percentiles are of latency or ttft")
    rows = await histograms(
        db, w, metric, group_by=group_by, team_id=team_id, key_id=key_id, model=model, tier=tier
    )
    out = []
    for row in rows:
        counts = row.pop("buckets")
        row["count"] = sum(counts.values())
        for q in qs:
            row[_q_name(q)] = percentile(counts, q)
        out.append(row)
    return out


def difficulty_distribution(buckets: Mapping[int, int]) -> list[dict[str, Any]]:
    """A difficulty histogram as rows {"low", "high", "requests"}, every bucket, zeros included."""
    out = []
    for b in range(DIFFICULTY_BUCKETS):
        low, high = difficulty_bounds(b)
        out.append({"low": low, "high": high, "requests": int(buckets.get(b, 0))})
    return out


def _q_name(q: float) -> str:
    return f"p{q * 100:.10g}"
