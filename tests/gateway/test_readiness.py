"""The readiness policy, and /health/ready of a real app on SQLite (the outages: tests/integration)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.readiness import spool_state, verdict
from gateway.settings import Settings
from tests.fakes.server import ServerThread
from tests.local_backend.loading import pending_model, release


@pytest.mark.parametrize(
    ("models", "database", "redis", "spool", "fail_mode", "want"),
    [
        ("ok", "ok", "ok", "ok", "open", "ready"),
        ("ok", "ok", "disabled", "ok", "closed", "ready"),
        ("none", "ok", "ok", "ok", "open", "not_ready"),
        ("ok", "down", "ok", "ok", "open", "degraded"),
        ("ok", "down", "ok", "not_writable", "open", "not_ready"),
        ("ok", "down", "ok", "full", "open", "not_ready"),
        ("ok", "ok", "ok", "not_writable", "open", "degraded"),
        ("ok", "schema_outdated", "ok", "ok", "open", "not_ready"),
        ("ok", "ok", "down", "ok", "open", "degraded"),
        ("ok", "ok", "down", "ok", "closed", "not_ready"),
        ("loading", "ok", "ok", "ok", "open", "not_ready"),
        ("failed", "ok", "ok", "ok", "open", "not_ready"),
    ],
)
def test_policy(models: str, database: str, redis: str, spool: str, fail_mode: str, want: str) -> None:
    assert verdict(models, database, redis, spool, fail_mode) == want


def test_spool_state_of_a_directory_not_made_yet_is_its_parents(tmp_path: Path) -> None:
    assert spool_state(tmp_path / "not" / "yet") == "ok"
    (tmp_path / "file").write_text("x")
    assert spool_state(tmp_path / "file") == "not_writable"


MASTER_KEY = "sk-master-readiness"


def _app(tmp_path: Path, models: list[dict[str, object]]) -> ServerThread:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}",
        spool_dir=tmp_path / "spool",
        master_key=MASTER_KEY,
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


def test_a_local_model_is_not_ready_while_it_loads_and_a_failed_load_says_why(tmp_path: Path) -> None:
    model = pending_model(tmp_path)  # its load lasts until `release`
    local = {"name": "tiny", "provider": "local", "model": str(model), "options": {"num_threads": 1}}
    with _app(tmp_path, [local]) as srv, ThreadPoolExecutor(1) as pool:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)
        try:
            loading = httpx.get(srv.url + "/health/ready")
            live = httpx.get(srv.url + "/health/live")
            asked = pool.submit(
                client.chat.completions.create, model="tiny", messages=[{"role": "user", "content": "hi"}]
            )
            time.sleep(0.5)
            assert not asked.done()  # a request waits for the load
        finally:
            release(model)
        with pytest.raises(openai.InternalServerError) as failed:
            asked.result(30)
        after = httpx.get(srv.url + "/health/ready")
    assert live.status_code == 200
    assert loading.status_code == 503 and loading.json()["status"] == "not_ready"
    models = loading.json()["checks"]["models"]
    assert (models["state"], models["count"], models["local"]["tiny"]["state"]) == ("loading", 1, "loading")
    assert failed.value.status_code == 503 and failed.value.code == "model_load_failed"
    assert "tiny: local model failed to load: " in failed.value.message
    assert after.status_code == 503
    models = after.json()["checks"]["models"]
    assert (models["state"], models["local"]["tiny"]["state"]) == ("failed", "failed")
    assert models["local"]["tiny"]["error"]
