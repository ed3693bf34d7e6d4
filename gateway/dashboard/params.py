"""What every dashboard view is asked about: a reporting range of whole days in an IANA time zone, and
whose data (a team, a key, a model).

A range is [local midnight of `start`, local midnight after `end`) in its zone: the same instants
whatever the database stores (UTC), so a zone switch moves requests between days and keeps the
range's total whenever both zones' ranges cover the same hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Literal
from zoneinfo import ZoneInfo, available_timezones

from gateway.errors import bad_request

Bucket = Literal["hour", "day"]
# The longest range one question may ask about (and so the previous period's length).
MAX_DAYS = 366
# Earlier than this a previous period would leave the calendar; nobody's traffic is that old.
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2999, 12, 31)


@cache
def zone_names() -> frozenset[str]:
    return frozenset(available_timezones() | {"UTC"})


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; a 400 for anything tzdata does not list (no file paths, no offsets)."""
    if name not in zone_names():
        raise bad_request(f"unknown time zone {name[:64]!r}: use an IANA name such as Europe/Paris", "tz")
    return ZoneInfo(name)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant at which `day` begins in `tz`."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Range:
    start: date  # first local day, inclusive
    end: date  # last local day, inclusive
    tz: ZoneInfo

    @property
    def tz_name(self) -> str:
        return self.tz.key

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def bounds(self) -> tuple[datetime, datetime]:
        """[first instant, instant after the last) in UTC."""
        return local_midnight(self.start, self.tz), local_midnight(self.end + timedelta(days=1), self.tz)

    def previous(self) -> Range:
        """The range of the same number of days just before this one."""
        return Range(self.start - timedelta(days=self.days), self.start - timedelta(days=1), self.tz)

    def local_day(self, ts: datetime) -> date:
        return ts.astimezone(self.tz).date()

    def axis(self, bucket: Bucket) -> list[datetime]:
        """Every bucket's first instant (UTC), in order: local days, or UTC hours (a local hour is a
        UTC hour in every zone with a whole-hour offset; a half-hour zone labels them :30)."""
        first, after = self.bounds()
        if bucket == "day":
            return [local_midnight(self.start + timedelta(days=i), self.tz) for i in range(self.days)]
        hour = first.replace(minute=0, second=0, microsecond=0)
        out = []
        while hour < after:
            out.append(hour)
            hour += timedelta(hours=1)
        return out

    def bucket_of(self, ts: datetime, bucket: Bucket) -> datetime:
        """The first instant (UTC) of the bucket that holds `ts`."""
        if bucket == "day":
            return local_midnight(self.local_day(ts), self.tz)
        return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)

    def label(self, start: datetime, bucket: Bucket) -> str:
        """A bucket as people read it in the zone: '2026-03-01', or '2026-03-01T13:00:00+01:00'."""
        local = start.astimezone(self.tz)
        return local.date().isoformat() if bucket == "day" else local.isoformat()

    def describe(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "tz": self.tz_name}


def make_range(start: date | None, end: date | None, tz_name: str, *, default_days: int = 7) -> Range:
    """The range the query names; defaults: the last `default_days` days up to today in the zone."""
    tz = zone(tz_name)
    if end is None:
        end = datetime.now(tz).date() if start is None else start + timedelta(days=default_days - 1)
    if start is None:
        start = end - timedelta(days=default_days - 1)
    for name, day in (("start", start), ("end", end)):
        if not FIRST_DAY <= day <= LAST_DAY:
            raise bad_request(f"{name} must be between {FIRST_DAY} and {LAST_DAY}", name)
    if start > end:
        raise bad_request("start is after end", "start")
    if (end - start).days + 1 > MAX_DAYS:
        raise bad_request(f"a range spans at most {MAX_DAYS} days", "end")
    return Range(start, end, tz)
