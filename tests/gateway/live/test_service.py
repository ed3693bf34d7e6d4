"""ConfigService on PostgreSQL and SQLite: seed, apply, reject, stale versions, patches, rollback,
masked secrets, refresh from another replica, a database down at start, and file mode."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import parse_config
from gateway.db.engine import make_engine, session_factory
from gateway.db.models import AuditLog, ConfigVersion
from gateway.live.runtime import LiveConfig
from gateway.live.secrets import MASK
from gateway.live.service import ConfigReadOnly, ConfigRejected, ConfigService, StaleVersion
from gateway.live.store import ConfigStore
from gateway.settings import Settings
from tests.gateway.db.databases import CLOSED_PG_URL

SECRET = "sk-live-SECRET-9f8e7d"
ENV = {"UP_KEY": "sk-from-env"}


def model(name: str, tier: str = "small", **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai_compatible",
        "model": name,
        "api_base": "http://127.0.0.1:9/v1",
        "tier": tier,
        **more,
    }


SEED = {"models": [model("cheap", api_key="${UP_KEY}")], "routes": {}}
TWO = {
    "models": [model("cheap", api_key="${UP_KEY}"), model("strong", "large")],
    "routes": {"auto": {"candidates": ["cheap", "strong"]}},
}


def settings(**more: Any) -> Settings:
    return Settings(_env_file=None, local_model=False, **more)  # type: ignore[call-arg]


def service(engine: AsyncEngine, document: dict[str, Any] = SEED, **more: Any) -> ConfigService:
    s = settings(**more)
    live = LiveConfig(s, {}, parse_config(document, ENV))
    return ConfigService(ConfigStore(session_factory(engine)), live, s, ENV, document=document)


async def audit_rows(engine: AsyncEngine) -> list[AuditLog]:
    async with session_factory(engine)() as session:
        return list((await session.scalars(select(AuditLog).order_by(AuditLog.id))).all())


async def test_apply_reject_stale_patch_and_rollback(engine: AsyncEngine) -> None:
    svc = service(engine)
    announced: list[int] = []

    async def hook(version: int) -> None:
        announced.append(version)

    svc.on_applied.append(hook)
    await svc.start()
    assert svc.live.version == 1 and (await svc.current()).author == "defaults"

    applied = await svc.apply(TWO, "alice", "add strong", expected=1)
    assert (applied.created, applied.current.version, svc.live.version) == (True, 2, 2)
    assert {(c["op"], c["path"]) for c in applied.diff} == {
        ("added", "models.strong"),
        ("added", "routes.auto"),
    }
    assert svc.live.current.config.routes["auto"].candidates == ["cheap", "strong"]
    assert (await svc.apply(TWO, "alice")).created is False  # the newest already: no new version

    bad = {"models": [model("cheap", "giant")], "routes": {"auto": {"candidates": ["x"]}}}
    with pytest.raises(ConfigRejected) as rejected:
        await svc.apply(bad, "alice", expected=2)
    assert {e["loc"] for e in rejected.value.errors} == {"models.0.tier", "routes.auto.candidates"}
    assert svc.live.version == 2 and await svc.store.current_version() == 2
    with pytest.raises(StaleVersion) as stale:
        await svc.apply(SEED, "bob", expected=1)
    assert stale.value.current == 2

    await svc.patch_route("fast", {"candidates": ["cheap"]}, "alice", expected=2)
    await svc.patch_model(
        "strong", {"provider": "openai_compatible", "model": "m2", "tier": "medium"}, "alice"
    )
    assert svc.live.current.config.routes["fast"].candidates == ["cheap"]
    assert [d.tier for d in svc.live.current.config.models if d.name == "strong"] == ["medium"]
    with pytest.raises(ConfigRejected) as still_used:
        await svc.patch_model("strong", None, "alice")  # `auto` still routes to it
    assert still_used.value.errors[0]["loc"] == "routes.auto.candidates"
    await svc.patch_route("fast", None, "alice")
    assert svc.live.version == 5 and "fast" not in svc.live.current.config.routes

    back = await svc.rollback(2, "carol")
    assert (back.current.version, svc.live.version) == (6, 6)
    assert (await svc.get(6)).document == (await svc.get(2)).document
    assert announced == [2, 3, 4, 5, 6]
    rows = await audit_rows(engine)
    assert [r.action for r in rows] == ["config.seed"] + ["config.apply"] * 4 + ["config.rollback"]
    assert rows[-1].actor == "carol" and rows[-1].detail["rollback_to"] == 2  # type: ignore[index]
    assert [v.version for v in await svc.history(limit=2)] == [6, 5]


async def test_secrets_are_stored_encrypted_and_never_shown(engine: AsyncEngine, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    svc = service(engine, config_secret_key="test-secret-key-" + "x" * 20)
    await svc.start()
    headers = {"Authorization": f"Bearer {SECRET}"}
    document = {"models": [model("cheap", api_key=SECRET, headers=headers)], "routes": {}}
    applied = await svc.apply(document, "alice")
    assert svc.live.current.config.models[0].api_key == SECRET  # the provider gets it
    shown = await svc.current()
    assert shown.document["models"][0]["api_key"] == MASK
    # GET -> PUT as read keeps the secrets: nothing changes.
    assert (await svc.apply(shown.document, "alice")).created is False
    # A changed secret shows as changed, masked.
    document["models"][0]["api_key"] = SECRET + "-rotated"
    rotated = await svc.apply(document, "alice")
    assert [c["path"] for c in rotated.diff] == ["models.cheap.api_key"]
    async with session_factory(engine)() as session:
        stored = [v.document for v in (await session.scalars(select(ConfigVersion))).all()]
    everything = repr(
        [stored, applied, rotated, shown, [(r.actor, r.detail) for r in await audit_rows(engine)]]
    )
    assert SECRET not in everything and SECRET not in caplog.text


async def test_refresh_picks_up_a_version_another_replica_applied(engine: AsyncEngine) -> None:
    a, b = service(engine), service(engine)
    await a.start()
    await b.start()
    assert await b.refresh() is False
    await a.apply(TWO, "alice")
    assert (await b.refresh(), b.live.version) == (True, 2)
    assert b.live.current.config.routes["auto"].candidates == ["cheap", "strong"]
    assert await b.refresh() is False


async def test_a_database_down_at_start_runs_version_0_until_refresh(engine: AsyncEngine) -> None:
    down = make_engine(CLOSED_PG_URL, connect_timeout=1.0)
    try:
        svc = service(down)
        await svc.start()
        assert svc.live.version == 0 and (await svc.current()).version == 0
        svc.store = ConfigStore(session_factory(engine))  # the database answers again
        assert await svc.refresh() is True and svc.live.version == 1
    finally:
        await down.dispose()


async def test_file_mode(engine: AsyncEngine, tmp_path: Path, caplog: Any) -> None:
    path = tmp_path / "switchyard.yaml"
    literal = {"models": [model("cheap", api_key=SECRET)], "settings": {"port": 4100}}
    path.write_text(yaml.safe_dump(literal))
    s = settings()
    live = LiveConfig(s, {}, parse_config(literal, ENV))
    svc = ConfigService(ConfigStore(session_factory(engine)), live, s, ENV, mode="file", file=path)
    await svc.start()
    first = await svc.current()
    assert (first.version, first.author, live.version) == (1, f"file:{path}", 1)
    # No key to encrypt it: the database keeps no copy of the file's literal secret.
    assert (await svc.store.latest()).document["models"][0]["api_key"] == MASK  # type: ignore[union-attr]
    with pytest.raises(ConfigReadOnly, match="file mode"):
        await svc.apply(TWO, "alice")
    assert await svc.reload_file() is False  # unchanged

    path.write_text(yaml.safe_dump({**literal, "routes": {"auto": {"candidates": ["cheap"]}}}))
    assert await svc.reload_file() is True
    assert live.version == 2 and live.current.config.models[0].api_key == SECRET
    caplog.set_level(logging.INFO)
    caplog.clear()
    path.write_text(yaml.safe_dump({**literal, "routes": {"auto": {"candidates": ["ghost"]}}}))
    assert await svc.reload_file() is False
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "still running version 2" in errors[0].getMessage()
    assert "ghost" in errors[0].getMessage() and SECRET not in caplog.text
    assert live.version == 2 and live.current.config.routes["auto"].candidates == ["cheap"]
    path.write_text("models: [")
    assert await svc.reload_file() is False and live.version == 2
