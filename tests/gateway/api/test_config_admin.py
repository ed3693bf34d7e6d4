"""/admin/config on a whole gateway (create_app, uvicorn on loopback) on PostgreSQL and SQLite: a PUT
changes where a real chat request goes; rejects list every error and change nothing; a stale If-Match
is a 409; rollback; the dry run; secrets never come back; and `switchyard config ...` end to end."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import create_app
from gateway.cli import main
from gateway.db.engine import session_factory
from gateway.db.models import AuditLog, ConfigVersion
from gateway.settings import Settings
from tests.fakes import openai_upstream
from tests.fakes.server import ServerThread

MASTER = "sk-master-config"
SECRET = "sk-upstream-SECRET-5a4b3c"
AUTH = {"authorization": f"Bearer {MASTER}"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[ServerThread]:
    with ServerThread(openai_upstream.create_app()) as srv:
        yield srv


def settings(tmp: Path, database_url: str, **more: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        spool_dir=tmp / "spool",
        master_key=MASTER,
        local_model=False,
        openai_api_key=None,
        anthropic_api_key=None,
        gemini_api_key=None,
        **more,
    )


def document(upstream: ServerThread, route: list[str], api_key: str = SECRET) -> dict[str, Any]:
    def dep(name: str, upstream_model: str, tier: str) -> dict[str, Any]:
        return {
            "name": name,
            "provider": "openai_compatible",
            "model": upstream_model,
            "api_base": upstream.url + "/v1",
            "api_key": api_key,
            "tier": tier,
            "price": {"input_per_mtok": 1, "output_per_mtok": 2},
        }

    return {
        "models": [dep("cheap", "gpt-4o-mini", "small"), dep("strong", "gpt-4o", "large")],
        "routes": {"auto": {"candidates": route}},
    }


def chat(client: httpx.Client) -> str:
    r = client.post(
        "/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert r.status_code == 200, r.text
    return r.headers["x-switchyard-model"]


async def test_live_changes_through_the_api(
    db_url: str, engine: AsyncEngine, upstream: ServerThread, tmp_path: Path, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    app = create_app(settings(tmp_path, db_url, config_secret_key="k" * 40), env={})
    with ServerThread(app) as gw, httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as client:

        def call(method: str, path: str, **kw: Any) -> httpx.Response:
            r = client.request(method, path, **kw)
            seen.append(r.text)
            return r

        r = call("GET", "/admin/config")
        assert r.status_code == 200 and r.headers["etag"] == '"1"'
        assert r.json()["mode"] == "database" and r.json()["document"] == {"models": [], "routes": {}}
        assert call("PUT", "/admin/config", json=document(upstream, ["cheap"])).status_code == 428

        r = call("PUT", "/admin/config", json=document(upstream, ["cheap"]), headers={"if-match": '"1"'})
        assert r.status_code == 200, r.text
        assert (r.json()["version"], r.headers["x-switchyard-config-version"]) == (2, "2")
        assert chat(client) == "cheap" and upstream.app.state.requests[-1].body["model"] == "gpt-4o-mini"
        assert upstream.app.state.requests[-1].headers["authorization"] == f"Bearer {SECRET}"

        # GET -> edit -> PUT: the masked secrets are kept.
        current = call("GET", "/admin/config").json()
        assert current["document"]["models"][0]["api_key"] == "********"
        current["document"]["routes"]["auto"]["candidates"] = ["strong"]
        r = call("PUT", "/admin/config", json=current["document"], headers={"if-match": "2"})
        assert r.json()["diff"] == [
            {"op": "changed", "path": "routes.auto.candidates", "old": ["cheap"], "new": ["strong"]}
        ]
        assert chat(client) == "strong" and upstream.app.state.requests[-1].body["model"] == "gpt-4o"
        assert upstream.app.state.requests[-1].headers["authorization"] == f"Bearer {SECRET}"

        r = call("PUT", "/admin/config", json=document(upstream, ["cheap"]), headers={"if-match": "2"})
        assert r.status_code == 409 and r.json()["error"]["current_version"] == 3

        bad = document(upstream, ["ghost"])
        bad["models"][0].update(tier="giant", rpm=-1)
        bad["models"][1]["api_key"] = "${NOT_SET_ANYWHERE}"
        r = call("PUT", "/admin/config", json=bad, headers={"if-match": "3"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_config"
        assert {e["loc"] for e in r.json()["error"]["errors"]} == {
            "models.0.tier",
            "models.0.rpm",
            "models.1.api_key",
            "routes.auto.candidates",
        }
        assert call("GET", "/admin/config").json()["version"] == 3 and chat(client) == "strong"

        r = call("POST", "/admin/config/validate", json=document(upstream, ["cheap"]))
        body = r.json()
        assert (body["valid"], body["base_version"], body["errors"]) == (True, 3, [])
        assert [d["path"] for d in body["diff"]] == ["routes.auto.candidates"]
        # The preview replays the route's logged requests (none answered with a difficulty here: the
        # in-order planner records none) or, given sample prompts, plans them on both sides.
        (route,) = body["preview"]["routes"]
        assert (route["route"], body["preview"]["source"]) == ("auto", "logged")
        samples = {"prompts": ["hello", "hi there"], "completion_tokens": 10}
        body = call(
            "POST",
            "/admin/config/validate",
            json={"document": document(upstream, ["cheap"]), "preview": samples},
        ).json()
        (route,) = body["preview"]["routes"]
        assert [(p["before"], p["after"]) for p in route["samples"]] == [("strong", "cheap")] * 2
        r = call(
            "POST",
            "/admin/config/validate",
            json={"document": document(upstream, ["cheap"]), "preview": {"limit": 0}},
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "preview.limit"
        body = call(
            "POST", "/admin/config/validate", json={"document": bad, "preview": {"requests": 10}}
        ).json()
        assert body["valid"] is False and len(body["errors"]) == 4

        r = call(
            "PATCH", "/admin/config/routes/auto", json={"candidates": ["cheap"]}, headers={"if-match": "3"}
        )
        assert r.json()["version"] == 4 and chat(client) == "cheap"
        r = call("POST", "/admin/config/rollback/3", params={"author": "ops", "comment": "back"})
        assert r.json()["version"] == 5 and chat(client) == "strong"
        assert call("POST", "/admin/config/rollback/99").status_code == 404

        page = call("GET", "/admin/config/versions", params={"limit": 2}).json()
        assert [v["version"] for v in page["data"]] == [5, 4] and page["next_before"] == 4
        assert page["data"][0]["author"] == "master (ops)" and page["data"][0]["comment"] == "back"
        assert (
            call("GET", "/admin/config/versions/2").json()["document"]["models"][0]["api_key"] == "********"
        )

        # Team overrides must fit the running config.
        r = call("POST", "/admin/teams", json={"name": "t", "routing": {"routes": {"nope": {}}}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_routing"
        assert (
            call("POST", "/admin/teams", json={"name": "t", "routing": {"routes": {"auto": {}}}}).status_code
            == 201
        )

    async with session_factory(engine)() as session:
        stored = [
            (v.document, v.author, v.comment) for v in (await session.scalars(select(ConfigVersion))).all()
        ]
        audits = [(a.actor, a.action, a.detail) for a in (await session.scalars(select(AuditLog))).all()]
    assert len(stored) == 5 and len(audits) >= 5
    for where in (repr(stored), repr(audits), caplog.text, *seen):
        assert SECRET not in where


def test_openapi_documents_the_config_api(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"), env={})
    doc = app.openapi()
    paths = doc["paths"]
    assert {"get", "put"} <= set(paths["/admin/config"])
    for path in ("/admin/config/versions", "/admin/config/validate", "/admin/config/rollback/{n}"):
        assert path in paths
    assert "409" in paths["/admin/config"]["put"]["responses"]
    schemas = doc["components"]["schemas"]
    refs = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"].rsplit("/", 1)[-1])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert {"ConfigDocument", "Deployment", "Route", "ValidateResult"} <= refs and refs <= set(schemas)


async def test_file_mode_refuses_changes(tmp_path: Path, upstream: ServerThread) -> None:
    path = tmp_path / "switchyard.yaml"
    path.write_text(yaml.safe_dump(document(upstream, ["cheap"])))
    app = create_app(settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}", config=path), env={})
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=AUTH) as client:
        r = await client.put("/admin/config", json=document(upstream, ["strong"]), headers={"if-match": "*"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "config_read_only"
        assert str(path) in r.json()["error"]["message"]
        assert (await client.post("/admin/config/rollback/1")).status_code == 409


def test_cli_end_to_end(
    tmp_path: Path,
    upstream: ServerThread,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = create_app(settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"), env={"UP_KEY": SECRET})
    with ServerThread(app) as gw:
        monkeypatch.setenv("SWITCHYARD_URL", gw.url)
        monkeypatch.setenv("SWITCHYARD_MASTER_KEY", MASTER)

        def run(*argv: str) -> tuple[int, str, str]:
            code = main(["config", *argv])
            out, err = capsys.readouterr()
            return code, out, err

        code, out, _ = run("get")
        assert code == 0 and out.startswith("# config version 1\n")
        edited = tmp_path / "edited.yaml"
        edited.write_text("# config version 1\n" + yaml.safe_dump(document(upstream, ["cheap"], "${UP_KEY}")))
        code, _, err = run("validate", str(edited))
        assert code == 0 and "valid: 3 changes against version 1" in err
        code, _, err = run("apply", str(edited), "--comment", "first routes")
        assert code == 0 and "applied: version 2" in err
        code, _, err = run("apply", str(edited))  # its version line is 1 now stale
        assert code == 2 and "version 2 is the newest" in err and len(err.strip().splitlines()) == 1

        code, out, _ = run("get")
        got = tmp_path / "got.yaml"
        got.write_text(out.replace("- cheap", "- strong"))
        code, _, err = run("apply", str(got))
        assert code == 0 and "applied: version 3" in err and "routes.auto.candidates" in err

        broken = tmp_path / "broken.yaml"
        broken.write_text(yaml.safe_dump({"models": [{"name": "x", "tier": "giant"}], "routes": {"r": {}}}))
        code, _, err = run("validate", str(broken))
        assert (
            code == 2 and "models.0.tier" in err and "models.0.model" in err and "routes.r.candidates" in err
        )
        code, _, err = run("apply", str(broken))
        assert code == 2 and "nothing changed" in err

        code, _, err = run("rollback", "2")
        assert code == 0 and "rolled back: version 4 has version 2's document" in err
        code, out, _ = run("history")
        assert [line.split()[0] for line in out.splitlines()] == ["version", "4", "3", "2", "1"]
        assert "first routes" in out
        assert run("get", "--version", "9")[0] == 2
        monkeypatch.setenv("SWITCHYARD_MASTER_KEY", "wrong")
        code, _, err = run("history")
        assert code == 2 and "invalid master key (HTTP 401)" in err
    assert SECRET not in repr(capsys.readouterr())
