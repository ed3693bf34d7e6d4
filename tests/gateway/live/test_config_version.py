"""`x-switchyard-config-version` on every /v1 response (JSON, SSE and errors, both doors) and
`config_version` in /health/ready, before and after a file-mode reload; a bad file is not applied."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.app import create_app
from gateway.settings import Settings
from tests.fakes import openai_upstream
from tests.fakes.server import ServerThread

MASTER_KEY = "sk-master-config-version"
HEADER = "x-switchyard-config-version"
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


def model(name: str, upstream: str) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai_compatible",
        "model": "gpt-4o-mini",
        "api_base": upstream + "/v1",
        "api_key": "sk-upstream",
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with ServerThread(openai_upstream.create_app(hang_seconds=2.0)) as srv:
        yield srv.url


def chat(name: str, stream: bool = False) -> dict[str, Any]:
    return {"model": name, "stream": stream, "messages": [{"role": "user", "content": "hi there"}]}


def message(name: str, stream: bool = False) -> dict[str, Any]:
    return {
        "model": name,
        "max_tokens": 16,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    }


def every_kind(c: httpx.Client) -> dict[str, httpx.Response]:
    """One /v1 response of each kind, by what it is."""
    out = {}
    for door, path, body in (
        ("openai", "/v1/chat/completions", chat),
        ("anthropic", "/v1/messages", message),
    ):
        out[f"{door} json"] = c.post(path, json=body("m"), headers=AUTH)
        with c.stream("POST", path, json=body("m", stream=True), headers=AUTH) as r:
            r.read()
            out[f"{door} sse"] = r
        out[f"{door} unknown model"] = c.post(path, json=body("nope"), headers=AUTH)
        out[f"{door} bad body"] = c.post(path, content=b"{not json", headers=AUTH)
        out[f"{door} bad key"] = c.post(path, json=body("m"), headers={"authorization": "Bearer sk-wrong"})
    out["models"] = c.get("/v1/models", headers=AUTH)
    out["model"] = c.get("/v1/models/m", headers=AUTH)
    out["model unknown"] = c.get("/v1/models/nope", headers=AUTH)
    out["no such path"] = c.get("/v1/nothing-here", headers=AUTH)
    return out


def versions(c: httpx.Client) -> dict[str, str | None]:
    got = every_kind(c)
    statuses = {k: r.status_code for k, r in got.items()}
    assert statuses == {
        "openai json": 200,
        "openai sse": 200,
        "openai unknown model": 404,
        "openai bad body": 400,
        "openai bad key": 401,
        "anthropic json": 200,
        "anthropic sse": 200,
        "anthropic unknown model": 404,
        "anthropic bad body": 400,
        "anthropic bad key": 401,
        "models": 200,
        "model": 200,
        "model unknown": 404,
        "no such path": 404,
    }, statuses
    assert got["openai sse"].headers["content-type"].startswith("text/event-stream")
    return {k: r.headers.get(HEADER) for k, r in got.items()}


def ready_version(c: httpx.Client) -> int:
    return c.get("/health/ready").json()["config_version"]


def wait_version(c: httpx.Client, want: int, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while ready_version(c) != want:
        assert time.monotonic() < deadline, f"version {want} not applied within {within_s}s"
        time.sleep(0.02)


def test_every_v1_response_says_the_version_and_a_file_reload_moves_it(
    tmp_path: Path, upstream: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "switchyard.yaml"
    path.write_text(yaml.safe_dump({"models": [model("m", upstream)]}))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}",
        spool_dir=tmp_path / "spool",
        master_key=MASTER_KEY,
        config_watch_interval_s=0.05,
        config=path,
    )
    app = create_app(settings, env={})
    caplog.set_level(logging.INFO, "switchyard.config")
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=10) as c:
        v = ready_version(c)
        time.sleep(0.2)  # the first look at the file: the same config, so nothing applied
        assert set(versions(c).values()) == {str(v)}, versions(c)
        assert ready_version(c) == v

        path.write_text(yaml.safe_dump({"models": [model("m", upstream), model("m2", upstream)]}))
        wait_version(c, v + 1)
        assert set(versions(c).values()) == {str(v + 1)}
        assert c.post("/v1/chat/completions", json=chat("m2"), headers=AUTH).headers[HEADER] == str(v + 1)

        path.write_text("models: [{name: broken}]\n")  # invalid: logged, the running config kept
        time.sleep(0.3)
        assert ready_version(c) == v + 1
        assert c.post("/v1/chat/completions", json=chat("m2"), headers=AUTH).status_code == 200
    lines = [r.getMessage() for r in caplog.records]
    assert f"config version {v + 1} applied (was {v})" in lines, lines
    bad = [t for t in lines if str(path) in t and f"still running version {v + 1}: " in t]
    assert len(bad) == 1, lines
