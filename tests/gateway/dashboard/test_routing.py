"""The routing page in chromium, on a real gateway whose config lives in the database (SQLite, seeded with
the dashboard's records): validate shows the preview's numbers, apply makes a new version, an apply
based on a version another change overtook is a 409 shown as such, rollback makes an old version the
newest again. Forms need the session's CSRF token, and the page and its forms are for admins only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser

from gateway.accounting.record import RequestRecord
from gateway.app import create_app
from gateway.db.engine import make_engine, session_factory
from gateway.db.labels import ShadowVerdict
from gateway.db.migrate import upgrade
from gateway.settings import Settings
from tests.fakes.server import ServerThread
from tests.gateway.dashboard.browser import Tab, needs_chromium
from tests.gateway.dashboard.conftest import signed_in
from tests.gateway.dashboard.seed import CONFIG, MASTER, Seeded, seed

ADMIN = {"authorization": f"Bearer {MASTER}"}


class Live:
    def __init__(self, url: str, seeded: Seeded, db_url: str) -> None:
        self.url, self.seeded, self.db_url = url, seeded, db_url

    def config(self) -> httpx.Response:
        return httpx.get(self.url + "/admin/config", headers=ADMIN)

    def put(self, document: dict, version: int) -> httpx.Response:
        return httpx.put(
            self.url + "/admin/config", json=document, headers={**ADMIN, "if-match": str(version)}
        )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("routing")
    url = f"sqlite+aiosqlite:///{tmp / 'gw.db'}"
    asyncio.run(upgrade(url))
    seeded = asyncio.run(seed(url, datetime.now(UTC).date() - timedelta(days=4)))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        spool_dir=tmp / "spool",
        master_key=MASTER,
        local_model=False,
        openai_api_key=None,
        anthropic_api_key=None,
        gemini_api_key=None,
    )
    with ServerThread(create_app(settings, env={})) as srv:
        gw = Live(srv.url, seeded, url)
        assert gw.put(CONFIG, 1).status_code == 200  # version 2: the seeded records' config
        yield gw


def _answered_auto(seeded: Seeded) -> int:
    """The requests the preview replays: the route's logged requests that were answered."""
    return sum(r.route == "auto" and 200 <= r.status < 300 for r in seeded.records)


@needs_chromium
async def test_validate_apply_conflict_and_rollback(browser: Browser, live: Live, shots: Path) -> None:
    tab = await Tab.open(browser, live.url)
    await tab.sign_in(MASTER)
    assert await tab.goto("/dashboard/routing") == 200
    page = tab.page
    assert await page.get_by_test_id("config-version").inner_text() == "2"
    assert await page.get_by_test_id("routes-table-row").count() == 1

    # Validate: the preview's numbers, on the route's logged requests.
    await page.get_by_test_id("strong-fraction").fill("0.9")
    await page.get_by_test_id("validate-route").click()
    await page.wait_for_load_state("load")
    await tab.ready()
    assert await page.get_by_test_id("preview-requests").inner_text() == str(_answered_auto(live.seeded))
    before = await page.get_by_test_id("preview-cost-before").inner_text()
    after = await page.get_by_test_id("preview-cost-after").inner_text()
    assert before.startswith("$") and after.startswith("$") and before != after
    assert await page.get_by_test_id("preview-tier-row").count() == 2  # small and large
    assert "strong_fraction" in await page.get_by_test_id("diff").inner_text()
    await tab.shot(shots, "routing-validate")

    # Apply: version 3 runs, with the new strong fraction.
    await page.get_by_test_id("apply-change").click()
    await page.wait_for_url("**/dashboard/routing?applied=3")
    await tab.ready()
    assert await page.get_by_test_id("config-version").inner_text() == "3"
    assert await page.get_by_test_id("running-version").inner_text() == "3"
    assert live.config().json()["document"]["routes"]["auto"]["strong_fraction"] == 0.9

    # A change validated against version 3, overtaken by another before it is applied: a 409.
    await page.get_by_test_id("strong-fraction").fill("0.5")
    await page.get_by_test_id("validate-route").click()
    await page.wait_for_load_state("load")
    await tab.ready()
    other = live.config().json()["document"]
    other["routes"]["auto"]["quality"] = 0.7
    assert live.put(other, 3).status_code == 200  # version 4
    async with page.expect_response("**/dashboard/routing/apply") as answer:
        await page.get_by_test_id("apply-change").click()
    assert (await answer.value).status == 409
    await tab.ready()
    assert await page.get_by_test_id("conflict-expected").inner_text() == "3"
    assert await page.get_by_test_id("conflict-current").inner_text() == "4"
    assert live.config().json()["document"]["routes"]["auto"]["strong_fraction"] == 0.9
    await tab.shot(shots, "routing-conflict")

    # Roll back to version 2: a new version 5 with version 2's document.
    await page.get_by_test_id("rollback-2").click()
    await page.wait_for_url("**/dashboard/routing?applied=5")
    await tab.ready()
    assert await page.get_by_test_id("config-version").inner_text() == "5"
    assert live.config().json()["document"]["routes"] == CONFIG["routes"]
    # The one failed load the browser logs is the 409 asked for above.
    assert [e for e in tab.errors if "status of 409" not in e] == [] and tab.elsewhere == []
    await tab.context.close()


