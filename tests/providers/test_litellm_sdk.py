"""The litellm long-tail adapter, over real loopback HTTP against the fake OpenAI-compatible upstream
(`openai/<model>` with api_base pointing at the fake, so the shared fault convention applies)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import litellm
import orjson
import pytest

from providers.base import Chunk, Endpoint, UpstreamCall, UpstreamError
from providers.deployment import Deployment
from providers.litellm_sdk import LitellmProvider, clean_chunk, map_exception
from tests.fakes import openai_upstream as fake_openai
from tests.fakes.server import ServerThread, closed_port

GREETING = "Hello from openai!"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def fake() -> Iterator[ServerThread]:
    with ServerThread(fake_openai.create_app(hang_seconds=3)) as server:
        yield server


def make(server_url: str, model: str = "gpt-4o-mini", **kw: Any) -> LitellmProvider:
    fields: dict[str, Any] = {
        "name": "longtail",
        "provider": "litellm",
        "model": f"openai/{model}",
        "api_base": server_url + "/v1",
        "api_key": "sk-test",
        "timeout": 5.0,
    }
    return LitellmProvider(Deployment(**{**fields, **kw}))


def chat(**body: Any) -> UpstreamCall:
    return UpstreamCall(
        body={"model": "ignored", "messages": [{"role": "user", "content": "hi there"}], **body}
    )


def stream_call(**body: Any) -> UpstreamCall:
    return chat(stream=True, stream_options={"include_usage": True}, **body)


async def collect(provider: LitellmProvider, call: UpstreamCall) -> list[Chunk]:
    return [c async for c in provider.stream(call)]


def last_body(server: ServerThread) -> dict[str, Any]:
    return server.app.state.requests[-1].body


async def test_complete_forwards_fields_and_options(fake: ServerThread) -> None:
    p = make(fake.url, options={"seed": 7}, headers={"x-team": "blue"})
    call = chat(temperature=0.3, max_tokens=50, user="u1", num_retries=5)
    call.headers = {"x-request-id": "r1"}
    resp = await p.complete(call)
    assert resp.data["object"] == "chat.completion"
    assert resp.data["choices"][0]["message"]["content"] == GREETING
    assert resp.data["choices"][0]["finish_reason"] == "stop"
    assert "provider_specific_fields" not in resp.data["choices"][0]["message"]
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (2, 3)
    assert orjson.loads(resp.body) == resp.data
    request = fake.app.state.requests[-1]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["x-team"] == "blue" and request.headers["x-request-id"] == "r1"
    body = request.body
    assert body["model"] == "gpt-4o-mini"
    assert (body["temperature"], body["max_tokens"], body["user"], body["seed"]) == (0.3, 50, "u1", 7)
    assert "stream" not in body and "num_retries" not in body and "_skip_mcp_handler" not in body


async def test_stream_has_one_final_usage_chunk(fake: ServerThread) -> None:
    chunks = await collect(make(fake.url), stream_call())
    body = last_body(fake)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert all(c.raw.startswith(b"data: {") and c.raw.endswith(b"\n\n") for c in chunks)
    assert chunks[0].data["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c.data["choices"][0]["delta"].get("content") or "" for c in chunks if c.data["choices"])
    assert text == GREETING
    assert chunks[-2].data["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1].data["choices"] == []
    assert (
        chunks[-1].data["usage"]["prompt_tokens"] == 2 and chunks[-1].data["usage"]["completion_tokens"] == 3
    )
    assert sum(1 for c in chunks if "usage" in c.data) == 1
    # litellm's empty trailing choice after the finish is not passed on.
    assert all(c.data["choices"][0]["delta"] or c.data["choices"][0]["finish_reason"] for c in chunks[:-1])


async def test_tools_complete_and_stream(fake: ServerThread) -> None:
    p = make(fake.url)
    resp = await p.complete(chat(tools=[WEATHER_TOOL], tool_choice="auto"))
    choice = resp.data["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert last_body(fake)["tools"][0]["function"]["name"] == "get_weather"

    chunks = await collect(p, stream_call(tools=[WEATHER_TOOL]))
    deltas = [
        tc for c in chunks if c.data["choices"] for tc in c.data["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert deltas[0]["function"]["name"] == "get_weather" and deltas[0]["id"]
    assert all("id" not in d for d in deltas[1:])  # null placeholders are pruned, as OpenAI sends them
    assert orjson.loads("".join(d["function"].get("arguments", "") for d in deltas)) == {"city": "Paris"}
    assert chunks[-2].data["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1].data["choices"] == [] and "usage" in chunks[-1].data


async def test_json_mode_is_forwarded(fake: ServerThread) -> None:
    resp = await make(fake.url).complete(chat(response_format={"type": "json_object"}))
    assert orjson.loads(resp.data["choices"][0]["message"]["content"]) == {"ok": True}
    assert last_body(fake)["response_format"] == {"type": "json_object"}


async def test_embeddings(fake: ServerThread) -> None:
    p = make(fake.url, model="text-embedding-3-small")
    call = UpstreamCall(body={"model": "x", "input": ["a b", "c"]}, endpoint=Endpoint.EMBED)
    resp = await p.embed(call)
    assert resp.data["object"] == "list"
    assert [d["index"] for d in resp.data["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 8 for d in resp.data["data"])
    assert resp.data["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert fake.app.state.requests[-1].path == "/v1/embeddings"


FAULTS = [
    ("fail-400", 400, False, None),
    ("fail-401", 401, False, None),
    ("fail-429", 429, True, 0.0),
    ("fail-500", 500, True, None),
]


@pytest.mark.parametrize(("model", "status", "retryable", "retry_after"), FAULTS)
async def test_faults(
    fake: ServerThread, model: str, status: int, retryable: bool, retry_after: float | None
) -> None:
    p = make(fake.url, model=model)
    before = len(fake.app.state.requests)
    with pytest.raises(UpstreamError) as err:
        await p.complete(chat())
    assert (err.value.status, err.value.retryable, err.value.retry_after) == (status, retryable, retry_after)
    assert len(fake.app.state.requests) == before + 1  # litellm made exactly one attempt
    with pytest.raises(UpstreamError) as err:
        await p.stream(stream_call()).__anext__()
    assert (err.value.status, err.value.retryable) == (status, retryable)


async def test_embeddings_make_one_attempt(fake: ServerThread) -> None:
    p = make(fake.url, model="fail-500")
    before = len(fake.app.state.requests)
    with pytest.raises(UpstreamError) as err:
        await p.embed(UpstreamCall(body={"model": "x", "input": "a"}, endpoint=Endpoint.EMBED))
    assert err.value.status == 500 and err.value.retryable
    assert len(fake.app.state.requests) == before + 1


async def test_upstream_message_is_kept(fake: ServerThread) -> None:
    with pytest.raises(UpstreamError) as err:
        await make(fake.url, model="fail-400").complete(chat())
    assert err.value.message == "Fake upstream: bad request (fail-400)."
    assert err.value.type == "invalid_request_error" and err.value.code == "fake_fail_400"


async def test_hang_times_out(fake: ServerThread) -> None:
    p = make(fake.url, model="hang", timeout=0.3)
    with pytest.raises(UpstreamError) as err:
        await p.complete(chat())
    assert (err.value.status, err.value.type, err.value.retryable) == (504, "timeout_error", True)
    with pytest.raises(UpstreamError) as err:
        await p.stream(stream_call()).__anext__()
    assert (err.value.status, err.value.retryable) == (504, True)


async def test_closed_port_is_a_connect_error() -> None:
    p = make(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(UpstreamError) as err:
        await p.complete(chat())
    assert (err.value.status, err.value.type, err.value.retryable) == (502, "api_connection_error", True)
    with pytest.raises(UpstreamError) as err:
        await p.stream(stream_call()).__anext__()
    assert err.value.type == "api_connection_error"


async def test_die_midstream_raises_after_chunks(fake: ServerThread) -> None:
    got: list[Chunk] = []
    with pytest.raises(UpstreamError) as err:
        async for chunk in make(fake.url, model="die-midstream").stream(stream_call()):
            got.append(chunk)
    assert got and "".join(c.data["choices"][0]["delta"].get("content") or "" for c in got) == "Hello from"
    assert err.value.status == 502 and "interrupted" in err.value.message


async def test_usage_on_last_content_chunk_is_split_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Some litellm providers put usage on the final content chunk; the gateway reads it from a
    usage-only chunk."""
    usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    items = [
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}]},
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage},
    ]  # fmt: skip
    seen: dict[str, Any] = {}

    async def fake_acompletion(**kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        seen.update(kwargs)

        async def gen() -> AsyncIterator[dict[str, Any]]:
            for item in items:
                yield item

        return gen()

    monkeypatch.setattr(litellm, "acompletion", fake_acompletion)
    p = LitellmProvider(Deployment(name="x", provider="litellm", model="groq/llama", api_version="v1"))
    chunks = await collect(p, stream_call(model="client-name", tools=[WEATHER_TOOL]))
    assert [c.data["choices"][0]["delta"] for c in chunks[:2]] == [{"role": "assistant", "content": "Hi"}, {}]
    assert chunks[1].data["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in chunks[1].data
    assert chunks[2].data["choices"] == [] and chunks[2].data["usage"] == usage
    assert (seen["model"], seen["num_retries"], seen["max_retries"], seen["drop_params"]) == (
        "groq/llama",
        0,
        0,
        True,
    )
    assert seen["stream_options"] == {"include_usage": True} and seen["api_version"] == "v1"
    assert seen["tools"] == [WEATHER_TOOL] and "api_base" not in seen


def _response(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1/v1/chat/completions"))


@pytest.mark.parametrize(
    ("exc", "status", "retryable", "type_"),
    [
        (litellm.BadRequestError("bad", "m", "openai"), 400, False, "invalid_request_error"),
        (litellm.ContextWindowExceededError("too long", "m", "openai"), 400, False, "invalid_request_error"),
        (litellm.AuthenticationError("no", "openai", "m"), 401, False, "authentication_error"),
        (litellm.NotFoundError("gone", "m", "openai"), 404, False, "not_found_error"),
        (
            litellm.RateLimitError("slow", "openai", "m", response=_response(429)),
            429,
            True,
            "rate_limit_error",
        ),
        (litellm.InternalServerError("boom", "openai", "m"), 500, True, "api_error"),
        (litellm.ServiceUnavailableError("down", "openai", "m"), 503, True, "api_error"),
        (litellm.Timeout("slow", "m", "openai"), 504, True, "timeout_error"),
        (litellm.APIConnectionError("refused", "openai", "m"), 502, True, "api_connection_error"),
        (ValueError("surprise"), 502, True, "api_error"),
    ],
)
def test_map_exception(exc: Exception, status: int, retryable: bool, type_: str) -> None:
    err = map_exception(exc)
    assert (err.status, err.retryable, err.type) == (status, retryable, type_)


def test_clean_chunk_drops_empty_choices_and_nulls() -> None:
    data = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "system_fingerprint": None,
        "provider_specific_fields": None,
        "choices": [
            {"index": 0, "delta": {"content": None, "role": None}, "finish_reason": None, "logprobs": None}
        ],
    }
    assert clean_chunk(data) == {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [],
    }
