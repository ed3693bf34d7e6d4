"""/docs and /redoc work with no internet: every asset they load is served by the gateway itself.

The browser test drives Debian's chromium through Playwright against a gateway on loopback, with every
request to any other address aborted, and reads the operations off the rendered page.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from playwright.async_api import Request, Route, async_playwright

from gateway.app import create_app
from gateway.config import parse_config
from gateway.settings import Settings
from tests.fakes.server import ServerThread

CHROMIUM = shutil.which("chromium")
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
OPERATION = "/v1/chat/completions"
# What the two pages reference: tag attributes, and the strings Swagger UI's inline script is given.
_REFERENCE = re.compile(r"""(?:src|href|spec-url)="([^"]+)"|url: '([^']+)'|origin \+ '([^']+)'""")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    tmp = tmp_path_factory.mktemp("docs")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp / 'gw.db'}",
        spool_dir=tmp / "spool",
        master_key="sk-master-docs",
    )
    with ServerThread(create_app(settings, parse_config({"models": []}, env={}))) as srv:
        yield srv


def referenced(html: str) -> list[str]:
    return [next(g for g in m.groups() if g) for m in _REFERENCE.finditer(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_asset_a_page_references_is_served_here(gateway: ServerThread, page: str) -> None:
    resp = httpx.get(gateway.url + page)
    assert resp.status_code == 200
    urls = referenced(resp.text)
    assert "/openapi.json" in urls
    assert any(u.endswith(".js") for u in urls) and any(u.endswith(".png") for u in urls)
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from elsewhere"
        asset = httpx.get(gateway.url + url)
        assert asset.status_code == 200, url
        assert asset.content, url


def test_pages_forbid_loading_from_elsewhere(gateway: ServerThread) -> None:
    for page in ("/docs", "/redoc"):
        csp = httpx.get(gateway.url + page).headers["content-security-policy"]
        assert "default-src 'self'" in csp and "img-src 'self' data:" in csp


def test_oauth2_redirect_page_is_served(gateway: ServerThread) -> None:
    resp = httpx.get(gateway.url + "/docs/oauth2-redirect")
    assert resp.status_code == 200
    assert "swagger" in resp.text.lower()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install -y chromium)")
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_page_renders_the_operations_offline(gateway: ServerThread, page: str) -> None:
    """Nothing reaches the network for another address: the route aborts it and records it. ReDoc's
    sidebar logo (cdn.redoc.ly) is refused earlier, in the browser, by the page's own CSP."""
    reached_network: list[str] = []
    elsewhere: list[str] = []
    failures: dict[str, str | None] = {}
    errors: list[str] = []

    async def only_loopback(route: Route) -> None:
        reached_network.append(route.request.url)
        if urlsplit(route.request.url).hostname in LOOPBACK:
            await route.continue_()
        else:
            await route.abort()

    def on_request(request: Request) -> None:
        if request.url.startswith("http") and urlsplit(request.url).hostname not in LOOPBACK:
            elsewhere.append(request.url)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = await browser.new_context()
            await context.route("**/*", only_loopback)
            tab = await context.new_page()
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.on("request", on_request)
            tab.on("requestfailed", lambda request: failures.update({request.url: request.failure}))
            await tab.goto(urljoin(gateway.url, page), wait_until="load")
            # A function, not an expression: the page's CSP forbids eval, which Playwright uses for those.
            await tab.wait_for_function(
                "op => document.body.innerText.includes(op)", arg=OPERATION, timeout=20_000
            )
        finally:
            await browser.close()

    assert errors == []
    assert any(u.endswith(".js") for u in reached_network), reached_network
    assert [u for u in reached_network if urlsplit(u).hostname not in LOOPBACK] == []
    assert all(failures.get(url) == "csp" for url in elsewhere), (elsewhere, failures)
