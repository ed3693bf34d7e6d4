"""The dashboard in Debian's chromium (Playwright drives it by path; nothing is downloaded), one browser for
the module, against a real gateway over seeded SQLite: sign-in, every page's figures equal the records,
a time-zone switch, a team member's 403, sign-out; no request leaves loopback and no script error.

Screenshots of every page go to a temporary folder (printed with -s); with SWITCHYARD_SCREENSHOTS=DIR
the overview and team page are also saved there as small PNGs (the README's: docs/screenshots).
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser

from tests.gateway.dashboard.browser import Tab, needs_chromium
from tests.gateway.dashboard.conftest import Dash
from tests.gateway.dashboard.seed import MASTER, p95_latency, savings, total_cost, usd, within_one_bucket

pytestmark = needs_chromium


async def test_admin_and_team_member_see_the_seeded_figures(
    browser: Browser, dash_sqlite: Dash, shots: Path
) -> None:
    dash, s = dash_sqlite, dash_sqlite.seeded
    query = f"?start={dash.start}&end={dash.end}&tz=UTC"
    alpha, beta = s.teams["alpha"], s.teams["beta"]

    admin = await Tab.open(browser, dash.url)
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
    # The token chart draws the prompt cache's reads and writes beside prompt and completion tokens.
    legend = await admin.page.locator("[data-testid=tokens-chart] .u-legend").inner_text()
    assert "cached tokens" in legend and "cache write tokens" in legend
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

    member = await Tab.open(browser, dash.url)
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
