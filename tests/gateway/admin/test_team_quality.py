"""A team's measurement settings through the admin API: prompt capture (opt-in, with a retention)
and the monthly shadow budget; stored, shown, cleared, and refused when out of range."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.admin.conftest import Admin, assert_error


async def test_capture_and_shadow_budget_are_set_shown_and_cleared(admin: Admin) -> None:
    r = await admin.client.post("/admin/teams", json={"name": "measured"})
    assert r.status_code == 201, r.text
    team = r.json()
    assert (team["capture_prompts"], team["capture_retention_days"], team["shadow_budget_usd"]) == (
        False,
        None,
        None,
    )
    body = {"capture_prompts": True, "capture_retention_days": 14, "shadow_budget_usd": "2.50"}
    r = await admin.client.patch(f"/admin/teams/{team['id']}", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["capture_prompts"], got["capture_retention_days"], got["shadow_budget_usd"]) == (
        True,
        14,
        "2.5",
    )
    r = await admin.client.patch(f"/admin/teams/{team['id']}", json={"shadow_budget_usd": None})
    assert r.json()["shadow_budget_usd"] is None
    assert (await admin.client.get(f"/admin/teams/{team['id']}")).json()["capture_prompts"] is True


@pytest.mark.parametrize(
    "body",
    [
        {"capture_prompts": None},
        {"capture_prompts": "sometimes"},
        {"capture_retention_days": 0},
        {"capture_retention_days": 100000},
        {"shadow_budget_usd": -1},
    ],
)
async def test_bad_measurement_settings_are_a_400(admin: Admin, body: dict[str, Any]) -> None:
    team = (await admin.client.post("/admin/teams", json={"name": "bad-settings"})).json()
    assert_error(await admin.client.patch(f"/admin/teams/{team['id']}", json=body), 400)
