"""The readiness policy, and /health/ready of a real app on SQLite (the outages: tests/integration)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.readiness import spool_state, verdict
from gateway.settings import Settings
from tests.fakes.server import ServerThread


@pytest.mark.parametrize(
    ("models", "database", "redis", "spool", "fail_mode", "want"),
    [
        (1, "ok", "ok", "ok", "open", "ready"),
        (1, "ok", "disabled", "ok", "closed", "ready"),
        (0, "ok", "ok", "ok", "open", "not_ready"),
        (1, "down", "ok", "ok", "open", "degraded"),
        (1, "down", "ok", "not_writable", "open", "not_ready"),
        (1, "down", "ok", "full", "open", "not_ready"),
        (1, "ok", "ok", "not_writable", "open", "degraded"),
        (1, "schema_outdated", "ok", "ok", "open", "not_ready"),
        (1, "ok", "down", "ok", "open", "degraded"),
        (1, "ok", "down", "ok", "closed", "not_ready"),
    ],
)
def test_policy(models: int, database: str, redis: str, spool: str, fail_mode: str, want: str) -> None:
    assert verdict(models, database, redis, spool, fail_mode) == want


def test_spool_state_of_a_directory_not_made_yet_is_its_parents(tmp_path: Path) -> None:
    assert spool_state(tmp_path / "not" / "yet") == "ok"
    (tmp_path / "file").write_text("x")
    assert spool_state(tmp_path / "file") == "not_writable"


def _app(tmp_path: Path, models: list[dict[str, object]]) -> ServerThread:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}",
        spool_dir=tmp_path / "spool",
        master_key="sk-master-readiness",
    )
    return ServerThread(create_app(settings, parse_config({"models": models}, env={})))


def test_ready_body_lists_every_dependency(tmp_path: Path) -> None:
    model = {"name": "m", "provider": "openai_compatible", "model": "m", "api_base": "http://127.0.0.1:9/v1"}
    with _app(tmp_path, [model]) as srv:
        resp = httpx.get(srv.url + "/health/ready")
        spec = httpx.get(srv.url + "/openapi.json").json()
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ready"
    checks = body["checks"]
    assert (checks["models"]["state"], checks["models"]["count"]) == ("ok", 1)
    assert checks["database"]["state"] == "ok"
    assert checks["redis"]["state"] == "disabled"
    assert checks["spool"]["state"] == "ok" and checks["spool"]["spooled"] == 0
    assert "503" in spec["paths"]["/health/ready"]["get"]["responses"]
    assert "not_ready" in spec["paths"]["/health/ready"]["get"]["description"]


def test_no_models_is_not_ready(tmp_path: Path) -> None:
    with _app(tmp_path, []) as srv:
        resp = httpx.get(srv.url + "/health/ready")
        live = httpx.get(srv.url + "/health/live")
    assert resp.status_code == 503
    assert resp.json()["status"] == "not_ready" and resp.json()["checks"]["models"]["state"] == "none"
    assert live.status_code == 200
