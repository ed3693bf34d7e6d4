"""When a call may overlap its limiter round trip: only with fresh figures and room to spare everywhere."""

from __future__ import annotations

from decimal import Decimal

from gateway.limits import Admission, BudgetSpec, LimitSpec
from gateway.limits.headroom import Headroom
from gateway.limits.model import WindowState
from gateway.limits.money import usd_to_nano

KEY = LimitSpec("key:k", rpm=100, tpm=10_000)
TEAM = LimitSpec("team:t", rpm=1000)
BUDGET = BudgetSpec("team:t", Decimal("1.00"), "total", "total")


def answer(room: Headroom, requests: int, tokens: int, spent_usd: str, held_usd: str, now: float) -> None:
    """One acquire sent and answered: KEY at `requests`/`tokens` used, TEAM at 0, BUDGET as given."""
    room.sent(0, 0)
    adm = Admission(
        True,
        windows=[WindowState(KEY, requests, tokens, 60.0), WindowState(TEAM, 0, 0, 60.0)],
        budget_use=[(usd_to_nano(Decimal(spent_usd)), usd_to_nano(Decimal(held_usd)))],
    )
    room.answered([BUDGET], 0, 0, adm, now)


def clear(room: Headroom, now: float = 10.0, est: int = 100, reserve_usd: str = "0.01") -> bool:
    return room.clear([KEY, TEAM], [BUDGET], est, usd_to_nano(Decimal(reserve_usd)), now)


def test_nothing_known_waits() -> None:
    assert not clear(Headroom())


def test_room_everywhere_overlaps() -> None:
    room = Headroom(fraction=0.25)
    answer(room, 10, 1000, "0.10", "0.05", now=10.0)
    assert clear(room)


def test_stale_figures_wait() -> None:
    room = Headroom(fraction=0.25, max_age_s=1.0)
    answer(room, 10, 1000, "0.10", "0.05", now=10.0)
    assert clear(room, now=10.9)
    assert not clear(room, now=11.1)


def test_each_dimension_keeps_its_margin() -> None:
    room = Headroom(fraction=0.25)
    # 100 rpm: after this request at most 75 may be in use, so 74 seen before it is the last that clears.
    answer(room, 74, 0, "0", "0", now=10.0)
    assert clear(room)
    answer(room, 75, 0, "0", "0", now=10.0)
    assert not clear(room)
    answer(room, 0, 7400, "0", "0", now=10.0)
    assert clear(room, est=100)
    assert not clear(room, est=101)
    answer(room, 0, 0, "0.70", "0.04", now=10.0)
    assert clear(room, reserve_usd="0.01")
    assert not clear(room, reserve_usd="0.02")


def test_unanswered_acquires_count_against_the_room() -> None:
    room = Headroom(fraction=0.25)
    answer(room, 70, 0, "0", "0", now=10.0)
    assert clear(room)
    for _ in range(4):
        room.sent(0, 0)
    assert clear(room)
    room.sent(0, 0)  # 70 seen + 5 pending + this one: past 75
    assert not clear(room)
    room.answered([BUDGET], 0, 0, None, 10.0)  # a failed acquire is no longer pending
    assert clear(room)


def test_pending_reservations_and_tokens_count_too() -> None:
    room = Headroom(fraction=0.25)
    answer(room, 0, 0, "0.50", "0", now=10.0)
    assert clear(room, reserve_usd="0.20")
    room.sent(5000, usd_to_nano(Decimal("0.10")))
    assert not clear(room, reserve_usd="0.20")
    assert not clear(room, est=2600, reserve_usd="0")


def test_a_subject_never_seen_waits() -> None:
    room = Headroom()
    answer(room, 0, 0, "0", "0", now=10.0)
    other = LimitSpec("key:other", rpm=100)
    assert not room.clear([other], [], 1, 0, 10.0)
    assert not room.clear([], [BudgetSpec("key:k", Decimal(1), "total", "total")], 1, 0, 10.0)


def test_what_the_reporting_request_holds_is_not_room() -> None:
    """Budget figures come from before the request that reports them: its own reservation, spent
    once it settles, must not read as free room for the next one."""
    room = Headroom(fraction=0.25)
    room.sent(0, usd_to_nano(Decimal("0.50")))
    adm = Admission(True, budget_use=[(0, 0)], reserved_nano=usd_to_nano(Decimal("0.50")))
    room.answered([BUDGET], 0, usd_to_nano(Decimal("0.50")), adm, 10.0)
    assert room.clear([], [BUDGET], 0, usd_to_nano(Decimal("0.25")), 10.0)
    assert not room.clear([], [BUDGET], 0, usd_to_nano(Decimal("0.26")), 10.0)
