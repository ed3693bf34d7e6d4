"""A team's `routing` through the admin API, on PostgreSQL and SQLite: typed, checked, documented."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from gateway.db.models import Team
from tests.gateway.admin.conftest import Admin, assert_error, build_app

ROUTING = {"quality": 0.7, "max_tier": "medium", "routes": {"auto": {"strong_fraction": 0.4}}}


async def stored(admin: Admin, team_id: str) -> Any:
    async with admin.sessions() as session:
        return (await session.execute(select(Team.routing).where(Team.id == team_id))).scalar_one()


async def test_routing_is_stored_as_given_without_unset_keys(admin: Admin) -> None:
    r = await admin.client.post(
        "/admin/teams", json={"name": "t", "routing": {**ROUTING, "min_tier": None, "strong_fraction": None}}
    )
    assert r.status_code == 201, r.text
    team = r.json()
    assert team["routing"] == ROUTING
    assert await stored(admin, team["id"]) == ROUTING

    patch = {"routing": {"routes": {"auto": {"min_tier": "small", "max_tier": "small"}}}}
    r = await admin.client.patch(f"/admin/teams/{team['id']}", json=patch)
    assert r.status_code == 200, r.text
    assert r.json()["routing"] == patch["routing"] == await stored(admin, team["id"])
    r = await admin.client.patch(f"/admin/teams/{team['id']}", json={"routing": {}})
    assert r.json()["routing"] == {}


@pytest.mark.parametrize(
    ("routing", "param", "says"),
    [
        ({"quality": "high"}, "routing.quality", "valid number"),
        ({"qualty": 0.8}, "routing.qualty", "Extra inputs are not permitted"),
        ({"max_tier": "giant"}, "routing.max_tier", "'local', 'small', 'medium' or 'large'"),
        ({"strong_fraction": 3}, "routing.strong_fraction", "less than or equal to 1"),
        ({"quality": 0.5, "strong_fraction": 0.5}, "routing", "not both"),
        ({"min_tier": "large", "max_tier": "local"}, "routing", "min_tier large is above max_tier local"),
        ({"routes": {"auto": {"max_tier": "huge"}}}, "routing.routes.auto.max_tier", "'local'"),
        ({"x": "\x00"}, "routing.x", "Extra inputs"),
        ("fast", "routing", "valid dictionary"),
    ],
)
async def test_bad_routing_is_a_400_naming_the_field(
    admin: Admin, routing: Any, param: str, says: str
) -> None:
    error = assert_error(await admin.client.post("/admin/teams", json={"name": "t", "routing": routing}), 400)
    assert error["param"] == param and error["message"].startswith(f"{param}: ") and says in error["message"]
    team = (await admin.client.post("/admin/teams", json={"name": "ok"})).json()
    r = await admin.client.patch(f"/admin/teams/{team['id']}", json={"routing": routing})
    assert assert_error(r, 400)["param"] == param
    # Nothing was written either way.
    assert [t["name"] for t in (await admin.client.get("/admin/teams")).json()["data"]] == ["ok"]
    assert await stored(admin, team["id"]) is None


def test_openapi_documents_the_routing_schema() -> None:
    doc = build_app(b"x", None, None).openapi()
    schemas = doc["components"]["schemas"]
    for body in ("TeamCreate", "TeamUpdate"):
        routing = schemas[body]["properties"]["routing"]
        assert {"$ref": "#/components/schemas/TeamRouting"} in routing["anyOf"]
    team_routing = schemas["TeamRouting"]
    assert team_routing["additionalProperties"] is False
    assert set(team_routing["properties"]) == {"quality", "strong_fraction", "min_tier", "max_tier", "routes"}
    max_tier = team_routing["properties"]["max_tier"]
    assert {"enum": ["local", "small", "medium", "large"], "type": "string"} in max_tier["anyOf"]
    assert {"maximum": 1, "minimum": 0, "type": "number"} in team_routing["properties"]["quality"]["anyOf"]
    assert schemas["RouteOverride"]["additionalProperties"] is False
