"""One conformance suite for every upstream adapter, each against the fake of its own wire protocol.

Every case runs for every adapter (`openai_compatible`, `anthropic`, `gemini`, `litellm`); an adapter
or fake module that does not exist yet skips its parameter. The fault convention is in `tests.fakes`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from providers.base import Chunk, Endpoint, Provider, UpstreamCall, UpstreamError, UpstreamResponse
from providers.deployment import Deployment, ProviderName
from tests.fakes.server import ServerThread, closed_port
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


# ---------------------------------------------------------------- chat


async def test_chat_complete(make: MakeProvider) -> None:
    provider = make()
    resp = await provider.complete(chat(provider, [USER]))
    assert isinstance(resp, UpstreamResponse)
    assert orjson.loads(resp.body) == resp.data
    choice = resp.data["choices"][0]
    message = message_of(resp)
    assert message["role"] == "assistant"
    assert message["content"].startswith("Hello from ")
    assert choice["finish_reason"] == "stop"
    assert choice["index"] == 0
    assert resp.data.get("id")
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 3
    assert resp.usage.prompt_tokens == 4
    assert resp.data["usage"]["prompt_tokens"] == 4 and resp.data["usage"]["completion_tokens"] == 3


async def test_chat_stream(make: MakeProvider) -> None:
    provider = make()
    expected = message_of(await provider.complete(chat(provider, [USER])))["content"]
    chunks = await collect(provider.stream(chat(provider, [USER], stream=True)))
    check_chunk_framing(chunks)
    assert all(c.data.get("object") == "chat.completion.chunk" for c in chunks), [c.data for c in chunks]
    assert stream_text(chunks) == expected
    assert sum(1 for c in chunks if stream_text([c])) >= 2, "the answer arrived in one piece"
    assert finish_reasons(chunks) == ["stop"]
    usage = check_usage_tail(chunks)
    assert usage["completion_tokens"] == 3 and usage["prompt_tokens"] == 4


async def test_system_message(make: MakeProvider, adapter: Adapter) -> None:
    provider = make()
    before = len(adapter.recorded())
    messages = [{"role": "system", "content": "You are a terse pirate."}, USER]
    resp = await provider.complete(chat(provider, messages))
    assert message_of(resp)["content"].startswith("Hello from ")
    assert resp.usage is not None and resp.usage.prompt_tokens == 9, "system text not counted upstream"
    sent = adapter.recorded()[before:]
    assert "You are a terse pirate." in json.dumps(sent, default=str)


async def test_json_mode(make: MakeProvider) -> None:
    provider = make()
    resp = await provider.complete(chat(provider, [USER], response_format={"type": "json_object"}))
    assert json.loads(message_of(resp)["content"]) == {"ok": True}


# ---------------------------------------------------------------- tools


async def test_tool_round_trip(make: MakeProvider) -> None:
    provider = make()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = await provider.complete(chat(provider, messages, tools=[WEATHER_TOOL]))
    choice = first.data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert first.usage is not None

    messages += [
        assistant_echo(choice["message"]),
        {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21C"},
    ]
    second = await provider.complete(chat(provider, messages, tools=[WEATHER_TOOL]))
    assert message_of(second)["content"] == "The tool said: Sunny, 21C"
    assert second.data["choices"][0]["finish_reason"] == "stop"


async def test_tool_call_stream(make: MakeProvider) -> None:
    provider = make()
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    chunks = await collect(provider.stream(chat(provider, messages, stream=True, tools=[WEATHER_TOOL])))
    check_chunk_framing(chunks)
    (call,) = stream_tool_calls(chunks)
    assert call["id"] and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert finish_reasons(chunks) == ["tool_calls"]
    check_usage_tail(chunks)


async def test_tool_choice_none(make: MakeProvider) -> None:
    provider = make()
    resp = await provider.complete(chat(provider, [USER], tools=[WEATHER_TOOL], tool_choice="none"))
    message = message_of(resp)
    assert message["content"].startswith("Hello from ") and not message.get("tool_calls")


# ---------------------------------------------------------------- faults

FAULTS = [
    ("fail-400", 400, False),
    ("fail-401", 401, False),
    ("fail-429", 429, True),
    ("fail-500", 500, True),
]


@pytest.mark.parametrize(("model", "status", "retryable"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_fault_complete(make: MakeProvider, model: str, status: int, retryable: bool) -> None:
    provider = make(model)
    err = await raises_upstream(provider.complete(chat(provider, [USER])))
    assert (err.status, err.retryable) == (status, retryable), vars(err)
    assert err.message


@pytest.mark.parametrize(("model", "status", "retryable"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_fault_stream_first_anext(make: MakeProvider, model: str, status: int, retryable: bool) -> None:
    provider = make(model)
    err = await raises_upstream(first_chunk(provider, chat(provider, [USER], stream=True)))
    assert (err.status, err.retryable) == (status, retryable), vars(err)


@pytest.mark.parametrize("op", ["complete", "stream", "embed"])
@pytest.mark.parametrize("model", ["fail-500", "fail-429"])
async def test_one_attempt_per_call(make: MakeProvider, adapter: Adapter, op: str, model: str) -> None:
    """Retries belong to the gateway: a failing call reaches the upstream exactly once."""
    if op == "embed" and not adapter.spec.embeddings:
        pytest.skip(f"{adapter.name} has no embeddings")
    provider = make(model)
    before = len(adapter.recorded())
    if op == "complete":
        await raises_upstream(provider.complete(chat(provider, [USER])))
    elif op == "stream":
        await raises_upstream(first_chunk(provider, chat(provider, [USER], stream=True)))
    else:
        call = UpstreamCall(
            body={"model": provider.deployment.model, "input": "hello"}, endpoint=Endpoint.EMBED
        )
        await raises_upstream(provider.embed(call))
    attempts = len(adapter.recorded()) - before
    assert attempts == 1, f"{attempts} upstream requests for one {op} call"


async def test_429_retry_after(make: MakeProvider) -> None:
    provider = make("fail-429")
    err = await raises_upstream(provider.complete(chat(provider, [USER])))
    assert err.retry_after == 0.0


async def test_flaky_then_ok(make: MakeProvider, adapter: Adapter) -> None:
    provider = make(f"flaky-1-conformance-{adapter.name}")
    err = await raises_upstream(provider.complete(chat(provider, [USER])))
    assert (err.status, err.retryable) == (500, True)
    resp = await provider.complete(chat(provider, [USER]))
    assert message_of(resp)["content"].startswith("Hello from ")


async def test_hang_times_out_complete(make: MakeProvider) -> None:
    provider = make("hang", timeout=FAST_TIMEOUT)
    err = await raises_upstream(provider.complete(chat(provider, [USER])))
    assert (err.status, err.retryable) == (504, True), vars(err)


async def test_hang_times_out_stream(make: MakeProvider) -> None:
    provider = make("hang", timeout=FAST_TIMEOUT)
    err = await raises_upstream(first_chunk(provider, chat(provider, [USER], stream=True)))
    assert (err.status, err.retryable) == (504, True), vars(err)


async def test_closed_port_complete(make: MakeProvider, adapter: Adapter) -> None:
    provider = make(api_base=f"http://127.0.0.1:{closed_port()}{adapter.spec.api_suffix}")
    err = await raises_upstream(provider.complete(chat(provider, [USER])))
    assert (err.status, err.retryable) == (502, True), vars(err)


async def test_closed_port_stream(make: MakeProvider, adapter: Adapter) -> None:
    provider = make(api_base=f"http://127.0.0.1:{closed_port()}{adapter.spec.api_suffix}")
    err = await raises_upstream(first_chunk(provider, chat(provider, [USER], stream=True)))
    assert (err.status, err.retryable) == (502, True), vars(err)


async def test_die_midstream(make: MakeProvider) -> None:
    provider = make("die-midstream")
    got: list[Chunk] = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in provider.stream(chat(provider, [USER], stream=True)):
            got.append(chunk)
    assert got, "the stream failed before yielding anything"
    assert stream_text(got), "no content arrived before the failure"
    assert info.value.retryable and info.value.status >= 500, vars(info.value)


async def test_stall_midstream_is_a_midstream_failure(make: MakeProvider) -> None:
    """A stream that starts and then goes quiet past the read timeout fails as an interrupted stream
    (502, not the 504 of a call that never answered), alike for every adapter: the record and the
    client's error event must not depend on which upstream stalled."""
    provider = make("stall-midstream", timeout=FAST_TIMEOUT)
    got: list[Chunk] = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in provider.stream(chat(provider, [USER], stream=True)):
            got.append(chunk)
    assert stream_text(got), "no content arrived before the stall"
    err = info.value
    assert (err.status, err.type, err.retryable) == (502, "api_error", True), vars(err)


