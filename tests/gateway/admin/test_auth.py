"""Only the master key opens /admin; every admin route is in the OpenAPI document."""

from __future__ import annotations

import pytest

from gateway.db.engine import make_engine
from tests.gateway.admin.conftest import MASTER, Admin, build_app, client_for
from tests.gateway.db.databases import truncate_all


@pytest.fixture
async def db_url(sqlite_database: str) -> str:
    # Auth does not depend on the backend: SQLite only.
    engine = make_engine(sqlite_database)
    try:
        await truncate_all(engine)
    finally:
        await engine.dispose()
    return sqlite_database


@pytest.mark.parametrize(
    ("headers", "status", "type_"),
    [
        ({}, 401, "authentication_error"),
        ({"authorization": "Bearer sk-wrong"}, 401, "authentication_error"),
        ({"authorization": f"Basic {MASTER}"}, 401, "authentication_error"),
        ({"x-api-key": "sk-master-but-longer"}, 401, "authentication_error"),
        ({"authorization": f"Bearer {MASTER}"}, 200, None),
        ({"x-api-key": MASTER}, 200, None),
    ],
)
async def test_master_key_is_required(
    admin: Admin, headers: dict[str, str], status: int, type_: str | None
) -> None:
    async with client_for(admin.app, **headers) as client:
        for path in ("/admin/teams", "/admin/keys", "/admin/spend"):
            r = await client.get(path)
            assert r.status_code == status, (path, r.text)
            if type_ is not None:
                assert r.json()["error"]["type"] == type_
        r = await client.post("/admin/teams", json={"name": "t"})
        assert r.status_code == (201 if status == 200 else status)


async def test_a_virtual_key_does_not_open_admin(admin: Admin) -> None:
    team = (await admin.client.post("/admin/teams", json={"name": "t"})).json()
    key = (await admin.client.post("/admin/keys", json={"team_id": team["id"]})).json()["key"]
    async with client_for(admin.app, authorization=f"Bearer {key}") as client:
        r = await client.get("/admin/keys")
    assert r.status_code == 401 and key not in r.text


async def test_no_master_key_configured_is_a_403() -> None:
    app = build_app(None, None, None)
    for headers in ({}, {"authorization": "Bearer anything"}):
        async with client_for(app, **headers) as client:
            r = await client.post("/admin/teams", json={"name": "t"})
        assert r.status_code == 403
        error = r.json()["error"]
        assert error["type"] == "permission_error" and "SWITCHYARD_MASTER_KEY" in error["message"]


def test_openapi_lists_every_admin_route() -> None:
    doc = build_app(b"x", None, None).openapi()
    expected = {
        "/admin/teams": {"get", "post"},
        "/admin/teams/{team_id}": {"get", "patch", "delete"},
        "/admin/keys": {"get", "post"},
        "/admin/keys/{key_id}": {"get", "patch"},
        "/admin/keys/{key_id}/revoke": {"post"},
        "/admin/spend": {"get"},
    }
    assert {p: set(ops) for p, ops in doc["paths"].items()} == expected
    schemas = doc["components"]["schemas"]
    for name in (
        "TeamCreate",
        "TeamUpdate",
        "TeamOut",
        "KeyCreate",
        "KeyUpdate",
        "KeyOut",
        "KeyCreated",
        "SpendRow",
        "SpendPage",
    ):
        assert name in schemas
    assert "key" in schemas["KeyCreated"]["properties"]
    assert "key" not in schemas["KeyOut"]["properties"]
    assert "key_hash" not in str(doc)
    # Money leaves as a string.
    budget = schemas["TeamOut"]["properties"]["budget_usd"]
    assert {"type": "string"} in budget["anyOf"]
    assert set(doc["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
    spend = doc["paths"]["/admin/spend"]["get"]
    assert {p["name"] for p in spend["parameters"]} == {
        "team_id",
        "key_id",
        "model",
        "start",
        "end",
        "group_by",
        "limit",
        "cursor",
    }
