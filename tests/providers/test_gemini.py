"""The native Gemini adapter over real loopback HTTP against the fake: chat, streams, tools, embeddings,
faults, timeouts and mid-stream failures."""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest

from providers.base import Chunk, Endpoint, UpstreamCall, UpstreamError
from providers.deployment import Deployment
from providers.gemini import GeminiProvider
from routing.tokens import count_tokens
from tests.fakes import gemini_upstream
from tests.fakes.server import ServerThread, closed_port
from tests.providers.gemini_cases import WEATHER_TOOL, user


@pytest.fixture(scope="module")
def gemini_fake() -> Iterator[ServerThread]:
    with ServerThread(gemini_upstream.create_app(hang_seconds=3)) as server:
        yield server


@pytest.fixture
async def provider(gemini_fake: ServerThread) -> AsyncIterator[GeminiProvider]:
    p = GeminiProvider(make_deployment(gemini_fake.url))
    yield p
    await p.aclose()


def make_deployment(api_base: str, **kw: Any) -> Deployment:
    fields: dict[str, Any] = {
        "name": "gemini-flash",
        "provider": "gemini",
        "model": "gemini-2.5-flash",
        "api_base": api_base,
        "api_key": "test-key",
        "timeout": 5.0,
        "connect_timeout": 1.0,
    }
    return Deployment(**{**fields, **kw})


def chat(model: str = "gemini-2.5-flash", **body: Any) -> UpstreamCall:
    return UpstreamCall(body={"model": model, "messages": [user("hi there friend")], **body})


def stream_call(model: str = "gemini-2.5-flash", **body: Any) -> UpstreamCall:
    return chat(model, stream=True, stream_options={"include_usage": True}, **body)


async def collect(provider: GeminiProvider, call: UpstreamCall) -> list[Chunk]:
    return [c async for c in provider.stream(call)]


def last_request(server: ServerThread) -> dict[str, Any]:
    return server.app.state.requests[-1]


async def test_complete(provider: GeminiProvider, gemini_fake: ServerThread) -> None:
    resp = await provider.complete(
        chat(messages=[{"role": "system", "content": "Be nice."}, user("hi there")])
    )
    assert resp.data["choices"][0]["message"] == {"role": "assistant", "content": gemini_upstream.CONTENT}
    assert resp.data["choices"][0]["finish_reason"] == "stop"
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (4, 3)
    assert orjson.loads(resp.body) == resp.data
    req = last_request(gemini_fake)
    assert req["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert req["headers"]["x-goog-api-key"] == "test-key"
    assert req["json"]["systemInstruction"] == {"parts": [{"text": "Be nice."}]}
    assert req["json"]["contents"] == [{"role": "user", "parts": [{"text": "hi there"}]}]


async def test_stream_with_final_usage_chunk(provider: GeminiProvider, gemini_fake: ServerThread) -> None:
    chunks = await collect(provider, stream_call())
    req = last_request(gemini_fake)
    assert req["method"] == "streamGenerateContent" and req["query"] == {"alt": "sse"}
    assert all(c.raw.startswith(b"data: {") and c.raw.endswith(b"\n\n") for c in chunks)
    assert all(orjson.loads(c.raw[6:]) == c.data for c in chunks)
    content_chunks = [c for c in chunks if c.data["choices"] and c.data["choices"][0]["delta"].get("content")]
    assert len(content_chunks) == 3
    assert chunks[0].data["choices"][0]["delta"]["role"] == "assistant"
    assert (
        "".join(c.data["choices"][0]["delta"]["content"] for c in content_chunks) == gemini_upstream.CONTENT
    )
    assert chunks[-2].data["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1].data["choices"] == []
    assert (
        chunks[-1].data["usage"]["prompt_tokens"] == 3 and chunks[-1].data["usage"]["completion_tokens"] == 3
    )
    assert sum(1 for c in chunks if "usage" in c.data) == 1


async def test_tool_call_round_trip(provider: GeminiProvider, gemini_fake: ServerThread) -> None:
    resp = await provider.complete(chat(tools=[WEATHER_TOOL], tool_choice="auto"))
    choice = resp.data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
    sent = last_request(gemini_fake)["json"]
    assert "additionalProperties" not in orjson.dumps(sent["tools"]).decode()
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}

    follow_up = [
        user("hi there friend"),
        choice["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
    ]
    resp = await provider.complete(chat(messages=follow_up, tools=[WEATHER_TOOL]))
    assert resp.data["choices"][0]["message"]["content"] == "The tool said: sunny"
    sent = last_request(gemini_fake)["json"]
    assert sent["contents"][-1]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}
    ]


