"""Dashboard queries over the hourly rollups: totals, savings, errors and percentiles for a range of
time in a reporting time zone, grouped by day or hour in that zone and by team, key, model, tier or
error type.

They read the hourly rollups only, never the request log: each query the smallest of the four
(gateway.accounting.store.GRAINS) that has the columns it groups and filters by (the whole gateway
by model or by team, a team by model, anything by key). Plain async functions returning plain data
(dicts of str, int, Decimal, date, datetime, float); the pages and JSON endpoints format them.

Time: `window(start, end, tz)` is [start, end) in an IANA zone, as the UTC hours that cover it. An hour
counts in the local day (and range) where it starts; in zones whose offset is a whole number of hours
(nearly all) local days are therefore exact. Where the offset has minutes (Asia/Kolkata +05:30), a
local day is the UTC hours that start in it, i.e. it begins up to 45 minutes after local midnight
(bounds move up to the next whole UTC hour); totals of a range are still the sum of its days.
With tz="UTC" a range of whole days gives exactly what /admin/spend (daily_spend) gives for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import BigInteger, Date, Table, case, cast, func, literal, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from gateway.accounting.histogram import (
    DIFFICULTY,
    DIFFICULTY_BUCKETS,
    LATENCY,
    TTFT,
    difficulty_bounds,
    percentile,
)
from gateway.accounting.store import GRAINS
from gateway.db.types import UTCDateTime

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
    "unpriced",
)

# group_by names -> columns.
_COLUMNS: Mapping[str, str] = {
    "team": "team_id",
    "key": "key_id",
    "model": "model",
    "tier": "tier",
    "error_type": "error_type",
}
_HIST_COLUMN: Mapping[str, str] = {LATENCY: "latency_hist", TTFT: "ttft_hist", DIFFICULTY: "difficulty_hist"}
# The hourly rollups a query may read, the smallest first (gateway.accounting.store.GRAINS).
_BY_SIZE = sorted(GRAINS, key=lambda g: ("team_id" in g.key, "key_id" in g.key, len(g.key)))


def grain_for(columns: set[str], *, histograms: bool = False) -> Table:
    """The smallest hourly rollup that has these columns (and histograms, if asked)."""
    for grain in _BY_SIZE:
        if columns <= set(grain.key) and (grain.histograms or not histograms):
            return grain.table
    raise AssertionError(f"no hourly rollup has {sorted(columns)}")  # the finest has them all


MAX_HOURS = 24 * 366 * 3


class InvalidZoneError(ValueError):
    """Not an IANA time zone name this host knows."""


def zone_of(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidZoneError(f"unknown time zone {tz!r}: use an IANA name such as Europe/Berlin") from exc


@dataclass(frozen=True, slots=True)
class Window:
    """[start, end) in `zone`: the UTC hours h with start <= h < end."""

    zone: ZoneInfo
    start: datetime  # UTC, on the hour
    end: datetime  # UTC, on the hour
    # The bounds as asked, in the zone (for previous()).
    local_start: datetime
    local_end: datetime

    @property
    def hours(self) -> int:
        return int((self.end - self.start).total_seconds()) // 3600

    def previous(self) -> Window:
        """The period of the same length just before: the same number of local days when both bounds
        are local midnights (a DST change does not shift it), else the same duration."""
        ls, le = self.local_start, self.local_end
        if ls.timetz() == time(0, tzinfo=ls.tzinfo) and le.timetz() == time(0, tzinfo=le.tzinfo):
            days = (le.date() - ls.date()).days
            return window(ls.date() - timedelta(days=days), ls.date(), self.zone.key)
        span = le.astimezone(UTC) - ls.astimezone(UTC)
        return window(ls.astimezone(UTC) - span, ls.astimezone(UTC), self.zone.key)


def _instant(value: date | datetime, zone: ZoneInfo) -> datetime:
    """A bound as an aware datetime: a date is its midnight in `zone`, a naive datetime its wall time
    there (the earlier of two in a repeated hour), an aware one as given."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(0))
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(zone)


