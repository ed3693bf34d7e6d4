"""An admin call while PostgreSQL is unreachable is a 503 service_unavailable with retry-after, not a 500.

The gateway reaches the session's database through a TcpProxy; cut() drops every connection and
refuses new ones, as a database going away would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.settings import Settings
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY, TcpProxy
from tests.integration.harness import PG_PORT, deployment, pg_url_for


@pytest.fixture
def gateway_via_proxy(pg_name: str, upstream: ServerThread, tmp_path: Path) -> Iterator[tuple[str, TcpProxy]]:
    proxy = TcpProxy(PG_PORT).start()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=pg_url_for(pg_name, port=proxy.port),
        spool_dir=tmp_path / "spool",
        master_key=MASTER_KEY,
    )
    config = parse_config({"models": [deployment("priced", upstream.url, 1.0, 2.0)]}, env={})
    try:
        with ServerThread(create_app(settings, config)) as gw:
            yield gw.url, proxy
    finally:
        proxy.close()


@pytest.mark.parametrize("warm", [False, True], ids=["no pooled connection", "pooled connection cut"])
def test_admin_during_db_outage_is_503(gateway_via_proxy: tuple[str, TcpProxy], warm: bool) -> None:
    url, proxy = gateway_via_proxy
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30.0) as client:
        if warm:
            assert client.get("/admin/teams").status_code == 200
        proxy.cut()
        resp = client.get("/admin/teams")
        assert resp.status_code == 503, resp.text
        assert resp.headers["retry-after"].isdigit()
        assert resp.json()["error"]["type"] == "service_unavailable"
        assert client.post("/admin/teams", json={"name": "outage"}).status_code == 503
        proxy.restore()
        assert client.get("/admin/teams").status_code == 200
