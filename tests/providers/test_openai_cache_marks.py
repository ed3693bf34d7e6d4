"""Anthropic's cache_control marks are taken out of what goes to OpenAI and Azure (their API refuses
them and caches on its own) and kept for other servers of OpenAI's API, which may read them."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers.base import UpstreamCall
from providers.deployment import Deployment
from providers.openai_compatible import OpenAICompatibleProvider, without_cache_marks
from tests.fakes.server import ServerThread

MARK = {"type": "ephemeral"}
MARKED: dict[str, Any] = {
    "model": "m",
    "messages": [
        {"role": "system", "content": [{"type": "text", "text": "sys", "cache_control": MARK}]},
        {"role": "user", "content": "hi", "cache_control": MARK},
        {"role": "user", "content": "plain"},
    ],
    "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": MARK}],
}
ANSWER = {
    "id": "c",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def test_marks_are_taken_out_and_nothing_else() -> None:
    clean = without_cache_marks(MARKED)
    assert "cache_control" not in orjson.dumps(clean).decode()
    assert clean["messages"][0]["content"] == [{"type": "text", "text": "sys"}]
    assert clean["messages"][1] == {"role": "user", "content": "hi"}
    assert clean["messages"][2] is MARKED["messages"][2]
    assert clean["tools"] == [{"type": "function", "function": {"name": "f"}}]
    assert "cache_control" in orjson.dumps(MARKED).decode()  # the client's body is left as it was
    plain = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}
    assert without_cache_marks(plain) is plain


async def _capture(request: Request) -> Response:
    request.app.state.bodies.append(orjson.loads(await request.body()))
    return Response(orjson.dumps(ANSWER), media_type="application/json")


async def test_azure_gets_no_marks_and_a_compatible_server_keeps_them() -> None:
    app = Starlette(routes=[Route("/{path:path}", _capture, methods=["POST"])])
    app.state.bodies = []
    with ServerThread(app) as srv:
        for provider, marked in (("azure", False), ("openai_compatible", True), ("openai", True)):
            dep = Deployment(name=provider, provider=provider, model="m", api_base=srv.url, api_key="k")
            adapter = OpenAICompatibleProvider(dep)
            try:
                await adapter.complete(UpstreamCall(MARKED))
            finally:
                await adapter.aclose()
            # provider "openai" at an api_base other than api.openai.com is a compatible server.
            assert ("cache_control" in orjson.dumps(app.state.bodies[-1]).decode()) is marked, provider
