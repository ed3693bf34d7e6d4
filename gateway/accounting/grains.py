"""What a batch of request records adds to daily_spend and to the hourly and daily rollups (GRAINS):
summed in Python, once per batch, before gateway.accounting.store writes them."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import Table

from gateway.accounting.histogram import EDGES, difficulty_bucket
from gateway.accounting.record import RequestRecord
from gateway.db.models import (
    DailyKeyTotals,
    DailyModelSpend,
    DailyTeamSpend,
    DailyTeamTotals,
    HourlyModelSpend,
    HourlySpend,
    HourlyTeamSpend,
    HourlyTeamTotals,
)

# daily_spend: its key and what it sums.
DAILY_KEY = ("day", "team_id", "key_id", "model", "tier")
DAILY_SUMS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cost_usd",
    "errors",
)
# What every hourly and daily rollup sums, and the histograms of those that keep them.
HOURLY_SUMS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "unpriced",
    "errors",
    "rate_limited",
    "budget_refused",
)
HISTOGRAMS = ("latency_hist", "ttft_hist", "difficulty_hist")
_FULL_KEY = ("hour", "team_id", "key_id", "model", "tier", "error_type")


@dataclass(frozen=True, slots=True)
class Grain:
    """One rollup: its table, the columns that name a row (the UTC hour or day first), whether it
    keeps histograms."""

    table: Table
    key: tuple[str, ...]
    histograms: bool

    @property
    def columns(self) -> tuple[str, ...]:
        return self.key + HOURLY_SUMS + (HISTOGRAMS if self.histograms else ())

    @property
    def daily(self) -> bool:
        return self.key[0] == "day"


# The finest first: each of the others is it with dimensions dropped, per hour, then per UTC day
# (gateway.db.models). rollups() returns their rows in this order.
GRAINS: tuple[Grain, ...] = (
    Grain(HourlySpend.__table__, _FULL_KEY, True),  # type: ignore[arg-type]
    Grain(HourlyTeamSpend.__table__, ("hour", "team_id", "model", "tier", "error_type"), True),  # type: ignore[arg-type]
    Grain(HourlyModelSpend.__table__, ("hour", "model", "tier", "error_type"), True),  # type: ignore[arg-type]
    Grain(HourlyTeamTotals.__table__, ("hour", "team_id"), False),  # type: ignore[arg-type]
    Grain(DailyKeyTotals.__table__, ("day", "team_id", "key_id"), False),  # type: ignore[arg-type]
    Grain(DailyTeamSpend.__table__, ("day", "team_id", "model", "tier", "error_type"), True),  # type: ignore[arg-type]
    Grain(DailyModelSpend.__table__, ("day", "model", "tier", "error_type"), True),  # type: ignore[arg-type]
    Grain(DailyTeamTotals.__table__, ("day", "team_id"), False),  # type: ignore[arg-type]
)
N_SUMS = len(HOURLY_SUMS)


def _derivation(i: int) -> tuple[int, Callable[[tuple[Any, ...]], tuple[Any, ...]] | None, bool, bool]:
    """How rollups() sums GRAINS[i]: from the last rollup before it that has all its columns (and
    histograms, if it keeps them; hourly ones from hourly ones): (that one's index, its key's
    non-time columns picked as this one's, hour -> day, histograms)."""
    g = GRAINS[i]
    for j in range(i - 1, -1, -1):
        src = GRAINS[j]
        if set(g.key[1:]) <= set(src.key[1:]) and (src.histograms or not g.histograms):
            if src.daily and not g.daily:
                continue
            picks = [src.key.index(c) for c in g.key[1:]]
            getter = itemgetter(*picks)
            pick = (lambda k, get=getter: (get(k),)) if len(picks) == 1 else getter
            return j, pick if picks else None, g.daily and not src.daily, g.histograms
    raise AssertionError(f"{g.table.name} derives from no rollup before it")


_DERIVED = tuple(_derivation(i) for i in range(1, len(GRAINS)))


class Rollups(NamedTuple):
    """What a batch adds to daily_spend and to each rollup (`grains`, in GRAINS' order): rows of key
    columns, then sums, then (where kept) the histograms as {bucket: count} dicts or None. Unsorted:
    PostgreSQL sorts them (see _pg_upsert); SQLite has one writer at a time."""

    daily: list[tuple[Any, ...]]
    grains: list[list[tuple[Any, ...]]]


def error_key(r: RequestRecord) -> str:
    """The hourly rollups' error_type of a record: '' when it succeeded."""
    if r.status >= 400 or r.error_type is not None:
        return r.error_type or f"http_{r.status}"
    return ""


def _add_counts(into: dict[int, int], counts: dict[int, int]) -> None:
    for b, n in counts.items():
        into[b] = into.get(b, 0) + n


def rollups(records: Iterable[RequestRecord]) -> Rollups:
    """The deltas the records add to daily_spend and the hourly and daily rollups.

    A record's model is the deployment that answered, else the requested model; absent team, key and
    tier are ''. Errors: status >= 400 or an error type. Histograms: latency and TTFT of the requests
    that succeeded, difficulty of every routed one. One pass over the records into the finest hourly
    rows, then each other rollup from the smallest one it can be summed from (_DERIVED): the writer
    runs in the request process, and this is its CPU per record.
    """
    zero = Decimal(0)
    edges = EDGES
    # (hour as toordinal * 24 + hour, team, key, model, tier, error) -> sums and histograms
    cells: dict[tuple[Any, ...], list[Any]] = {}
    for r in records:
        ts = r.ts
        error = "" if r.status < 400 and r.error_type is None else error_key(r)
        where = (
            ts.toordinal() * 24 + ts.hour,
            r.team_id or "",
            r.key_id or "",
            r.deployment or r.requested_model,
            r.tier or "",
            error,
        )
        acc = cells.get(where)
        if acc is None:
            acc = cells[where] = [0, 0, 0, 0, 0, zero, zero, 0, {}, {}, {}]
        acc[0] += 1
        acc[1] += r.prompt_tokens
        acc[2] += r.completion_tokens
        acc[3] += r.cached_tokens
        acc[4] += r.cache_write_5m_tokens + r.cache_write_1h_tokens
        cost, baseline = r.cost_usd, r.baseline_cost_usd
        if cost is not None and baseline is not None:
            acc[5] += cost
            acc[6] += baseline
        else:
            # No saving claimed where either side is unknown: the baseline is the cost (or nothing).
            acc[7] += 1
            if cost is not None:
                acc[5] += cost
                acc[6] += cost
        if not error:
            counts = acc[8]
            b = bisect_right(edges, r.latency_ms)  # histogram.bucket_of, inlined
            counts[b] = counts.get(b, 0) + 1
            if (ttft := r.ttft_ms) is not None:
                counts = acc[9]
                b = bisect_right(edges, ttft)
                counts[b] = counts.get(b, 0) + 1
        if (difficulty := r.difficulty) is not None:
            counts = acc[10]
            b = difficulty_bucket(difficulty)
            counts[b] = counts.get(b, 0) + 1

    daily: dict[tuple[Any, ...], list[Any]] = {}
    finest: dict[tuple[Any, ...], list[Any]] = {}
    hours: dict[int, datetime] = {}
    for (hour, team, key, model, tier, error), acc in cells.items():
        at = hours.get(hour)
        if at is None:
            at = hours[hour] = datetime.fromordinal(hour // 24).replace(hour=hour % 24, tzinfo=UTC)
        n, prompt, completion, cached, written, cost, baseline, unpriced, latency, ttft, difficulty = acc
        failed = n if error else 0
        finest[(at, team, key, model, tier, error)] = [
            n,
            prompt,
            completion,
            cached,
            written,
            cost,
            baseline,
            unpriced,
            failed,
            n if error == "rate_limit_error" else 0,
            n if error == "budget_exceeded" else 0,
            latency,
            ttft,
            difficulty,
        ]
        day = daily.get(k := (at.date(), team, key, model, tier))
        if day is None:
            day = daily[k] = [0, 0, 0, 0, 0, zero, 0]
        day[0] += n
        day[1] += prompt
        day[2] += completion
        day[3] += cached
        day[4] += written
        day[5] += cost
        day[6] += failed
    # Every other rollup summed from the one it derives from (_DERIVED): the finest rows only for
    # the two that need their columns, the others from those far fewer rows.
    built = [finest]
    for source, picks, to_day, histograms in _DERIVED:
        rows: dict[tuple[Any, ...], list[Any]] = {}
        for k, v in built[source].items():
            when = k[0].date() if to_day else k[0]
            coarse = (when, *picks(k)) if picks is not None else (when,)
            row = rows.get(coarse)
            if row is None:
                rows[coarse] = (
                    [*v[:N_SUMS], dict(v[-3]), dict(v[-2]), dict(v[-1])] if histograms else v[:N_SUMS]
                )
                continue
            for i in range(N_SUMS):
                row[i] += v[i]
            if histograms:
                _add_counts(row[N_SUMS], v[-3])
                _add_counts(row[N_SUMS + 1], v[-2])
                _add_counts(row[N_SUMS + 2], v[-1])
        built.append(rows)
    grains = []
    for grain, rows in zip(GRAINS, built, strict=True):
        if grain.histograms:
            grains.append(
                [(*k, *v[:N_SUMS], v[-3] or None, v[-2] or None, v[-1] or None) for k, v in rows.items()]
            )
        else:
            grains.append([(*k, *v[:N_SUMS]) for k, v in rows.items()])
    return Rollups([(*k, *v) for k, v in daily.items()], grains)
