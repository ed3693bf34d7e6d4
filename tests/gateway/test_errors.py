"""The error layer on a real server: an unexpected exception is a clean 500 that leaves the keep-alive
connection usable, a stream that breaks after its headers ends in an error event, and client input
quoted back in an error is cut short."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from gateway.app import create_app
from gateway.config import parse_config
from gateway.errors import install_handlers
from gateway.settings import Settings
from tests.fakes.server import ServerThread, closed_port

MASTER_KEY = "sk-master"


def _failing_app() -> FastAPI:
    """Routes that fail the ways no handler expects; `/port` says which client connection asked."""
    app = FastAPI()
    install_handlers(app)

    @app.get("/port")
    async def port(request: Request) -> dict[str, int]:
        assert request.client is not None
        return {"port": request.client.port}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @app.post("/v1/messages")
    async def boom_anthropic() -> None:
        raise RuntimeError("a bug behind the Anthropic door")

    async def events_then_bug() -> AsyncIterator[bytes]:
        yield b'data: {"n": 1}\n\n'
        raise RuntimeError("a bug mid-stream")

    @app.get("/boom-stream")
    async def boom_stream() -> StreamingResponse:
        return StreamingResponse(events_then_bug(), media_type="text/event-stream")

    @app.get("/boom-body")
    async def boom_body() -> StreamingResponse:
        return StreamingResponse(events_then_bug(), media_type="application/json")

    return app


@pytest.fixture(scope="module")
def failing() -> Iterator[str]:
    with ServerThread(_failing_app()) as srv:
        yield srv.url


def _port(client: httpx.Client) -> int:
    return int(client.get("/port").json()["port"])


def test_unhandled_exception_is_a_500_on_a_connection_that_stays_open(failing: str) -> None:
    with httpx.Client(base_url=failing, timeout=5) as client:
        before = _port(client)
        r = client.get("/boom")
        assert r.status_code == 500
        assert r.json()["error"] == {
            "message": "internal gateway error",
            "type": "api_error",
            "param": None,
            "code": None,
        }
        assert "a bug" not in r.text
        # The same connection serves the next request: the server neither closed nor poisoned it.
        assert _port(client) == before


def test_unhandled_exception_behind_the_anthropic_door_is_anthropic_shaped(failing: str) -> None:
    with httpx.Client(base_url=failing, timeout=5) as client:
        before = _port(client)
        r = client.post("/v1/messages", json={})
        assert r.status_code == 500
        error = {"type": "api_error", "message": "internal gateway error"}
        assert r.json() == {"type": "error", "error": error}
        assert _port(client) == before


def test_stream_broken_after_its_headers_ends_with_an_error_event(failing: str) -> None:
    with httpx.Client(base_url=failing, timeout=5) as client:
        before = _port(client)
        with client.stream("GET", "/boom-stream") as r:
            assert r.status_code == 200
            body = r.read()
        events = [e for e in body.split(b"\n\n") if e]
        assert events[0] == b'data: {"n": 1}'
        assert orjson.loads(events[-1].removeprefix(b"data: "))["error"]["type"] == "api_error"
        assert _port(client) == before


def test_other_body_broken_after_its_headers_is_cut_off(failing: str) -> None:
    """A JSON body cannot carry an error after it started: the client must see it incomplete."""
    with httpx.Client(base_url=failing, timeout=5) as client:
        with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", "/boom-body") as r:
            r.read()
        assert client.get("/port").status_code == 200


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state: Path = tmp_path_factory.mktemp("errors-gateway")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{state / 'switchyard.db'}",
        spool_dir=state / "spool",
        master_key=MASTER_KEY,
    )
    model = {
        "name": "gpt-4o-mini",
        "provider": "openai_compatible",
        "model": "gpt-4o-mini",
        "api_base": f"http://127.0.0.1:{closed_port()}/v1",
        "api_key": "sk-unused",
    }
    config = parse_config({"models": [model]}, env={})
    with ServerThread(create_app(settings, config)) as srv:
        yield srv.url


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_huge_unknown_model_name_is_not_echoed_whole(gateway: str, path: str) -> None:
    name = "m" * (30 * 1024 * 1024)
    body = {"model": name, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
    r = httpx.post(gateway + path, content=orjson.dumps(body), headers=headers, timeout=60)
    assert r.status_code == 404, r.text[:500]
    assert len(r.content) < 4096, len(r.content)
    assert "m" * 200 + "…" in r.text