# ---------------------------------------------------------------- embeddings and legacy text


async def test_embeddings(make: MakeProvider, adapter: Adapter) -> None:
    provider = make("embed-model")
    call = UpstreamCall(
        body={"model": provider.deployment.model, "input": ["hello world", "goodbye"]},
        endpoint=Endpoint.EMBED,
    )
    if not adapter.spec.embeddings:
        err = await raises_upstream(provider.embed(call))
        assert (err.status, err.retryable) == (400, False), vars(err)
        return
    resp = await provider.embed(call)
    assert orjson.loads(resp.body) == resp.data
    assert resp.data["object"] == "list"
    data = resp.data["data"]
    assert [d["index"] for d in data] == [0, 1]
    for d in data:
        assert d["object"] == "embedding"
        assert d["embedding"] and all(isinstance(v, float) for v in d["embedding"])
    assert data[0]["embedding"] != data[1]["embedding"]
    again = await provider.embed(call)
    assert again.data["data"][0]["embedding"] == data[0]["embedding"], "embeddings are not deterministic"
    assert resp.usage is not None and resp.usage.prompt_tokens > 0


@pytest.mark.parametrize(
    ("model", "status", "retryable"), [FAULTS[0], FAULTS[3]], ids=["fail-400", "fail-500"]
)
async def test_embeddings_fault(
    make: MakeProvider, adapter: Adapter, model: str, status: int, retryable: bool
) -> None:
    if not adapter.spec.embeddings:
        pytest.skip(f"{adapter.name} has no embeddings")
    provider = make(model)
    call = UpstreamCall(body={"model": provider.deployment.model, "input": "hello"}, endpoint=Endpoint.EMBED)
    err = await raises_upstream(provider.embed(call))
    assert (err.status, err.retryable) == (status, retryable), vars(err)


async def test_native_text_completion(make: MakeProvider) -> None:
    provider = make()
    if not provider.native_text:
        pytest.skip("the gateway converts legacy completions to chat for this adapter")
    body = {"model": provider.deployment.model, "prompt": "Say hello"}
    resp = await provider.complete(UpstreamCall(body=body, endpoint=Endpoint.TEXT))
    assert resp.data["object"] == "text_completion"
    assert resp.data["choices"][0]["text"].startswith("Hello from ")
    assert resp.usage is not None and resp.usage.completion_tokens == 3
    stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    chunks = await collect(provider.stream(UpstreamCall(body=stream_body, endpoint=Endpoint.TEXT)))
    check_chunk_framing(chunks)
    text = "".join(choice.get("text") or "" for c in chunks for choice in c.data.get("choices") or [])
    assert text == resp.data["choices"][0]["text"]
    check_usage_tail(chunks)
