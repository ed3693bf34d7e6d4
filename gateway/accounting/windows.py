"""Reporting windows: a range of time in an IANA zone as the UTC hours that cover it, and how a query
splits it between the daily rollups (whole UTC days) and the hourly ones (the rest).

An hour counts in the local day (and range) where it starts; in zones whose offset is a whole number
of hours (nearly all) local days are therefore exact. Where the offset has minutes (Asia/Kolkata
+05:30), a local day is the UTC hours that start in it, i.e. it begins up to 45 minutes after local
midnight (bounds move up to the next whole UTC hour); totals of a range are still the sum of its days.

Splitting (`split`): a query that does not group by time reads the UTC days wholly inside the window
from a daily rollup and only the hours at its two edges from an hourly one. A query by local day
reads each local day's UTC day of the same date from the daily rollup, minus that UTC day's hours
that belong to another local day, plus the window's hours that belong to this local day but lie in
another UTC day: in a zone n hours from UTC, about n hours a day instead of 24 (none in UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


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


Hours = tuple[tuple[datetime, datetime], ...]


@dataclass(frozen=True, slots=True)
class Split:
    """Where a window's figures are read: `days` (first, last UTC day, inclusive) from a daily rollup;
    `plus` hour ranges [from, to) added from an hourly one (by day: labelled with their
    local day); `minus` hour ranges taken away again (by day: from their UTC day's daily row)."""

    days: tuple[date, date]
    plus: Hours
    minus: Hours = ()


def _midnight(at: datetime) -> datetime:
    return datetime.combine(at.astimezone(UTC).date(), time(0), tzinfo=UTC)


def _ranges(hours: list[datetime]) -> Hours:
    """Sorted hours as [from, to) ranges of consecutive ones."""
    out: list[tuple[datetime, datetime]] = []
    for h in hours:
        if out and out[-1][1] == h:
            out[-1] = (out[-1][0], h + HOUR)
        else:
            out.append((h, h + HOUR))
    return tuple(out)


def split(w: Window, by_day: bool) -> Split | None:
    """How to read `w` with daily rollups (see the module's docstring); None when the hourly ones
    alone are the cheaper read (a window of less than a whole UTC day, or a zone about 12 hours from
    UTC by day)."""
    return _split(w.zone.key, w.start, w.end, by_day)


@lru_cache(maxsize=256)
def _split(tz: str, start: datetime, end: datetime, by_day: bool) -> Split | None:
    hours = int((end - start) / HOUR)
    if not by_day:
        first = _midnight(start + DAY - HOUR)  # the first UTC midnight at or after start
        last = _midnight(end)
        if last <= first:
            return None
        edges = [(start, first), (last, end)]
        return Split((first.date(), (last - DAY).date()), tuple((a, b) for a, b in edges if a < b))
    zone = ZoneInfo(tz)
    first_day = start.astimezone(zone).date()
    last_day = (end - HOUR).astimezone(zone).date()
    lo = min(start, datetime.combine(first_day, time(0), tzinfo=UTC))
    hi = max(end, datetime.combine(last_day + DAY, time(0), tzinfo=UTC))
    plus, minus = [], []
    at = lo
    while at < hi:
        if at.astimezone(zone).date() != at.date():
            if start <= at < end:
                plus.append(at)
            if first_day <= at.date() <= last_day:
                minus.append(at)
        at += HOUR
    if len(plus) + len(minus) >= 0.75 * hours:
        return None
    return Split((first_day, last_day), _ranges(plus), _ranges(minus))
