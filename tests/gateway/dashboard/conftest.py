"""A real gateway (create_app, served by uvicorn on loopback) over a seeded database, one per backend
for the whole package: the API tests use both, the browser test SQLite.

  dash_sqlite / dash_pg   a Dash: the server's url, what was seeded, the range that holds it
  signed_in(dash, key)    an httpx.Client holding a dashboard session (signed in through the form)
  browser, shots          a headless chromium for a test module, and the folder for its screenshots
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, async_playwright

from gateway.app import create_app
from gateway.config import parse_config
from gateway.db.migrate import upgrade
from gateway.settings import Settings
from tests.fakes.server import ServerThread
from tests.gateway.dashboard.browser import CHROMIUM
from tests.gateway.dashboard.seed import CONFIG, MASTER, Seeded, seed
from tests.stores import create_pg_database, drop_pg_database, pg_url

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Dash:
    url: str
    seeded: Seeded
    start: str  # the first and last UTC days that hold the records
    end: str

    def range(self, tz: str = "UTC") -> dict[str, str]:
        return {"start": self.start, "end": self.end, "tz": tz}


def _serve(url: str, tmp: Path) -> Iterator[Dash]:
    # Three days ending the day before yesterday: whole days, every one in the past in every zone.
    first_day = datetime.now(UTC).date() - timedelta(days=4)
    asyncio.run(upgrade(url))
    seeded = asyncio.run(seed(url, first_day))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        spool_dir=tmp / "spool",
        master_key=MASTER,
        local_model=False,
    )
    app = create_app(settings, parse_config(CONFIG, env={}))
    with ServerThread(app) as srv:
        yield Dash(srv.url, seeded, first_day.isoformat(), (first_day + timedelta(days=2)).isoformat())


@pytest.fixture(scope="package")
def dash_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    tmp = tmp_path_factory.mktemp("dash-sqlite")
    yield from _serve(f"sqlite+aiosqlite:///{tmp / 'gw.db'}", tmp)


@pytest.fixture(scope="package")
def dash_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    name = asyncio.run(create_pg_database("dash"))
    try:
        yield from _serve(pg_url(name), tmp_path_factory.mktemp("dash-pg"))
    finally:
        asyncio.run(drop_pg_database(name))


@pytest.fixture(scope="package", params=["sqlite", "postgresql"])
def dash(request: pytest.FixtureRequest) -> Dash:
    return request.getfixturevalue("dash_sqlite" if request.param == "sqlite" else "dash_pg")


def login_csrf(client: httpx.Client) -> str:
    page = client.get("/dashboard/login")
    assert page.status_code == 200
    match = _CSRF.search(page.text)
    assert match is not None
    return match.group(1)


@contextmanager
def signed_in(dash: Dash, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dash.url) as client:
        token = login_csrf(client)
        r = client.post("/dashboard/login", data={"csrf": token, "key": key, "next": ""})
        assert r.status_code == 303, r.text
        yield client


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"dashboard screenshots: {out}")
    readme = os.environ.get("SWITCHYARD_SCREENSHOTS")
    if readme:
        Path(readme).mkdir(parents=True, exist_ok=True)
    return out
