"""Shared pieces of the AnthropicProvider tests against the fake Anthropic upstream: the `server` and
`provider` fixtures (a test module uses them by binding them as module globals), a provider factory and the
request and stream helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from providers.anthropic import AnthropicProvider
from providers.base import Chunk, UpstreamCall
from providers.deployment import Deployment
from tests.fakes.server import ServerThread


@pytest.fixture(scope="module")
def server(anthropic_upstream: ServerThread) -> ServerThread:
    """The conftest's fake Anthropic upstream, under the name these tests use."""
    return anthropic_upstream


def requests_of(server: ServerThread) -> list[dict[str, Any]]:
    return server.app.state.requests


def make(server_url: str, **overrides: Any) -> AnthropicProvider:
    fields: dict[str, Any] = {
        "name": "claude",
        "provider": "anthropic",
        "model": "claude-test",
        "api_base": server_url,
        "api_key": "sk-ant-test",
        "headers": {"x-team": "blue"},
        "timeout": 5.0,
        "connect_timeout": 1.0,
    }
    fields.update(overrides)
    return AnthropicProvider(Deployment(**fields))


@pytest.fixture
async def provider(server: ServerThread) -> AsyncIterator[AnthropicProvider]:
    p = make(server.url)
    yield p
    await p.aclose()


def chat(model: str = "claude-test", content: str = "hello there world", **extra: Any) -> UpstreamCall:
    return UpstreamCall(body={"model": model, "messages": [{"role": "user", "content": content}], **extra})


async def collect(stream: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in stream]
