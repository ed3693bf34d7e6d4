"""Driving Debian's chromium for the dashboard's browser tests (Playwright launches it by path, from the
`browser` fixture; nothing is downloaded): a tab that refuses anything off loopback and records
script errors, and its screenshots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, Route

CHROMIUM = shutil.which("chromium")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
README_SHOTS = {"overview", "team"}

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (Debian: apt-get install -y chromium)"
)


class Tab:
    """A browser context (its own cookies) on the gateway, refusing anything not on loopback."""

    def __init__(self, context: BrowserContext, page: Page, url: str) -> None:
        self.context, self.page, self.url = context, page, url
        self.errors: list[str] = []
        self.elsewhere: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", self._console)

    def _console(self, msg: ConsoleMessage) -> None:
        # The 403 pages a test asks for on purpose are logged as failed loads; nothing else may be.
        if msg.type == "error" and "status of 403" not in msg.text:
            self.errors.append(msg.text)

    @classmethod
    async def open(cls, browser: Browser, url: str) -> Tab:
        """A new context (its own cookies) on the gateway at `url`."""
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        tab = cls(context, await context.new_page(), url)

        async def only_loopback(route: Route) -> None:
            if urlsplit(route.request.url).hostname in LOOPBACK:
                await route.continue_()
            else:
                tab.elsewhere.append(route.request.url)
                await route.abort()

        await context.route("**/*", only_loopback)
        return tab

    async def goto(self, path: str) -> int:
        response = await self.page.goto(self.url + path, wait_until="load")
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
