"""The provider matrix of the one conformance suite that every upstream adapter must pass.

Every case runs for every adapter (`openai_compatible`, `anthropic`, `gemini`, `litellm`), each against the
fake of its own wire protocol; an adapter or fake module that does not exist yet skips its parameter. The
fault convention is in `tests.fakes`. This module holds what the `test_conformance_*` modules share: the
parametrised `adapter` fixture, the `make` provider factory, the `_known_failures` autouse fixture (a test
module uses them by binding them as module globals), the request constants and the helpers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from providers.base import Chunk, Provider, UpstreamCall, UpstreamError, UpstreamResponse
from providers.deployment import Deployment, ProviderName
from tests.fakes.server import ServerThread
from tests.providers.conftest import import_or_skip

FAST_TIMEOUT = 0.5  # the hang case: the adapter must give up on its own, quickly
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
USER = {"role": "user", "content": "Say hello to me"}  # 4 words: the fakes' prompt_tokens
# (model, status, retryable): the fakes' fault models and the error each must surface as.
FAULTS = [
    ("fail-400", 400, False),
    ("fail-401", 401, False),
    ("fail-429", 429, True),
    ("fail-500", 500, True),
]


@dataclass(frozen=True)
class Spec:
    module: str
    cls: str
    provider: ProviderName
    # The conftest fixture serving this adapter's fake upstream (it skips while the fake is missing).
    fake: str
    api_suffix: str = ""
    model_prefix: str = ""
    embeddings: bool = True


SPECS: dict[str, Spec] = {
    "openai_compatible": Spec(
        "providers.openai_compatible",
        "OpenAICompatibleProvider",
        "openai_compatible",
        "openai_upstream",
        api_suffix="/v1",
    ),
    "anthropic": Spec(
        "providers.anthropic",
        "AnthropicProvider",
        "anthropic",
        "anthropic_upstream",
        embeddings=False,
    ),
    "gemini": Spec("providers.gemini", "GeminiProvider", "gemini", "gemini_upstream"),
    "litellm": Spec(
        "providers.litellm_sdk",
        "LitellmProvider",
        "litellm",
        "openai_upstream",
        api_suffix="/v1",
        model_prefix="openai/",
    ),
}


@dataclass
class Adapter:
    """One adapter under test, bound to its running fake upstream."""

    name: str
    spec: Spec
    cls: type
    server: ServerThread

    @property
    def api_base(self) -> str:
        return self.server.url + self.spec.api_suffix

    def deployment(self, model: str, **overrides: Any) -> Deployment:
        fields: dict[str, Any] = {
            "name": f"conformance-{self.name}",
            "provider": self.spec.provider,
            "model": self.spec.model_prefix + model,
            "api_base": self.api_base,
            "api_key": "sk-test",
            "timeout": 10.0,
            "connect_timeout": 2.0,
        }
        fields.update(overrides)
        return Deployment(**fields)

    def recorded(self) -> list[Any]:
        return list(self.server.app.state.requests)


@pytest.fixture(scope="module", params=list(SPECS))
def adapter(request: pytest.FixtureRequest) -> Adapter:
    spec = SPECS[request.param]
    cls = getattr(import_or_skip(spec.module), spec.cls)
    server: ServerThread = request.getfixturevalue(spec.fake)
    return Adapter(request.param, spec, cls, server)


# Conformance failures found in adapters owned by others, reported and awaiting a fix there. They run
# as non-strict xfails so the suite stays green meanwhile; delete an entry once its adapter is fixed
# (an XPASS in the report says it is).
# Keys are test names with their parameters, e.g. "test_closed_port_stream[litellm]".
KNOWN_FAILURES: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _known_failures(request: pytest.FixtureRequest) -> None:
    reason = KNOWN_FAILURES.get(request.node.name)
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=False))


MakeProvider = Callable[..., Provider]


@pytest.fixture
async def make(adapter: Adapter) -> AsyncIterator[MakeProvider]:
    """`make(model, **deployment_overrides)` -> a provider for that upstream model id; closed after."""
    built: list[Provider] = []

    def factory(model: str = "conformance-model", **overrides: Any) -> Provider:
        deployment = adapter.deployment(model, **overrides)
        provider: Provider = adapter.cls(deployment)
        built.append(provider)
        return provider

    yield factory
    for provider in built:
        await provider.aclose()


# ---------------------------------------------------------------- helpers


def chat(
    provider: Provider, messages: list[dict[str, Any]], *, stream: bool = False, **extra: Any
) -> UpstreamCall:
    body: dict[str, Any] = {"model": provider.deployment.model, "messages": messages, **extra}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return UpstreamCall(body=body)


async def collect(stream: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in stream]


def check_chunk_framing(chunks: list[Chunk]) -> None:
    assert chunks, "the stream yielded nothing"
    for chunk in chunks:
        assert isinstance(chunk, Chunk)
        assert chunk.raw.startswith(b"data: ") and chunk.raw.endswith(b"\n\n"), chunk.raw
        assert b"[DONE]" not in chunk.raw, "adapters never yield the [DONE] sentinel"
        assert orjson.loads(chunk.raw[6:]) == chunk.data, "raw and data disagree"


def stream_text(chunks: list[Chunk]) -> str:
    return "".join(
        (choice.get("delta") or {}).get("content") or ""
        for c in chunks
        for choice in c.data.get("choices") or []
    )


def stream_tool_calls(chunks: list[Chunk]) -> list[dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for c in chunks:
        for choice in c.data.get("choices") or []:
            for tc in (choice.get("delta") or {}).get("tool_calls") or []:
                slot = calls.setdefault(tc["index"], {"id": None, "name": None, "arguments": ""})
                slot["id"] = tc.get("id") or slot["id"]
                fn = tc.get("function") or {}
                slot["name"] = fn.get("name") or slot["name"]
                slot["arguments"] += fn.get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


def finish_reasons(chunks: list[Chunk]) -> list[str]:
    return [
        choice["finish_reason"]
        for c in chunks
        for choice in c.data.get("choices") or []
        if choice.get("finish_reason")
    ]


def check_usage_tail(chunks: list[Chunk]) -> dict[str, Any]:
    assert chunks, "the stream yielded nothing"
    last = chunks[-1].data
    assert last.get("choices") == [], f"the last chunk is not usage-only: {last}"
    assert last.get("usage"), f"the usage-only chunk carries no usage: {last}"
    assert all(c.data.get("choices") for c in chunks[:-1]), "a usage-only chunk before the end"
    return last["usage"]


async def raises_upstream(coro: Awaitable[Any]) -> UpstreamError:
    with pytest.raises(UpstreamError) as info:
        await coro
    return info.value


async def first_chunk(provider: Provider, call: UpstreamCall) -> Chunk:
    stream = provider.stream(call)
    try:
        return await stream.__anext__()
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def assistant_echo(message: dict[str, Any]) -> dict[str, Any]:
    """The assistant turn as an OpenAI client sends it back."""
    return {
        "role": "assistant",
        "content": message.get("content"),
        "tool_calls": [
            {
                "id": tc["id"],
                "type": "function",
                "function": {"name": tc["function"]["name"], "arguments": tc["function"]["arguments"]},
            }
            for tc in message["tool_calls"]
        ],
    }


def message_of(resp: UpstreamResponse) -> dict[str, Any]:
    assert resp.data.get("object") == "chat.completion", resp.data
    assert len(resp.data["choices"]) == 1
    return resp.data["choices"][0]["message"]
