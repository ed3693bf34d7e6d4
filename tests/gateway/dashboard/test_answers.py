"""The dashboard API's answer cache: kept per viewer and URL for a few seconds, never past a 401."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient

from gateway.dashboard.answers import MAX_ENTRIES, AnswerCache, CachedRoute
from gateway.dashboard.session import Viewer
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


def test_errors_are_not_kept_and_answers_are() -> None:
    """The route class on its own: a handler that fails first and then answers is asked again after
    its error (nothing kept), and not after its answer (kept for the viewer)."""
    calls: list[int] = []
    router = APIRouter(route_class=CachedRoute)

    @router.get("/figure")
    def figure() -> JSONResponse:
        calls.append(1)
        return JSONResponse({"n": len(calls)}, status_code=400 if len(calls) == 1 else 200)

    app = FastAPI()
    app.include_router(router)
    app.state.dashboard_answers = AnswerCache(60.0)

    @app.middleware("http")
    async def as_admin(request: Request, call_next: Any) -> Any:
        request.state.dashboard_viewer = Viewer("admin")  # who asks: found before the cache is read
        return await call_next(request)

    with TestClient(app) as client:
        assert client.get("/figure").status_code == 400
        assert client.get("/figure").json() == {"n": 2}
        assert client.get("/figure").json() == {"n": 2}
    assert len(calls) == 2