def _ceil_hour(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    floor = at.replace(minute=0, second=0, microsecond=0)
    return floor if floor == at else floor + timedelta(hours=1)


def window(start: date | datetime, end: date | datetime, tz: str = "UTC") -> Window:
    """[start, end) in the IANA zone `tz` (dates are local midnights). ValueError when end is not
    after start or the range exceeds three years; InvalidZoneError for an unknown zone."""
    zone = zone_of(tz)
    ls, le = _instant(start, zone), _instant(end, zone)
    s, e = _ceil_hour(ls), _ceil_hour(le)
    if le <= ls:
        raise ValueError("end must be after start")
    if (e - s) > timedelta(hours=MAX_HOURS):
        raise ValueError("the range is longer than three years")
    return Window(zone, s, e, ls, le)


def offsets(w: Window) -> list[tuple[datetime, int]]:
    """The zone's UTC offset in minutes over the window's hours, each taken at the hour's start:
    [(from this UTC hour on, offset), ...], the first from w.start."""

    def off(at: datetime) -> int:
        delta = at.astimezone(w.zone).utcoffset()
        return int(delta.total_seconds()) // 60 if delta is not None else 0

    hour, day = timedelta(hours=1), timedelta(days=1)
    last = w.end - hour
    out = [(w.start, off(w.start))]
    at = w.start
    while at < last:
        nxt = min(at + day, last)
        if off(nxt) == out[-1][1]:
            at = nxt
            continue
        # Bisect (at, nxt] for the first hour with the new offset (zones change it months apart).
        lo, hi = at, nxt
        while hi - lo > hour:
            mid = lo + hour * ((hi - lo) // hour // 2)
            if off(mid) == out[-1][1]:
                lo = mid
            else:
                hi = mid
        out.append((hi, off(hi)))
        at = hi
    return out


def _dialect(db: Db) -> str:
    if isinstance(db, AsyncConnection):
        return db.dialect.name
    return db.get_bind().dialect.name


def _local_day(dialect: str, w: Window, t: Table) -> ColumnElement[Any]:
    """SQL: the local date of each row's hour (a CASE over the window's offsets)."""
    segments = offsets(w)
    hour = t.c.hour
    if dialect == "postgresql":
        utc = func.timezone("UTC", hour)  # timestamptz -> UTC wall time

        def shifted(minutes: int) -> ColumnElement[Any]:
            return cast(utc + literal_column(f"INTERVAL '{minutes} minutes'"), Date)
    else:

        def shifted(minutes: int) -> ColumnElement[Any]:
            return func.date(hour, literal(f"{minutes:+d} minutes"))

    if len(segments) == 1:
        return shifted(segments[0][1])
    whens = [
        (hour < literal(segments[i + 1][0], UTCDateTime()), shifted(minutes))
        for i, (_, minutes) in enumerate(segments[:-1])
    ]
    return case(*whens, else_=shifted(segments[-1][1]))


def _query(
    db: Db,
    w: Window,
    by: Sequence[str],
    filters: Mapping[str, str | None],
    *,
    histograms: bool = False,
) -> tuple[Table, list[tuple[str, ColumnElement[Any]]], list[ColumnElement[bool]]]:
    """The rollup to read, the group expressions and the WHERE clause of a query."""
    if len(set(by)) != len(by):
        raise ValueError("group_by names a column twice")
    if "day" in by and "hour" in by:
        raise ValueError("group by day or by hour, not both")
    unknown = [name for name in by if name not in _COLUMNS and name not in ("day", "hour")]
    if unknown:
        raise ValueError(f"cannot group by {unknown[0]!r}: use day, hour, {', '.join(_COLUMNS)}")
    given = {column: value for column, value in filters.items() if value is not None}
    t = grain_for({_COLUMNS[n] for n in by if n in _COLUMNS} | set(given), histograms=histograms)
    groups: list[tuple[str, ColumnElement[Any]]] = []
    for name in by:
        if name == "day":
            groups.append((name, _local_day(_dialect(db), w, t)))
        elif name == "hour":
            groups.append((name, t.c.hour))
        else:
            groups.append((name, t.c[_COLUMNS[name]]))
    where = [t.c.hour >= w.start, t.c.hour < w.end]
    where += [t.c[column] == value for column, value in given.items()]
    return t, groups, where


def _label(name: str, value: Any, w: Window) -> Any:
    """A group value as returned: day a date, hour an aware datetime in the zone, '' as None."""
    if name == "day":
        return value if isinstance(value, date) else date.fromisoformat(value)
    if name == "hour":
        return value.astimezone(w.zone)
    return value or None


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
) -> list[dict[str, Any]]:
    """Sums over the window, one row per group (one row in all without `group_by`).

    Rows: the group columns (day: date; hour: aware datetime in the zone; team, key, model, tier,
    error_type: str, None where absent) and requests, errors (any error type), rate_limited,
    budget_refused, prompt_tokens, completion_tokens, cached_tokens, cost_usd, baseline_cost_usd,
    savings_usd (= baseline - cost, exact Decimals) and unpriced (requests whose cost or baseline is
    unknown: counted at cost, no saving). Sorted by the groups ascending, or with `top`, the `top`
    groups by cost descending. Empty groups are not returned; without group_by there is always a row.
    """
    if top is not None and not 1 <= top <= 10_000:
        raise ValueError("top must be between 1 and 10000")
    filters = {"team_id": team_id, "key_id": key_id, "model": model, "tier": tier}
    t, groups, where = _query(db, w, group_by, filters)
    c = t.c
    cost = func.coalesce(func.sum(c.cost_usd), 0)
    stmt = select(
        *(expr.label(f"g_{name}") for name, expr in groups),
        *(func.coalesce(func.sum(c[n]), 0).label(n) for n in _COUNTS),
        func.sum(c.cost_usd).label("cost_usd"),
        func.sum(c.baseline_cost_usd).label("baseline_cost_usd"),
    ).where(*where)
    if groups:
        keys = [expr for _, expr in groups]
        stmt = stmt.group_by(*keys)
        stmt = stmt.order_by(cost.desc(), *keys).limit(top) if top else stmt.order_by(*keys)
    rows = []
    for row in (await db.execute(stmt)).mappings():
        out: dict[str, Any] = {name: _label(name, row[f"g_{name}"], w) for name, _ in groups}
        for field in _COUNTS:
            out[field] = int(row[field])
        spent = row["cost_usd"] or Decimal(0)
        baseline = row["baseline_cost_usd"] or Decimal(0)
        out.update(cost_usd=spent, baseline_cost_usd=baseline, savings_usd=baseline - spent)
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
    t, groups, where = _query(db, w, group_by, filters, histograms=True)
    column = t.c[name]
    dialect = _dialect(db)
    # The map's entries as rows (a table function in FROM sees the row before it on both dialects).
    if dialect == "postgresql":
        each = func.jsonb_each_text(column).table_valued("key", "value", joins_implicitly=True)
        count = func.sum(cast(each.c.value, BigInteger))
    else:
        each = func.json_each(column).table_valued("key", "value", joins_implicitly=True)
        count = func.sum(each.c.value)
    keys = [expr.label(f"g_{name}") for name, expr in groups]
    stmt = (
        select(*keys, each.c.key, count)
        .select_from(t, each)
        .where(*where, column.is_not(None))
        .group_by(*(expr for _, expr in groups), each.c.key)
    )
    out: dict[tuple[Any, ...], dict[int, int]] = {}
    for row in (await db.execute(stmt)).all():
        labels = tuple(_label(name, v, w) for (name, _), v in zip(groups, row, strict=False))
        bucket, n = int(row[-2]), int(row[-1])
        out.setdefault(labels, {})[bucket] = n
    names = [name for name, _ in groups]
    ordered = sorted(out.items(), key=lambda kv: tuple((v is None, v) for v in kv[0]))
    return [{**dict(zip(names, labels, strict=True)), "buckets": counts} for labels, counts in ordered]


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