async def test_stream_tool_call(provider: GeminiProvider) -> None:
    chunks = await collect(provider, stream_call(tools=[WEATHER_TOOL]))
    calls = [
        tc for c in chunks if c.data["choices"] for tc in c.data["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert [(tc["index"], tc["function"]["name"]) for tc in calls] == [(0, "get_weather")]
    assert orjson.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert chunks[-2].data["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1].data["choices"] == [] and chunks[-1].data["usage"]["completion_tokens"] == 3


async def test_tool_choice_none_json_mode_and_n(provider: GeminiProvider, gemini_fake: ServerThread) -> None:
    resp = await provider.complete(chat(tools=[WEATHER_TOOL], tool_choice="none"))
    assert resp.data["choices"][0]["message"]["content"] == gemini_upstream.CONTENT
    resp = await provider.complete(chat(response_format={"type": "json_object"}, n=2, temperature=0))
    assert [c["index"] for c in resp.data["choices"]] == [0, 1]
    assert all(c["message"]["content"] == gemini_upstream.JSON_CONTENT for c in resp.data["choices"])
    assert last_request(gemini_fake)["json"]["generationConfig"] == {
        "temperature": 0,
        "candidateCount": 2,
        "responseMimeType": "application/json",
    }


async def test_headers_and_api_base_with_version(gemini_fake: ServerThread) -> None:
    p = GeminiProvider(make_deployment(gemini_fake.url + "/v1beta", headers={"x-team": "blue"}))
    try:
        call = chat()
        call.headers = {"x-request-id": "r1"}
        await p.complete(call)
    finally:
        await p.aclose()
    req = last_request(gemini_fake)
    assert req["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert req["headers"]["x-team"] == "blue" and req["headers"]["x-request-id"] == "r1"


async def test_embeddings(provider: GeminiProvider, gemini_fake: ServerThread) -> None:
    texts = ["hello world", "second input here"]
    call = UpstreamCall(body={"model": "text-embedding-004", "input": texts}, endpoint=Endpoint.EMBED)
    resp = await provider.embed(call)
    assert resp.data["object"] == "list" and resp.data["model"] == "text-embedding-004"
    assert [d["index"] for d in resp.data["data"]] == [0, 1]
    assert all(
        d["object"] == "embedding" and len(d["embedding"]) == gemini_upstream.EMBED_DIM
        for d in resp.data["data"]
    )
    tokens = sum(count_tokens(t) for t in texts)
    assert resp.data["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert resp.usage is not None and resp.usage.prompt_tokens == tokens
    req = last_request(gemini_fake)
    assert req["path"] == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert [r["model"] for r in req["json"]["requests"]] == ["models/text-embedding-004"] * 2

    again = await provider.embed(
        UpstreamCall(
            body={"model": "text-embedding-004", "input": "hello world", "encoding_format": "base64"}
        )
    )
    decoded = struct.unpack("<8f", base64.b64decode(again.data["data"][0]["embedding"]))
    assert decoded == pytest.approx(resp.data["data"][0]["embedding"], abs=1e-6)


async def test_embedding_token_arrays_are_refused_before_sending(
    provider: GeminiProvider, gemini_fake: ServerThread
) -> None:
    before = len(gemini_fake.app.state.requests)
    with pytest.raises(UpstreamError) as err:
        await provider.embed(UpstreamCall(body={"model": "text-embedding-004", "input": [[1, 2, 3]]}))
    assert err.value.status == 400 and not err.value.retryable
    assert len(gemini_fake.app.state.requests) == before


FAULTS = [
    ("fail-400", 400, False, None),
    ("fail-401", 401, False, None),
    ("fail-429", 429, True, 0.0),
    ("fail-500", 500, True, None),
]


@pytest.mark.parametrize(("model", "status", "retryable", "retry_after"), FAULTS)
async def test_faults_complete(
    provider: GeminiProvider, model: str, status: int, retryable: bool, retry_after: float | None
) -> None:
    with pytest.raises(UpstreamError) as err:
        await provider.complete(chat(model))
    assert (err.value.status, err.value.retryable, err.value.retry_after) == (status, retryable, retry_after)
    assert err.value.code in gemini_upstream._STATUS.values()


@pytest.mark.parametrize(("model", "status", "retryable", "retry_after"), FAULTS)
async def test_faults_stream_raise_from_first_anext(
    provider: GeminiProvider, model: str, status: int, retryable: bool, retry_after: float | None
) -> None:
    it = provider.stream(stream_call(model))
    with pytest.raises(UpstreamError) as err:
        await it.__anext__()
    assert (err.value.status, err.value.retryable, err.value.retry_after) == (status, retryable, retry_after)


async def test_flaky_then_ok(provider: GeminiProvider) -> None:
    for _ in range(2):
        with pytest.raises(UpstreamError) as err:
            await provider.complete(chat("flaky-2-gem"))
        assert err.value.status == 500 and err.value.retryable
    resp = await provider.complete(chat("flaky-2-gem"))
    assert resp.data["choices"][0]["message"]["content"] == gemini_upstream.CONTENT


async def test_missing_api_key_is_refused_like_google(gemini_fake: ServerThread) -> None:
    p = GeminiProvider(make_deployment(gemini_fake.url, api_key=None))
    try:
        with pytest.raises(UpstreamError) as err:
            await p.complete(chat())
    finally:
        await p.aclose()
    assert err.value.status == 403 and err.value.code == "PERMISSION_DENIED" and not err.value.retryable


async def test_hang_times_out(gemini_fake: ServerThread) -> None:
    p = GeminiProvider(make_deployment(gemini_fake.url, timeout=0.3))
    try:
        with pytest.raises(UpstreamError) as err:
            await p.complete(chat("hang"))
        assert (err.value.status, err.value.type, err.value.retryable) == (504, "timeout_error", True)
        with pytest.raises(UpstreamError) as err:
            await p.stream(stream_call("hang")).__anext__()
        assert (err.value.status, err.value.retryable) == (504, True)
    finally:
        await p.aclose()


async def test_closed_port_is_a_connect_error() -> None:
    p = GeminiProvider(make_deployment(f"http://127.0.0.1:{closed_port()}"))
    try:
        with pytest.raises(UpstreamError) as err:
            await p.complete(chat())
        assert (err.value.status, err.value.type, err.value.retryable) == (502, "api_connection_error", True)
        with pytest.raises(UpstreamError) as err:
            await p.stream(stream_call()).__anext__()
        assert err.value.type == "api_connection_error"
    finally:
        await p.aclose()


async def test_die_midstream_raises_after_chunks(provider: GeminiProvider) -> None:
    got: list[Chunk] = []
    with pytest.raises(UpstreamError) as err:
        async for chunk in provider.stream(stream_call("die-midstream")):
            got.append(chunk)
    assert len(got) == 2
    assert "".join(c.data["choices"][0]["delta"]["content"] for c in got) == "Hello from "
    assert err.value.status == 502 and "interrupted" in err.value.message
    with pytest.raises(UpstreamError) as err:
        await provider.complete(chat("die-midstream"))
    assert err.value.status == 502 and err.value.retryable


async def test_stream_error_event_after_start_is_midstream() -> None:
    """Gemini can end an SSE stream with an error document instead of a candidate."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        events = [
            {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}}]},
            {"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}},
        ]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for event in events:
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + orjson.dumps(event) + b"\r\n\r\n",
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b""})

    with ServerThread(app) as server:
        p = GeminiProvider(make_deployment(server.url))
        try:
            got: list[Chunk] = []
            with pytest.raises(UpstreamError) as err:
                async for chunk in p.stream(stream_call()):
                    got.append(chunk)
        finally:
            await p.aclose()
    assert len(got) == 1 and err.value.status == 502 and "Internal error" in err.value.message


async def test_stall_after_start_is_midstream_not_a_timeout_answer() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        event = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}}]}
        body = b"data: " + orjson.dumps(event) + b"\r\n\r\n"
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await asyncio.sleep(1)
        await send({"type": "http.response.body", "body": b""})

    with ServerThread(app) as server:
        p = GeminiProvider(make_deployment(server.url, timeout=0.3))
        try:
            got: list[Chunk] = []
            with pytest.raises(UpstreamError) as err:
                async for chunk in p.stream(stream_call()):
                    got.append(chunk)
        finally:
            await p.aclose()
    assert len(got) == 1 and (err.value.status, err.value.retryable) == (502, True)
    assert "interrupted" in err.value.message


async def test_fake_validates_like_the_real_api(gemini_fake: ServerThread) -> None:
    url = gemini_fake.url + "/v1beta/models/gemini-2.5-flash:generateContent"
    headers = {"x-goog-api-key": "k"}
    async with httpx.AsyncClient() as client:
        bad_role = await client.post(
            url, headers=headers, json={"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}
        )
        empty = await client.post(url, headers=headers, json={"contents": []})
        schema = await client.post(
            url,
            headers=headers,
            json={
                "contents": [{"role": "user", "parts": [{"text": "x"}]}],
                "tools": [
                    {
                        "functionDeclarations": [
                            {"name": "f", "parameters": {"type": "object", "additionalProperties": False}}
                        ]
                    }
                ],
            },
        )
    for resp in (bad_role, empty, schema):
        assert resp.status_code == 400
        assert resp.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_google_genai_sdk_accepts_the_fake(gemini_fake: ServerThread) -> None:
    genai = pytest.importorskip("google.genai")
    client = genai.Client(api_key="k", http_options=genai.types.HttpOptions(base_url=gemini_fake.url))
    resp = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi there")
    assert resp.text == gemini_upstream.CONTENT
