"""Money and budget periods: exact conversions and the pure helpers that name a period's keys.

Money is held as integer nano-dollars (1 USD = 10**9). Nano rather than micro because the cheapest
models cost ~10 nano-dollars a token, so per-request rounding stays far below a cent over millions of
requests. The Lua side does its arithmetic in doubles, which are exact for integers below 2**53:
balances up to about $9,007,199 per budget subject are exact.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Literal

Period = Literal["daily", "weekly", "monthly", "total"]
PERIODS: tuple[str, ...] = ("daily", "weekly", "monthly", "total")

NANO_PER_USD = 10**9
_NANO = Decimal(NANO_PER_USD)
_ONE = Decimal(1)
# Budget keys outlive their period a little, so a request settling just after midnight still finds
# the period it reserved in.
PERIOD_SLACK = timedelta(days=1)


def usd_to_nano_up(usd: Decimal) -> int:
    """Reservations round up: a worst case must never be understated."""
    return int((usd * _NANO).to_integral_value(rounding=ROUND_CEILING))


def usd_to_nano(usd: Decimal) -> int:
    """Actual costs round to the nearest unit, so many small requests do not drift one way."""
    return int((usd * _NANO).to_integral_value(rounding=ROUND_HALF_UP))


def nano_to_usd(nano: int) -> Decimal:
    return Decimal(nano) / _NANO


def worst_case_usd(
    prompt_tokens: int, max_tokens: int, input_per_token: Decimal, output_per_token: Decimal
) -> Decimal:
    """What the budget reserves: every prompt token uncached plus a full-length completion."""
    return prompt_tokens * input_per_token + max_tokens * output_per_token


def affordable_tokens(
    held_nano: int, prompt_tokens: int, input_per_token: Decimal, output_per_token: Decimal
) -> int:
    """The most output tokens `held_nano` pays for after the prompt: `worst_case_usd` inverted and
    rounded down, so that the answer's worst case never exceeds what is held."""
    room = nano_to_usd(held_nano) - prompt_tokens * input_per_token
    if room <= 0:
        return 0
    # `//` is Decimal's exact integer division: a rounded quotient could round up past the room.
    return int(room // output_per_token)


def period_start(period: Period | str, now: datetime) -> str:
    """The key part naming the period `now` (UTC) falls in."""
    now = now.astimezone(UTC) if now.tzinfo is not None else now.replace(tzinfo=UTC)
    if period == "daily":
        return now.strftime("%Y-%m-%d")
    if period == "weekly":
        year, week, _ = now.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "monthly":
        return now.strftime("%Y-%m")
    if period == "total":
        return "total"
    raise ValueError(f"unknown budget period {period!r}")


def period_end(period_start_key: str) -> datetime | None:
    """When the period named by `period_start` ends (UTC); None for the total budget."""
    if period_start_key == "total":
        return None
    if "-W" in period_start_key:
        year, week = period_start_key.split("-W")
        monday = date.fromisocalendar(int(year), int(week), 1)
        start = datetime(monday.year, monday.month, monday.day, tzinfo=UTC)
        return start + timedelta(days=7)
    parts = [int(p) for p in period_start_key.split("-")]
    if len(parts) == 3:
        return datetime(parts[0], parts[1], parts[2], tzinfo=UTC) + timedelta(days=1)
    if len(parts) == 2:
        year, month = parts
        return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    raise ValueError(f"not a period key: {period_start_key!r}")


def period_first_day(period_start_key: str) -> date:
    """The first UTC day of the period named by `period_start` (1970-01-01 for the total budget)."""
    if period_start_key == "total":
        return date(1970, 1, 1)
    if "-W" in period_start_key:
        year, week = period_start_key.split("-W")
        return date.fromisocalendar(int(year), int(week), 1)
    parts = [int(p) for p in period_start_key.split("-")]
    if len(parts) == 3:
        return date(parts[0], parts[1], parts[2])
    if len(parts) == 2:
        return date(parts[0], parts[1], 1)
    raise ValueError(f"not a period key: {period_start_key!r}")


def period_expire_at(period_start_key: str) -> int:
    """Unix seconds at which a period's keys may go; 0 means never (the total budget)."""
    end = period_end(period_start_key)
    return 0 if end is None else int((end + PERIOD_SLACK).timestamp())
