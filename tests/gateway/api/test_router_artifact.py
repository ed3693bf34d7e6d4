"""`router_artifact:` in the live config: a PUT that names a retrained artifact changes where a real
chat request goes at once; a missing or unreadable one is refused with the rest of the document's
errors; rollback brings the previous artifact back. A whole gateway on loopback, the official
OpenAI SDK as the client, the upstream faked at the HTTP boundary."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from gateway.app import create_app
from routing.artifact import load, save
from tests.fakes import openai_upstream
from tests.fakes.server import ServerThread
from tests.gateway.api.test_config_admin import AUTH, MASTER, document, settings


@pytest.fixture(scope="module")
def upstream() -> Iterator[ServerThread]:
    with ServerThread(openai_upstream.create_app()) as srv:
        yield srv


def shifted(path: Path, by: float) -> Path:
    """The shipped artifact with its score percentiles moved by `by`: +100 puts every prompt at
    difficulty 0 (cheapest tier), -100 at 1 (strongest)."""
    shipped = load()
    save(dataclasses.replace(shipped, score_quantiles=shipped.score_quantiles + by), path)
    return path


def with_artifact(upstream: ServerThread, artifact: Path | str | None) -> dict[str, Any]:
    doc = document(upstream, ["cheap", "strong"])
    doc["routes"]["auto"]["strong_fraction"] = 0.5
    if artifact is not None:
        doc["router_artifact"] = str(artifact)
    return doc


async def test_applying_an_artifact_changes_routing_live(
    db_url: str, upstream: ServerThread, tmp_path: Path
) -> None:
    easy, hard = shifted(tmp_path / "all-easy.npz", 100.0), shifted(tmp_path / "all-hard.npz", -100.0)
    app = create_app(settings(tmp_path, db_url, config_secret_key="k" * 40), env={})
    with (
        ServerThread(app) as gw,
        httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as admin,
        openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER, max_retries=0) as client,
    ):

        def put(doc: dict[str, Any], version: int) -> httpx.Response:
            return admin.put("/admin/config", json=doc, headers={"if-match": str(version)})

        def call(method: str, path: str) -> httpx.Response:
            return admin.request(method, path)

        def routed() -> tuple[str, str]:
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": "Summarise this note in one line."}]
            )
            return raw.headers["x-switchyard-model"], raw.headers["x-switchyard-route"]

        assert put(with_artifact(upstream, hard), 1).status_code == 200
        model, route = routed()
        assert model == "strong" and "difficulty=1.00" in route

        r = put(with_artifact(upstream, easy), 2)
        assert r.status_code == 200 and r.json()["version"] == 3
        assert r.json()["diff"] == [
            {"op": "changed", "path": "router_artifact", "old": str(hard), "new": str(easy)}
        ]
        model, route = routed()
        assert model == "cheap" and "difficulty=0.00" in route

        broken = tmp_path / "broken.npz"
        broken.write_bytes(b"not an npz")
        for bad, why in ((tmp_path / "missing.npz", "not found"), (broken, "unreadable")):
            r = put(with_artifact(upstream, bad), 3)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_config"
            (err,) = r.json()["error"]["errors"]
            assert err["loc"] == "router_artifact" and why in err["message"]
        assert routed()[0] == "cheap"  # still version 3

        r = call("POST", "/admin/config/rollback/2")
        assert r.status_code == 200 and r.json()["version"] == 4
        assert routed()[0] == "strong"
        assert call("GET", "/admin/config").json()["document"]["router_artifact"] == str(hard)

        assert put(with_artifact(upstream, None), 4).status_code == 200  # back to the embedded router
        assert "difficulty=1.00" not in routed()[1]


def test_an_artifact_of_another_format_is_refused(tmp_path: Path) -> None:
    from gateway.config import ConfigError, parse_config

    old = tmp_path / "old.npz"
    np.savez(old, meta=np.frombuffer(b'{"format_version": 1}', np.uint8))
    with pytest.raises(ConfigError, match=r"router_artifact: .*format 1, expected 2"):
        parse_config({"models": [], "routes": {}, "router_artifact": str(old)}, {})
