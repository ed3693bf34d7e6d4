"""Pure helpers: money conversion, period keys, header formatting, the error body."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from gateway.limits import (
    Admission,
    denial_error,
    nano_to_usd,
    period_end,
    period_start,
    usd_to_nano,
    usd_to_nano_up,
    worst_case_usd,
)
from gateway.limits.model import format_duration
from gateway.limits.money import period_expire_at

D = Decimal


def test_nano_conversions_round_the_right_way() -> None:
    assert usd_to_nano(D("1.00")) == 10**9
    assert usd_to_nano_up(D("0.0000000001")) == 1
    assert usd_to_nano(D("0.0000000001")) == 0
    assert usd_to_nano(D("0.0000000005")) == 1
    assert usd_to_nano_up(D("0.000000002")) == 2
    assert nano_to_usd(123) == D("0.000000123")
    # 1000 prompt tokens at $0.15/Mtok + 500 completion at $0.60/Mtok
    worst = worst_case_usd(1000, 500, D("0.15") / 10**6, D("0.60") / 10**6)
    assert worst == D("0.00045") and usd_to_nano_up(worst) == 450_000


@pytest.mark.parametrize(
    ("period", "now", "key", "end"),
    [
        ("daily", datetime(2024, 12, 31, 23, 59, tzinfo=UTC), "2024-12-31", datetime(2025, 1, 1, tzinfo=UTC)),
        ("monthly", datetime(2024, 12, 5, tzinfo=UTC), "2024-12", datetime(2025, 1, 1, tzinfo=UTC)),
        ("monthly", datetime(2024, 2, 29, tzinfo=UTC), "2024-02", datetime(2024, 3, 1, tzinfo=UTC)),
        ("weekly", datetime(2024, 12, 30, tzinfo=UTC), "2025-W01", datetime(2025, 1, 6, tzinfo=UTC)),
        ("weekly", datetime(2024, 5, 5, 12, tzinfo=UTC), "2024-W18", datetime(2024, 5, 6, tzinfo=UTC)),
        ("total", datetime(2024, 5, 5, tzinfo=UTC), "total", None),
    ],
)
def test_periods(period: str, now: datetime, key: str, end: datetime | None) -> None:
    assert period_start(period, now) == key
    assert period_end(key) == end
    assert period_expire_at(key) == (0 if end is None else int((end + timedelta(days=1)).timestamp()))


def test_period_uses_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert period_start("daily", datetime(2024, 6, 1, 3, 0, tzinfo=tokyo)) == "2024-05-31"
    with pytest.raises(ValueError):
        period_start("hourly", datetime.now(UTC))


def test_duration_format() -> None:
    assert [format_duration(s) for s in (0, 0.02, 1.5, 12.4, 360, 3725)] == [
        "0s",
        "20ms",
        "1.5s",
        "12s",
        "6m0s",
        "1h2m5s",
    ]


def test_rate_limit_error() -> None:
    adm = Admission(
        False,
        "rpm",
        "key:abc",
        2.5,
        limit_requests=60,
        remaining_requests=0,
        reset_requests=2.5,
        limit=60,
        used=60,
        requested=1,
    )
    d = denial_error(adm)
    assert d.status == 429
    err = d.body()["error"]
    assert (err["type"], err["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "key abc" in err["message"] and "requests per min" in err["message"]
    assert d.headers["retry-after"] == "3" and d.headers["retry-after-ms"] == "2500"
    assert d.headers["x-ratelimit-remaining-requests"] == "0"
    assert d.headers["x-ratelimit-reset-requests"] == "2.5s"


def test_budget_error_names_the_subject_and_limit() -> None:
    adm = Admission(False, "budget", "team:t1", 1.0, limit=D("1.00"), used=D("0.95"), requested=D("0.1"))
    d = denial_error(adm)
    err = d.body()["error"]
    assert d.status == 429
    assert (err["type"], err["code"]) == ("budget_exceeded", "budget_exceeded")
    assert "team t1" in err["message"] and "$1.00" in err["message"]
    never = Admission(False, "budget", "key:k", math.inf, limit=D("1"), used=D(0), requested=D("2"))
    d = denial_error(never)
    assert "retry-after" not in d.headers and "max_tokens" in d.body()["error"]["message"]


def test_unavailable_error_is_a_503() -> None:
    d = denial_error(Admission(False, "unavailable", None, 0.7))
    assert d.status == 503 and d.headers["retry-after"] == "1"
    assert d.body()["error"]["code"] == "rate_limiter_unavailable"
