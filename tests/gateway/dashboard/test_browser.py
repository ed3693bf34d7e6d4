"""The dashboard in Debian's chromium (Playwright drives it by path; nothing is downloaded), one browser for
the module, against a real gateway over seeded SQLite: sign-in, every page's figures equal the records,
a time-zone switch, a team member's 403, sign-out; no request leaves loopback and no script error.

Screenshots of every page go to a temporary folder (printed with -s); with SWITCHYARD_SCREENSHOTS=DIR
the overview and team page are also saved there as small PNGs (the README's: docs/screenshots).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, Route, async_playwright

from tests.gateway.dashboard.conftest import Dash
from tests.gateway.dashboard.seed import MASTER, p95_latency, savings, total_cost, usd, within_one_bucket

CHROMIUM = shutil.which("chromium")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
README_SHOTS = {"overview", "team"}

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (Debian: apt-get install -y chromium)"
)


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


class Tab:
    """A browser context (its own cookies) on the gateway, refusing anything not on loopback."""

    def __init__(self, context: BrowserContext, page: Page, dash: Dash) -> None:
        self.context, self.page, self.dash = context, page, dash
        self.errors: list[str] = []
        self.elsewhere: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", self._console)

    def _console(self, msg: ConsoleMessage) -> None:
        # The 403 pages a test asks for on purpose are logged as failed loads; nothing else may be.
        if msg.type == "error" and "status of 403" not in msg.text:
            self.errors.append(msg.text)

    @classmethod
    async def open(cls, browser: Browser, dash: Dash) -> Tab:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        tab = cls(context, await context.new_page(), dash)

        async def only_loopback(route: Route) -> None:
            if urlsplit(route.request.url).hostname in LOOPBACK:
                await route.continue_()
            else:
                tab.elsewhere.append(route.request.url)
                await route.abort()

        await context.route("**/*", only_loopback)
        return tab

    async def goto(self, path: str) -> int:
        response = await self.page.goto(self.dash.url + path, wait_until="load")
        assert response is not None
        if response.status == 200 and "/login" not in self.page.url:
            await self.ready()
        return response.status

    async def ready(self) -> None:
        await self.page.wait_for_selector("body[data-ready]", timeout=15_000)
        assert await self.page.get_attribute("body", "data-ready") == "1", self.errors

    async def value(self, testid: str) -> str:
        el = self.page.get_by_test_id(testid)
        value = await el.get_attribute("data-value")
        assert value is not None, testid
        return value

    async def sign_in(self, key: str) -> None:
        await self.goto("/dashboard/login")
        await self.page.get_by_test_id("key").fill(key)
        await self.page.get_by_test_id("sign-in").click()
        await self.page.wait_for_load_state("load")
        await self.ready()

    async def shot(self, folder: Path, name: str) -> None:
        await self.page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
        readme = os.environ.get("SWITCHYARD_SCREENSHOTS")
        if readme and name in README_SHOTS:
            await self.page.screenshot(path=str(Path(readme) / f"dashboard-{name}.png"), full_page=False)


async def test_admin_and_team_member_see_the_seeded_figures(
    browser: Browser, dash_sqlite: Dash, shots: Path
) -> None:
    dash, s = dash_sqlite, dash_sqlite.seeded
    query = f"?start={dash.start}&end={dash.end}&tz=UTC"
    alpha, beta = s.teams["alpha"], s.teams["beta"]

    admin = await Tab.open(browser, dash)
    # Not signed in: any page sends to the form, which brings you back after.
    await admin.goto(f"/dashboard/overview{query}")
    assert "/dashboard/login" in admin.page.url
    await admin.page.get_by_test_id("key").fill(MASTER)
    await admin.page.get_by_test_id("sign-in").click()
    await admin.page.wait_for_url(f"**/dashboard/overview{query}")
    await admin.ready()
    assert await admin.value("total-cost") == usd(total_cost(s.records))
    assert await admin.value("total-requests") == str(len(s.records))
    assert await admin.value("savings") == usd(savings(s, s.records))
    assert within_one_bucket(float(await admin.value("latency-p95")), p95_latency(s.records))
    assert await admin.page.get_by_test_id("top-teams-row").count() == 2
    assert await admin.page.locator("[data-testid=spend-chart] canvas").count() == 1
    await admin.shot(shots, "overview")

    await admin.goto(f"/dashboard/teams/{alpha}{query}")
    records = s.of("alpha")
    assert await admin.value("total-cost") == usd(total_cost(records))
    assert await admin.value("total-requests") == str(len(records))
    assert await admin.value("savings") == usd(savings(s, records))
    assert await admin.value("budget-spent") == usd(total_cost(records))  # a total budget: all of it
    assert await admin.value("budget-limit") == "1000"
    assert within_one_bucket(float(await admin.value("latency-p95")), p95_latency(records))
    assert await admin.page.get_by_test_id("budget-table-row").count() == 3  # the team and its two keys
    await admin.shot(shots, "team")

    # The same range in New York: the requests fall on other days, the total stays.
    await admin.page.get_by_test_id("tz").fill("America/New_York")
    await admin.page.get_by_test_id("apply").click()
    await admin.page.wait_for_url("**tz=America%2FNew_York**")
    await admin.ready()
    assert await admin.value("total-cost") == usd(total_cost(records))

    await admin.goto(f"/dashboard/teams/{alpha}/keys/{s.keys['a1']}{query}")
    a1 = s.of(key="a1")
    assert await admin.value("total-cost") == usd(total_cost(a1))
    assert await admin.value("budget-spent") == usd(total_cost(a1))
    assert await admin.value("budget-binding") == "key"
    await admin.shot(shots, "key")

    await admin.goto(f"/dashboard/teams/{alpha}/requests{query}")
    assert await admin.page.get_by_test_id("requests-table-row").count() == len(records)
    await admin.shot(shots, "requests")

    await admin.goto(f"/dashboard/routing{query}")
    assert await admin.page.get_by_test_id("routes-table-row").count() == 1
    await admin.shot(shots, "routing")

    await admin.page.get_by_test_id("logout").click()
    await admin.page.wait_for_url("**/dashboard/login")
    await admin.goto("/dashboard/overview")
    assert "/dashboard/login" in admin.page.url

    member = await Tab.open(browser, dash)
    await member.goto("/dashboard/login")
    await member.page.get_by_test_id("key").fill(s.secrets["a2"])
    await member.page.get_by_test_id("sign-in").click()
    await member.page.wait_for_url(f"**/dashboard/teams/{alpha}")
    await member.goto(f"/dashboard/teams/{alpha}{query}")
    assert await member.value("total-requests") == str(len(records))
    assert await member.goto(f"/dashboard/teams/{beta}{query}") == 403
    assert await member.page.get_by_test_id("error-status").inner_text() == "403"
    assert await member.goto("/dashboard/overview") == 403
    assert s.secrets["a2"][6:] not in await member.page.content()

    for tab in (admin, member):
        assert tab.errors == [] and tab.elsewhere == []
        await tab.context.close()
