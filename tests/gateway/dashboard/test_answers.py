"""The dashboard API's answer cache: kept per viewer and URL for a few seconds, never past a 401."""

from __future__ import annotations

import httpx
from fastapi.responses import Response

from gateway.dashboard.answers import MAX_ENTRIES, AnswerCache
from tests.gateway.dashboard.conftest import Dash, signed_in
from tests.gateway.dashboard.test_api import ADMIN


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_lives_for_its_ttl_and_the_oldest_go_first() -> None:
    clock = Clock()
    cache = AnswerCache(5.0, clock)
    first = Response(b"1")
    cache.put(("a",), first)
    clock.now += 4.9
    assert cache.get(("a",)) is first
    clock.now += 0.2
    assert cache.get(("a",)) is None
    for i in range(MAX_ENTRIES + 1):
        cache.put((str(i),), Response(b"x"))
    assert cache.get(("0",)) is None and cache.get(("1",)) is not None


def test_two_teams_asking_the_same_url_get_their_own_answers(dash_sqlite: Dash) -> None:
    s = dash_sqlite.seeded
    url = "/dashboard/api/totals"
    params = dash_sqlite.range()
    with signed_in(dash_sqlite, s.secrets["a1"]) as alpha, signed_in(dash_sqlite, s.secrets["b1"]) as beta:
        for _ in range(2):  # the second round from the cache
            a = alpha.get(url, params=params).json()["rows"][0]
            b = beta.get(url, params=params).json()["rows"][0]
            org = httpx.get(dash_sqlite.url + url, params=params, headers=ADMIN).json()["rows"][0]
            assert a["requests"] == len(s.of("alpha")) and b["requests"] == len(s.of("beta"))
            assert org["requests"] == len(s.records)


def test_errors_are_not_kept(dash_sqlite: Dash) -> None:
    bad = {"start": "2026-03-02", "end": "2026-03-01"}
    for _ in range(2):
        r = httpx.get(dash_sqlite.url + "/dashboard/api/totals", params=bad, headers=ADMIN)
        assert r.status_code == 400
    assert httpx.get(dash_sqlite.url + "/dashboard/api/totals", params=dash_sqlite.range()).status_code == 401
