"""Tracing never costs a request or a shutdown: with the OTLP collector down (a closed port) or hung
(a listener that never answers), requests through the gateway answer at their usual speed, as span
export runs on its own thread, and the gateway stops within a small bound, whatever spans were
left to export being dropped.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from tests.e2e.gateway_harness import CLIENT_TIMEOUT_S, MASTER_KEY, gateway_settings
from tests.fakes import openai_upstream
from tests.fakes.server import ServerThread, closed_port

REQUESTS = 30
# Far below a blocking export's cost (its timeout, seconds), far above a fake upstream's answer.
REQUEST_BOUND_S = 1.0
# How long the gateway may take to stop with spans left that cannot be exported.
SHUTDOWN_BOUND_S = 5.0


@pytest.fixture
def hung_collector() -> Iterator[str]:
    """A collector that accepts connections (the kernel's backlog does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture(params=["closed", "hung"])
def collector_url(request: pytest.FixtureRequest) -> str:
    if request.param == "closed":
        return f"http://127.0.0.1:{closed_port()}"
    return str(request.getfixturevalue("hung_collector"))


def test_an_unreachable_collector_costs_no_request_time_and_no_shutdown_hang(
    collector_url: str, tmp_path: Path
) -> None:
    with ServerThread(openai_upstream.create_app()) as oa:
        models = [
            {"name": "gpt", "provider": "openai", "model": "m", "api_base": oa.url + "/v1", "api_key": "k"}
        ]
        settings = gateway_settings(tmp_path).model_copy(
            update={"otel_endpoint": collector_url, "otel_export_interval_s": 0.05}
        )
        gw = ServerThread(create_app(settings, parse_config({"models": models}, env={}))).start()
        try:
            slowest = 0.0
            with httpx.Client(
                base_url=gw.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=CLIENT_TIMEOUT_S
            ) as client:
                for i in range(REQUESTS):
                    started = time.monotonic()
                    resp = client.post(
                        "/v1/chat/completions",
                        json={"model": "gpt", "messages": [{"role": "user", "content": f"hi {i}"}]},
                    )
                    slowest = max(slowest, time.monotonic() - started)
                    assert resp.status_code == 200, resp.text
            assert slowest < REQUEST_BOUND_S, f"a request took {slowest:.2f}s"
        finally:
            # Spans of the last requests are still queued or being exported when the gateway stops.
            started = time.monotonic()
            stopped = gw.stop(timeout_s=30)
            took = time.monotonic() - started
        assert stopped and took < SHUTDOWN_BOUND_S, f"shutdown took {took:.2f}s"