def _csrf(html: str) -> str:
    return html.split('name="csrf" value="')[1].split('"')[0]


def test_forms_need_an_admin_session_and_its_csrf_token(live: Live) -> None:
    form = {"mode": "route", "route": "auto", "candidates": "small-a, large-b", "quality": "2"}
    with signed_in(live, MASTER) as admin:  # type: ignore[arg-type]
        token = _csrf(admin.get("/dashboard/routing").text)
        assert admin.post("/dashboard/routing/validate", data=form).status_code == 403
        assert admin.post("/dashboard/routing/validate", data={**form, "csrf": "forged"}).status_code == 403
        # Out of range: every error listed, nothing changed.
        r = admin.post("/dashboard/routing/validate", data={**form, "csrf": token})
        assert r.status_code == 400 and "routes.auto.quality" in r.text
        r = admin.post("/dashboard/routing/validate", data={**form, "quality": "x", "csrf": token})
        assert r.status_code == 400 and "quality must be a number" in r.text
        r = admin.post(
            "/dashboard/routing/validate", data={"mode": "document", "document": "[1", "csrf": token}
        )
        assert r.status_code == 400 and "not valid YAML" in r.text
        r = admin.post("/dashboard/routing/apply", data={**form, "quality": "", "csrf": token})
        assert r.status_code == 400 and "Validate the change first" in r.text
        rollback = {"version": "999", "base_version": "1", "csrf": token}
        assert admin.post("/dashboard/routing/rollback", data=rollback).status_code == 404
        r = admin.post("/dashboard/routing/rollback", data={**rollback, "version": "2"})
        assert r.status_code == 409 and 'data-testid="conflict"' in r.text  # 1 is not the newest
    with signed_in(live, live.seeded.secrets["a2"]) as member:  # type: ignore[arg-type]
        assert member.get("/dashboard/routing").status_code == 403
        assert member.post("/dashboard/routing/validate", data={**form, "csrf": "x"}).status_code == 403


async def _judge(db_url: str, record: RequestRecord, outcomes: list[str]) -> None:
    engine = make_engine(db_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            for outcome in outcomes:
                session.add(
                    ShadowVerdict(
                        request_id=record.request_id,
                        ts=datetime.now(UTC),
                        team_id=record.team_id,
                        route="auto",
                        deployment=record.deployment,
                        tier=record.tier,
                        strong_deployment="large-b",
                        judge="large-b",
                        outcome=outcome,
                        votes=["A", "B"],
                        cost_usd=Decimal("0.001"),
                    )
                )
    finally:
        await engine.dispose()


@needs_chromium
async def test_the_quality_panel_shows_the_judged_rates(browser: Browser, live: Live, shots: Path) -> None:
    tab = await Tab.open(browser, live.url)
    await tab.sign_in(MASTER)
    assert await tab.goto("/dashboard/routing") == 200
    assert await tab.page.get_by_test_id("quality-empty").count() == 1

    routed = next(r for r in live.seeded.records if r.route == "auto" and r.status == 200)
    await _judge(live.db_url, routed, ["win", "win", "tie", "loss"])
    assert await tab.goto("/dashboard/routing") == 200
    row = tab.page.get_by_test_id("quality-row")
    assert await row.count() == 1
    assert await row.get_by_test_id("quality-judged").inner_text() == "4"
    assert await row.get_by_test_id("quality-win").inner_text() == "50.0%"
    assert await row.get_by_test_id("quality-loss").inner_text() == "25.0%"
    # 3 of 4 as good or better, with its Wilson interval.
    assert await row.get_by_test_id("quality-not-worse").inner_text() == "75.0% (30.1%-95.4%)"
    await tab.shot(shots, "routing-quality")
    assert tab.errors == [] and tab.elsewhere == []
    await tab.context.close()
