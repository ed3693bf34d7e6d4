"""The admin API over HTTP (in-process ASGI), on PostgreSQL and SQLite: teams, keys, spend."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gateway.admin import service
from gateway.auth import hash_key
from gateway.db.models import ApiKey, AuditLog, Team
from tests.gateway.admin.conftest import Admin, assert_error


async def make_team(admin: Admin, name: str = "research", **fields: Any) -> dict[str, Any]:
    r = await admin.client.post("/admin/teams", json={"name": name, **fields})
    assert r.status_code == 201, r.text
    return r.json()


async def make_key(admin: Admin, team_id: str, **fields: Any) -> dict[str, Any]:
    r = await admin.client.post("/admin/keys", json={"team_id": team_id, **fields})
    assert r.status_code == 201, r.text
    return r.json()


async def audit_rows(admin: Admin) -> list[AuditLog]:
    async with admin.sessions() as session:
        return list((await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars())


async def test_team_lifecycle(admin: Admin) -> None:
    team = await make_team(
        admin, budget_usd="12.345", budget_period="monthly", rpm=60, routing={"quality": 0.5}
    )
    assert team["budget_usd"] == "12.345"  # exact, a string
    assert (team["budget_period"], team["rpm"], team["tpm"], team["routing"]) == (
        "monthly",
        60,
        None,
        {"quality": 0.5},
    )

    got = (await admin.client.get(f"/admin/teams/{team['id']}")).json()
    assert got == team

    r = await admin.client.patch(
        f"/admin/teams/{team['id']}", json={"name": "research-2", "tpm": 1000, "routing": None}
    )
    assert r.status_code == 200, r.text
    patched = r.json()
    assert (patched["name"], patched["tpm"], patched["routing"], patched["rpm"]) == (
        "research-2",
        1000,
        None,
        60,
    )

    assert datetime.fromisoformat(patched["updated_at"]) > datetime.fromisoformat(team["updated_at"])
    assert patched["created_at"] == team["created_at"]

    await make_team(admin, "other")
    assert_error(await admin.client.post("/admin/teams", json={"name": "other"}), 409)
    assert_error(await admin.client.patch(f"/admin/teams/{team['id']}", json={"name": "other"}), 409)

    listed = (await admin.client.get("/admin/teams")).json()
    assert [t["name"] for t in listed["data"]] == ["research-2", "other"]
    assert listed["next_cursor"] is None

    key = await make_key(admin, team["id"])
    r = await admin.client.delete(f"/admin/teams/{team['id']}")
    assert r.status_code == 200 and r.json()["deleted_at"] is not None
    assert_error(await admin.client.get(f"/admin/teams/{team['id']}"), 404, "not_found_error")
    assert (await admin.client.get(f"/admin/keys/{key['id']}")).json()["revoked"] is True
    assert [t["name"] for t in (await admin.client.get("/admin/teams")).json()["data"]] == ["other"]
    everything = (await admin.client.get("/admin/teams", params={"include_deleted": "true"})).json()
    assert len(everything["data"]) == 2
    # A deleted team's name is free again.
    await make_team(admin, "research-2")

    actions = [(a.actor, a.action) for a in await audit_rows(admin)]
    assert actions == [
        ("master", "team.create"),
        ("master", "team.update"),
        ("master", "team.create"),
        ("master", "key.create"),
        ("master", "team.delete"),
        ("master", "team.create"),
    ]
    update = (await audit_rows(admin))[1]
    assert update.target == team["id"]
    assert update.detail == {
        "name": ["research", "research-2"],
        "tpm": [None, 1000],
        "routing": [{"quality": 0.5}, None],
    }


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "x", "budget_usd": -1},
        {"name": "x", "budget_usd": "0.00000000001"},
        {"name": "x", "budget_usd": "1e12"},
        {"name": "x", "budget_period": "yearly"},
        {"name": "x", "rpm": 0},
        {"name": "x", "tpm": -5},
        {"name": "x", "budget": 10},
    ],
)
async def test_team_validation_is_a_400(admin: Admin, body: dict[str, Any]) -> None:
    assert_error(await admin.client.post("/admin/teams", json=body), 400)


async def test_team_defaults_and_patch_rules(admin: Admin) -> None:
    team = await make_team(admin, budget_usd=5)
    assert (team["budget_usd"], team["budget_period"]) == ("5", "total")
    assert_error(await admin.client.patch(f"/admin/teams/{team['id']}", json={"name": None}), 400)
    assert_error(await admin.client.patch("/admin/teams/nope", json={"rpm": 5}), 404, "not_found_error")
    before = len(await audit_rows(admin))
    # Nothing changes: no audit row.
    r = await admin.client.patch(f"/admin/teams/{team['id']}", json={"budget_usd": "5.000"})
    assert r.status_code == 200
    assert len(await audit_rows(admin)) == before


async def test_key_is_shown_once_and_never_again(admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    # Everything at INFO, ours at DEBUG. (aiosqlite's own DEBUG lines echo SQL parameters, hashes
    # included: that logger belongs at INFO or above wherever logging is configured.)
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="switchyard")
    team = await make_team(admin)
    r = await admin.client.post(
        "/admin/keys",
        json={"team_id": team["id"], "name": "ci", "rpm": 10, "budget_usd": "1.5", "budget_period": "daily"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    created = r.json()
    key = created["key"]
    digest = hash_key(key)
    assert key.startswith("sk-sy-") and created["prefix"] == key[:10]
    assert "key_hash" not in created and digest not in r.text
    assert (created["name"], created["rpm"], created["budget_usd"], created["revoked"]) == (
        "ci",
        10,
        "1.5",
        False,
    )

    texts = [
        (await admin.client.get(f"/admin/keys/{created['id']}")).text,
        (await admin.client.get("/admin/keys")).text,
        (await admin.client.get("/admin/keys", params={"team_id": team["id"]})).text,
        (await admin.client.patch(f"/admin/keys/{created['id']}", json={"name": "ci-2"})).text,
        (await admin.client.post(f"/admin/keys/{created['id']}/revoke")).text,
    ]
    for text in texts:
        assert created["id"] in text
        assert key not in text and digest not in text
    audits = await audit_rows(admin)
    assert [a.action for a in audits] == ["team.create", "key.create", "key.update", "key.revoke"]
    for a in audits:
        assert key not in repr(a.detail) and digest not in repr(a.detail) and key[6:] not in repr(a.detail)
    assert key not in caplog.text and digest not in caplog.text
    assert f"key {created['id']} created" in caplog.text  # the log does say what happened

    async with admin.sessions() as session:
        stored = await session.get(ApiKey, created["id"])
    assert stored is not None and stored.key_hash == digest and stored.revoked and stored.revoked_at


async def test_admin_changes_reach_the_key_cache_at_once(admin: Admin) -> None:
    team = await make_team(admin, rpm=100)
    created = await make_key(admin, team["id"], tpm=500)
    key = created["key"]
    principal = await admin.cache.lookup(key)
    assert principal is not None and (principal.key_tpm, principal.team_rpm) == (500, 100)

    await admin.client.patch(f"/admin/keys/{created['id']}", json={"tpm": 700})
    assert (await admin.cache.lookup(key)).key_tpm == 700  # type: ignore[union-attr]
    await admin.client.patch(f"/admin/teams/{team['id']}", json={"rpm": 5})
    assert (await admin.cache.lookup(key)).team_rpm == 5  # type: ignore[union-attr]

    r = await admin.client.post(f"/admin/keys/{created['id']}/revoke")
    assert r.status_code == 200 and r.json()["revoked"] is True and r.json()["revoked_at"]
    assert await admin.cache.lookup(key) is None
    # Revoking again is harmless and keeps the first time.
    again = await admin.client.post(f"/admin/keys/{created['id']}/revoke")
    assert again.json()["revoked_at"] == r.json()["revoked_at"]

    other = await make_key(admin, team["id"])
    assert await admin.cache.lookup(other["key"]) is not None
    await admin.client.delete(f"/admin/teams/{team['id']}")
    assert await admin.cache.lookup(other["key"]) is None


async def test_key_errors(admin: Admin) -> None:
    team = await make_team(admin)
    error = assert_error(
        await admin.client.post("/admin/keys", json={"team_id": "nope"}), 404, "not_found_error"
    )
    assert error["param"] == "team_id"
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert_error(
        await admin.client.post("/admin/keys", json={"team_id": team["id"], "expires_at": past}), 400
    )
    naive = "2030-01-01T00:00:00"
    assert_error(
        await admin.client.post("/admin/keys", json={"team_id": team["id"], "expires_at": naive}), 400
    )
    assert_error(await admin.client.get("/admin/keys/nope"), 404, "not_found_error")
    assert_error(await admin.client.patch("/admin/keys/nope", json={"rpm": 1}), 404, "not_found_error")
    assert_error(await admin.client.post("/admin/keys/nope/revoke"), 404, "not_found_error")

    future = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    created = await make_key(admin, team["id"], expires_at=future.isoformat())
    assert datetime.fromisoformat(created["expires_at"]) == future
    r = await admin.client.patch(f"/admin/keys/{created['id']}", json={"expires_at": None, "budget_usd": 2})
    assert (r.json()["expires_at"], r.json()["budget_usd"], r.json()["budget_period"]) == (None, "2", "total")


async def test_key_pages_and_filters(admin: Admin) -> None:
    a = await make_team(admin, "a")
    b = await make_team(admin, "b")
    ids = [(await make_key(admin, (a if i % 2 else b)["id"]))["id"] for i in range(7)]
    await admin.client.post(f"/admin/keys/{ids[0]}/revoke")

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await admin.client.get("/admin/keys", params=params)).json()
        assert len(page["data"]) <= 3
        seen += [k["id"] for k in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids

    only_a = (await admin.client.get("/admin/keys", params={"team_id": a["id"]})).json()["data"]
    assert [k["id"] for k in only_a] == ids[1::2]
    live = (await admin.client.get("/admin/keys", params={"revoked": "false"})).json()["data"]
    assert [k["id"] for k in live] == ids[1:]

    teams_cursor = (await admin.client.get("/admin/teams", params={"limit": 1})).json()["next_cursor"]
    assert teams_cursor is not None
    assert_error(await admin.client.get("/admin/keys", params={"cursor": teams_cursor}), 400)
    assert_error(await admin.client.get("/admin/keys", params={"cursor": "garbage!"}), 400)
    assert_error(await admin.client.get("/admin/keys", params={"limit": 0}), 400)


async def test_key_for_a_team_deleted_meanwhile_is_a_404_without_the_hash_in_logs(
    admin: Admin, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ghost = Team(id="0" * 32, name="ghost")

    async def stale_get_team(*args: Any, **kwargs: Any) -> Team:
        return ghost  # what the check saw just before a concurrent delete

    monkeypatch.setattr(service, "get_team", stale_get_team)
    r = await admin.client.post("/admin/keys", json={"team_id": ghost.id})
    assert_error(r, 404, "not_found_error")
    assert "api_keys" not in caplog.text and "Traceback" not in caplog.text
    async with admin.sessions() as session:
        assert (await session.execute(select(ApiKey))).first() is None
        assert (await session.execute(select(AuditLog))).first() is None


async def test_losing_a_name_race_is_a_409(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    await make_team(admin, "dup")

    async def looks_free(*args: Any, **kwargs: Any) -> None:
        return None  # a concurrent create checked before this one committed

    monkeypatch.setattr(service, "_name_free", looks_free)
    assert_error(await admin.client.post("/admin/teams", json={"name": "dup"}), 409)
    assert len((await admin.client.get("/admin/teams")).json()["data"]) == 1
