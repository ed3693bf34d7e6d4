"""The fake OpenAI upstream speaks the real wire format: driven here by the official `openai` SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import GREETING, embedding_vector
from tests.fakes.server import ServerThread

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
USER = [{"role": "user", "content": "Say hello to me"}]


@pytest.fixture(scope="module")
def base_url(openai_upstream: ServerThread) -> str:
    return openai_upstream.url + "/v1"


@pytest.fixture
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=5) as c:
        yield c


@pytest.fixture
async def aclient(base_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=5) as c:
        yield c


def last_body(server: ServerThread) -> Any:
    return server.app.state.requests[-1].body


# ---------------------------------------------------------------- chat


def test_chat_sync(client: openai.OpenAI, openai_upstream: ServerThread) -> None:
    r = client.chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == GREETING
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (4, 3, 7)
    assert r.usage.prompt_tokens_details is not None and r.usage.prompt_tokens_details.cached_tokens == 0
    path, headers, body = openai_upstream.app.state.requests[-1]
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == "Bearer sk-test"
    assert body == {"model": "gpt-4o-mini", "messages": USER}


async def test_chat_async(aclient: openai.AsyncOpenAI) -> None:
    r = await aclient.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Be brief."}, *USER],  # type: ignore[list-item]
    )
    assert r.choices[0].message.content == GREETING
    assert r.usage is not None and r.usage.prompt_tokens == 6


def test_stream_without_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))  # type: ignore[arg-type]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == GREETING
    assert sum(1 for c in chunks if c.choices[0].delta.content) == 3
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None and c.choices for c in chunks)


async def test_stream_with_usage_async(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(
        model="m",
        messages=USER,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    *body, last = chunks
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (4, 3)
    assert all(c.usage is None and len(c.choices) == 1 for c in body)
    assert "".join(c.choices[0].delta.content or "" for c in body) == GREETING
    assert body[-1].choices[0].finish_reason == "stop"


def test_stream_raw_framing(base_url: str) -> None:
    """Byte-level: `data: {json}\\n\\n` events, usage null on choice chunks, one usage chunk, [DONE]."""
    body = {"model": "m", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    r = httpx.post(base_url + "/chat/completions", json=body, headers={"Authorization": "Bearer x"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = r.text.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: {") for e in events[:-2])
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("usage" in p and p["usage"] is None for p in payloads[:-1])
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == 3


def test_json_mode_n_logprobs_seed(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="m",
        messages=USER,  # type: ignore[arg-type]
        response_format={"type": "json_object"},
        n=2,
        logprobs=True,
        top_logprobs=2,
        seed=42,
    )
    assert r.system_fingerprint == "fp_42"
    assert [c.index for c in r.choices] == [0, 1]
    for choice in r.choices:
        assert json.loads(choice.message.content or "") == {"ok": True}
        assert choice.logprobs is not None and choice.logprobs.content
        assert "".join(t.token for t in choice.logprobs.content) == choice.message.content
        assert all(len(t.top_logprobs) == 2 and t.logprob < 0 for t in choice.logprobs.content)


def test_json_schema_stream_n(client: openai.OpenAI) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "ok", "schema": {"type": "object"}}}
    stream = client.chat.completions.create(
        model="m",
        messages=USER,  # type: ignore[arg-type]
        response_format=fmt,  # type: ignore[arg-type]
        n=2,
        stream=True,
    )
    texts = ["", ""]
    for c in stream:
        for choice in c.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == ['{"ok": true}', '{"ok": true}']


def test_tool_round_trip(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=USER, tools=[WEATHER_TOOL])  # type: ignore[arg-type, list-item]
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages = [
        *USER,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21C"},
    ]
    r2 = client.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type, list-item]
    assert r2.choices[0].message.content == "The tool said: Sunny, 21C"
    assert r2.choices[0].finish_reason == "stop"


def test_tool_choice_none_answers_text(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="m",
        messages=USER,  # type: ignore[arg-type]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="none",
    )
    assert r.choices[0].message.content == GREETING and not r.choices[0].message.tool_calls


async def test_tool_call_stream_async(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(
        model="m",
        messages=USER,  # type: ignore[arg-type]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    first = chunks[0].choices[0].delta
    assert first.role == "assistant"
    head = (first.tool_calls or [])[0]
    assert head.index == 0 and head.id and head.function and head.function.name == "get_weather"
    args = "".join(
        tc.function.arguments or ""
        for c in chunks[1:]
        for ch in c.choices
        for tc in ch.delta.tool_calls or []
        if tc.function
    )
    assert json.loads(args) == {"city": "Paris"}
    assert sum(1 for c in chunks[1:] if c.choices and c.choices[0].delta.tool_calls) == 3
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_sdk_stream_helper_accumulates_tool_call(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model="m", messages=USER, tools=[WEATHER_TOOL]) as s:  # type: ignore[arg-type, list-item]
        final = s.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}


# ---------------------------------------------------------------- legacy completions


def test_completions(client: openai.OpenAI) -> None:
    r = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello", logprobs=2)
    assert r.object == "text_completion"
    assert r.choices[0].text == GREETING and r.choices[0].finish_reason == "stop"
    assert r.choices[0].logprobs is not None and "".join(r.choices[0].logprobs.tokens or []) == GREETING
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (2, 3)


async def test_completions_stream_async(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.completions.create(
        model="gpt-3.5-turbo-instruct",
        prompt=["a b", "c"],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    texts = {0: "", 1: ""}
    for c in chunks[:-1]:
        for choice in c.choices:
            texts[choice.index] += choice.text
    assert texts == {0: GREETING, 1: GREETING}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 3


# ---------------------------------------------------------------- embeddings and models


def test_embeddings_sdk_default_base64(client: openai.OpenAI, openai_upstream: ServerThread) -> None:
    r = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    assert last_body(openai_upstream)["encoding_format"] == "base64"  # what the SDK asks for by default
    assert [d.index for d in r.data] == [0, 1]
    assert r.data[0].embedding == embedding_vector("hello world")
    assert r.data[1].embedding == embedding_vector("bye")
    assert r.usage.prompt_tokens == 3


async def test_embeddings_float_async(aclient: openai.AsyncOpenAI) -> None:
    r = await aclient.embeddings.create(
        model="text-embedding-3-small", input="hello world", encoding_format="float", dimensions=4
    )
    assert r.data[0].embedding == embedding_vector("hello world", 4)
    assert abs(sum(v * v for v in r.data[0].embedding) - 1) < 1e-5


def test_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids
    assert client.models.retrieve("gpt-4o-mini").object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


async def test_models_async(aclient: openai.AsyncOpenAI) -> None:
    page = await aclient.models.list()
    assert any(m.id == "text-embedding-3-small" for m in page.data)


# ---------------------------------------------------------------- faults and validation


@pytest.mark.parametrize(
    ("model", "exc", "status"),
    [
        ("fail-400", openai.BadRequestError, 400),
        ("fail-401", openai.AuthenticationError, 401),
        ("fail-429", openai.RateLimitError, 429),
        ("fail-500", openai.InternalServerError, 500),
    ],
)
def test_faults(client: openai.OpenAI, model: str, exc: type[openai.APIStatusError], status: int) -> None:
    with pytest.raises(exc) as info:
        client.chat.completions.create(model=model, messages=USER)  # type: ignore[arg-type]
    assert info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    with pytest.raises(exc):
        client.chat.completions.create(model=model, messages=USER, stream=True)  # type: ignore[arg-type]
    with pytest.raises(exc):
        client.embeddings.create(model=model, input="x")


def test_429_retry_after_header(base_url: str) -> None:
    r = httpx.post(
        base_url + "/chat/completions",
        json={"model": "fail-429", "messages": USER},
        headers={"Authorization": "Bearer x"},
    )
    assert r.status_code == 429 and r.headers["retry-after"] == "0"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_flaky_counts_per_model(client: openai.OpenAI, openai_upstream: ServerThread) -> None:
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="flaky-2-sdk", messages=USER)  # type: ignore[arg-type]
    r = client.chat.completions.create(model="flaky-2-sdk", messages=USER)  # type: ignore[arg-type]
    assert r.choices[0].message.content == GREETING
    assert openai_upstream.app.state.flaky_counts["flaky-2-sdk"] == 3


def test_sdk_retries_flaky(base_url: str) -> None:
    with openai.OpenAI(base_url=base_url, api_key="k", max_retries=1) as c:
        r = c.chat.completions.create(model="flaky-1-retried", messages=USER)  # type: ignore[arg-type]
    assert r.choices[0].message.content == GREETING


def test_hang_times_out(base_url: str) -> None:
    with (
        openai.OpenAI(base_url=base_url, api_key="k", max_retries=0, timeout=0.3) as c,
        pytest.raises(openai.APITimeoutError),
    ):
        c.chat.completions.create(model="hang", messages=USER)  # type: ignore[arg-type]


async def test_die_midstream_async(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(
        model="die-midstream",
        messages=USER,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    got: list[str] = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        async for c in stream:
            got.extend(ch.delta.content for ch in c.choices if ch.delta.content)
    assert got == ["Hello", " from"]


def test_die_midstream_raw_is_incomplete(base_url: str) -> None:
    body = {"model": "die-midstream", "messages": USER, "stream": True}
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST", base_url + "/chat/completions", json=body, headers={"Authorization": "Bearer x"}
        ) as r,
    ):
        for part in r.iter_bytes():
            received += part
    assert received.count(b"data: ") == 3 and b"[DONE]" not in received


def test_die_midstream_non_stream(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError):
        client.chat.completions.create(model="die-midstream", messages=USER)  # type: ignore[arg-type]


def test_missing_auth_is_401(base_url: str) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        r = httpx.post(base_url + "/chat/completions", json={"model": "m", "messages": USER}, headers=headers)
        assert r.status_code == 401
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(base_url + "/models").status_code == 401


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"messages": USER}, None),
        ({"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"model": "m", "messages": [*USER, {"role": "tool", "tool_call_id": "c1", "content": "x"}]},
            "messages.[1].role",
        ),
        (
            {
                "model": "m",
                "messages": [
                    *USER,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        ],
                    },
                    {"role": "tool", "tool_call_id": "c2", "content": "x"},
                ],
            },
            "messages.[2].tool_call_id",
        ),
        (
            {
                "model": "m",
                "messages": [
                    *USER,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        ],
                    },
                    {"role": "user", "content": "next"},
                ],
            },
            "messages.[1].role",
        ),
        ({"model": "m", "messages": USER, "stream_options": {"include_usage": True}}, "stream_options"),
        ({"model": "m", "messages": USER, "top_logprobs": 2}, "top_logprobs"),
        ({"model": "m", "messages": USER, "n": 0}, "n"),
        ({"model": "m", "messages": USER, "tool_choice": "auto"}, "tool_choice"),
    ],
)
def test_chat_validation(base_url: str, body: dict[str, Any], param: str | None) -> None:
    r = httpx.post(base_url + "/chat/completions", json=body, headers={"Authorization": "Bearer x"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_validation_via_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=[])
    assert info.value.param == "messages"
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="m", input="")
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="m", prompt=None)  # type: ignore[arg-type]
