"""The 500s the fuzzers found, one request each: every one is now a 400 with an error object, and the
OpenAPI document says what the gateway really takes and sends."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.fuzz.fuzz_harness import AUTH, FuzzGateway

_HI = [{"role": "user", "content": "Hi"}]

CHAT = {
    "role is an array": {"model": "gpt-4o-mini", "messages": [{"role": [], "content": "Hi"}]},
    "role is an object": {"model": "gpt-4o-mini", "messages": [{"role": {}, "content": "Hi"}]},
    "system content is a number (Anthropic)": {
        "model": "claude",
        "messages": [{"role": "system", "content": 5}, *_HI],
    },
    "tools is a string (Anthropic)": {"model": "claude", "messages": _HI, "tools": "data:"},
    "tools item is a number (Gemini)": {"model": "gemini", "messages": _HI, "tools": [1]},
    "tool call is a string (Anthropic)": {
        "model": "claude",
        "messages": [*_HI, {"role": "assistant", "tool_calls": ["x"]}],
    },
    "content part is a string (Anthropic)": {
        "model": "claude",
        "messages": [{"role": "user", "content": [""]}],
    },
}
MESSAGES = {
    "content item is a string": {
        "model": "gpt-4o-mini",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": ["Hi"]}],
    },
    "message is an array": {
        "model": "claude",
        "max_tokens": 5,
        "messages": [[{"role": "user", "content": "Hi"}]],
    },
    "message is a number": {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [10**30]},
    "system is a number": {"model": "gpt-4o-mini", "max_tokens": 5, "messages": _HI, "system": 5},
    "system block is an array": {"model": "gpt-4o-mini", "max_tokens": 5, "messages": _HI, "system": [[{}]]},
    "tool_use id is an array": {
        "model": "gpt-4o-mini",
        "max_tokens": 5,
        "messages": [*_HI, {"role": "assistant", "content": [{"type": "tool_use", "id": [0], "name": "f"}]}],
    },
    "tool_use_id is an object": {
        "model": "gpt-4o-mini",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": {}}]}],
    },
    "tool is a string": {"model": "gpt-4o-mini", "max_tokens": 5, "messages": _HI, "tools": ["x"]},
}


def _cursor(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")


ADMIN: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "NUL in a team name": ("POST", "/admin/teams", {"name": "a\x00b"}),
    "NUL in routing": ("POST", "/admin/teams", {"name": "fuzz-nul-routing", "routing": {"x": "\x00"}}),
    "NUL in a path id": ("GET", "/admin/teams/a%00b", None),
    "NUL in a query filter": ("GET", "/admin/keys?team_id=%00", None),
    "NUL in a key's team_id": ("POST", "/admin/keys", {"team_id": "\x00"}),
    "spend cursor holding a non-date": (
        "GET",
        f"/admin/spend?cursor={_cursor({'g': 'day', 'a': 'x'})}",
        None,
    ),
    "spend cursor holding a NUL": (
        "GET",
        "/admin/spend?group_by=model&cursor=" + _cursor({"g": "model", "a": "\x00"}),
        None,
    ),
    "budget past the ceiling": ("POST", "/admin/teams", {"name": "fuzz-big", "budget_usd": 10**30}),
    "rpm past 32 bits": ("POST", "/admin/teams", {"name": "fuzz-rpm", "rpm": 2**63}),
    "over-long name": ("POST", "/admin/teams", {"name": "x" * 5000}),
}


@pytest.fixture(scope="module")
def client(fuzz_gateway: FuzzGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_gateway.url, headers=AUTH, timeout=10.0) as c:
        yield c


def _assert_400(resp: httpx.Response) -> None:
    assert resp.status_code == 400, resp.text
    doc = resp.json()
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"], doc


@pytest.mark.parametrize("body", CHAT.values(), ids=CHAT.keys())
def test_mistyped_chat_field_is_400(client: httpx.Client, body: dict[str, Any]) -> None:
    _assert_400(client.post("/v1/chat/completions", json=body))


@pytest.mark.parametrize("body", MESSAGES.values(), ids=MESSAGES.keys())
def test_mistyped_messages_field_is_400(client: httpx.Client, body: dict[str, Any]) -> None:
    _assert_400(client.post("/v1/messages", json=body))


@pytest.mark.parametrize(("method", "path", "body"), ADMIN.values(), ids=ADMIN.keys())
def test_bad_admin_input_is_400(client: httpx.Client, method: str, path: str, body: Any) -> None:
    _assert_400(client.request(method, path, json=body))


def test_openapi_documents_v1_bodies_and_400_not_422(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages"):
        op = doc["paths"][path]["post"]
        assert op["requestBody"]["content"]["application/json"]["schema"]["required"], path
        assert {"200", "400", "401", "404", "413", "429", "502", "503", "504"} <= set(op["responses"])
    assert "text/event-stream" in doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "422" not in op["responses"], f"{method} {path}"
    assert "400" in doc["paths"]["/admin/teams"]["post"]["responses"]
