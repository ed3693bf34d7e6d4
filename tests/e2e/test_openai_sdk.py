"""The official `openai` SDK (sync and async) pointed at the gateway, changing nothing but base_url."""

from __future__ import annotations

import base64
import json
import re
import struct
import uuid
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import (
    GREETINGS,
    MASTER_KEY,
    MAX_BODY_BYTES,
    WEATHER_TOOL,
    Gateway,
    error_of,
    expected_cost,
)
from tests.fakes.openai_upstream import embedding_vector

HELLO = [{"role": "user", "content": "Say hello to the gateway"}]
CHAT_BACKENDS = list(GREETINGS)


def marker() -> str:
    return "e2e-" + uuid.uuid4().hex[:12]


def collect_stream(stream: Any) -> tuple[str, list[Any]]:
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def assemble_tool_calls(chunks: list[Any]) -> list[dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for c in chunks:
        for choice in c.choices:
            for tc in choice.delta.tool_calls or ():
                slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
    return [calls[i] for i in sorted(calls)]


# --------------------------------------------------------------------------- chat


@pytest.mark.parametrize("model", CHAT_BACKENDS)
def test_chat_sync(client: openai.OpenAI, model: str) -> None:
    resp = client.chat.completions.create(model=model, messages=HELLO)
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == GREETINGS[model]
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 3
    assert resp.usage.prompt_tokens >= 1


@pytest.mark.parametrize("model", CHAT_BACKENDS)
async def test_chat_async(aclient: openai.AsyncOpenAI, model: str) -> None:
    resp = await aclient.chat.completions.create(model=model, messages=HELLO)
    assert resp.choices[0].message.content == GREETINGS[model]
    assert resp.usage is not None and resp.usage.completion_tokens == 3


@pytest.mark.parametrize("model", CHAT_BACKENDS)
def test_chat_stream_without_usage(client: openai.OpenAI, model: str) -> None:
    text, chunks = collect_stream(client.chat.completions.create(model=model, messages=HELLO, stream=True))
    assert text == GREETINGS[model]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert [c for c in chunks if c.usage is not None] == []
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]


@pytest.mark.parametrize("model", CHAT_BACKENDS)
def test_chat_stream_with_usage(client: openai.OpenAI, model: str) -> None:
    stream = client.chat.completions.create(
        model=model, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    text, chunks = collect_stream(stream)
    assert text == GREETINGS[model]
    with_usage = [i for i, c in enumerate(chunks) if c.usage is not None]
    assert with_usage == [len(chunks) - 1], "exactly one usage chunk, the last one"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == 3
    assert last.usage.total_tokens == last.usage.prompt_tokens + 3


@pytest.mark.parametrize("model", CHAT_BACKENDS)
async def test_chat_stream_async(aclient: openai.AsyncOpenAI, model: str) -> None:
    stream = await aclient.chat.completions.create(
        model=model, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == GREETINGS[model]
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]]

    stream = await aclient.chat.completions.create(model=model, messages=HELLO, stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == GREETINGS[model]
    assert all(c.usage is None for c in chunks)


def test_chat_through_a_route(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    resp = raw.parse()
    assert resp.choices[0].message.content == GREETINGS["gpt-4o-mini"]
    assert raw.headers["x-switchyard-model"] == "gpt-4o-mini"
    route = raw.headers["x-switchyard-route"]
    # The decision explains itself: tier, difficulty, per-tier success, the knob, the fallback ladder.
    for part in ("route=auto", "tier=small", "model=gpt-4o-mini", "difficulty=", "p=small:", "q=0.50"):
        assert part in route, route
    assert "fallback=claude" in route


def test_route_honours_the_min_tier_header(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, extra_headers={"x-switchyard-min-tier": "large"}
    )
    assert raw.headers["x-switchyard-model"] == "claude"
    assert "pins=" in raw.headers["x-switchyard-route"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="auto", messages=HELLO, extra_headers={"x-switchyard-min-tier": "huge"}
        )


# --------------------------------------------------------------------------- tools


def _tool_round_trip_messages(call_id: str, name: str, arguments: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
    ]


@pytest.mark.parametrize("model", CHAT_BACKENDS)
def test_tool_round_trip(client: openai.OpenAI, model: str) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model=model, messages=ask, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    messages = _tool_round_trip_messages(call.id, call.function.name, call.function.arguments)
    final = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "The tool said: sunny"


@pytest.mark.parametrize("model", CHAT_BACKENDS)
def test_tool_round_trip_streamed(client: openai.OpenAI, model: str) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    _, chunks = collect_stream(
        client.chat.completions.create(model=model, messages=ask, tools=[WEATHER_TOOL], stream=True)
    )
    calls = assemble_tool_calls(chunks)
    assert len(calls) == 1
    assert calls[0]["id"] and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]

    messages = _tool_round_trip_messages(calls[0]["id"], calls[0]["name"], calls[0]["arguments"])
    text, _ = collect_stream(
        client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL], stream=True)
    )
    assert text == "The tool said: sunny"


async def test_tool_round_trip_async(aclient: openai.AsyncOpenAI) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = await aclient.chat.completions.create(model="gpt-4o-mini", messages=ask, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    messages = _tool_round_trip_messages(call.id, call.function.name, call.function.arguments)
    final = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL]
    )
    assert final.choices[0].message.content == "The tool said: sunny"


# --------------------------------------------------------------------------- JSON mode


@pytest.mark.parametrize("model", CHAT_BACKENDS)
def test_json_mode(client: openai.OpenAI, model: str) -> None:
    messages = [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": "Is the gateway up?"},
    ]
    resp = client.chat.completions.create(
        model=model, messages=messages, response_format={"type": "json_object"}
    )
    assert json.loads(resp.choices[0].message.content or "") == {"ok": True}


# --------------------------------------------------------------------------- passthrough


def test_unknown_fields_pass_through_untouched(client: openai.OpenAI, gateway: Gateway) -> None:
    tag = marker()
    fields: dict[str, Any] = {
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_object"},
        "logprobs": True,
        "top_logprobs": 2,
        "n": 2,
        "seed": 1234,
        "stop": ["\n\n", "END"],
        "user": tag,
        "parallel_tool_calls": False,
        "metadata": {"team": "e2e", "ticket": "42"},
        "temperature": 0.25,
        "top_p": 0.5,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "max_completion_tokens": 50,
        "logit_bias": {"50256": -100},
        "service_tier": "default",
        "store": False,
    }
    resp = client.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, extra_body={"x_vendor_knob": {"a": [1, 2]}}, **fields
    )
    assert len(resp.choices) == 2
    assert resp.choices[0].message.tool_calls[0].function.name == "get_weather"
    [sent] = gateway.openai_sent(tag)
    assert sent["model"] == "gpt-4o-mini-upstream"
    assert sent["messages"] == HELLO
    for key, value in fields.items():
        assert sent[key] == value, key
    assert sent["x_vendor_knob"] == {"a": [1, 2]}
    assert set(sent) == {"model", "messages", "x_vendor_knob", *fields}


def test_passthrough_streamed_keeps_fields_and_asks_for_usage(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    tag = marker()
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=True, user=tag, seed=7, stop="END", n=1
    )
    text, _ = collect_stream(stream)
    assert text == GREETINGS["gpt-4o-mini"]
    [sent] = gateway.openai_sent(tag)
    assert sent["model"] == "gpt-4o-mini-upstream"
    assert (sent["seed"], sent["stop"], sent["n"], sent["stream"]) == (7, "END", 1, True)
    assert sent["stream_options"] == {"include_usage": True}


# --------------------------------------------------------------------------- legacy completions


def test_completions_legacy(client: openai.OpenAI, gateway: Gateway) -> None:
    tag = marker()
    resp = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Say hello", user=tag, max_tokens=10
    )
    assert resp.object == "text_completion"
    assert resp.choices[0].text == "Hello from openai!"
    assert resp.usage is not None and resp.usage.completion_tokens == 3
    [sent] = gateway.openai_sent(tag)
    assert sent["prompt"] == "Say hello" and sent["max_tokens"] == 10


def test_completions_legacy_streamed(client: openai.OpenAI) -> None:
    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="Say hello",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from openai!"
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]]


@pytest.mark.parametrize("model", ["claude", "gemini"])
def test_completions_legacy_translated(client: openai.OpenAI, model: str) -> None:
    resp = client.completions.create(model=model, prompt="Say hello")
    assert resp.object == "text_completion"
    assert resp.choices[0].text == GREETINGS[model]
    chunks = list(client.completions.create(model=model, prompt="Say hello", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == GREETINGS[model]
    assert all(c.usage is None for c in chunks)


async def test_completions_legacy_async(aclient: openai.AsyncOpenAI) -> None:
    resp = await aclient.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello")
    assert resp.choices[0].text == "Hello from openai!"


# --------------------------------------------------------------------------- embeddings


def test_embeddings_default_encoding_is_base64(client: openai.OpenAI, gateway: Gateway) -> None:
    tag = marker()
    resp = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta gamma"], user=tag)
    [sent] = gateway.openai_sent(tag)
    assert sent["encoding_format"] == "base64"  # what the SDK asks for by default
    assert sent["model"] == "text-embedding-3-small"
    assert [d.index for d in resp.data] == [0, 1]
    assert resp.data[0].embedding == pytest.approx(embedding_vector("alpha"))
    assert resp.data[1].embedding == pytest.approx(embedding_vector("beta gamma"))
    assert resp.usage.prompt_tokens == 3


def test_embeddings_float(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model="text-embedding-3-small", input="alpha", encoding_format="float")
    assert resp.data[0].embedding == embedding_vector("alpha")


def test_embeddings_base64_explicit(client: openai.OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="alpha", encoding_format="base64"
    )
    doc = json.loads(raw.text)
    packed = base64.b64decode(doc["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == embedding_vector("alpha")


async def test_embeddings_async(aclient: openai.AsyncOpenAI) -> None:
    resp = await aclient.embeddings.create(model="text-embedding-3-small", input="alpha")
    assert resp.data[0].embedding == pytest.approx(embedding_vector("alpha"))


# --------------------------------------------------------------------------- models


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    for name in ("gpt-4o-mini", "claude", "gemini", "priced", "fallback", "auto", "auto-fallback"):
        assert name in ids
    assert ids.count("fallback") == 1  # one entry per name, not per deployment
    model = client.models.retrieve("claude")
    assert (model.id, model.object) == ("claude", "model")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


async def test_models_async(aclient: openai.AsyncOpenAI) -> None:
    ids = [m.id async for m in aclient.models.list()]
    assert "gpt-4o-mini" in ids
    assert (await aclient.models.retrieve("auto")).id == "auto"


# --------------------------------------------------------------------------- response headers

REQUEST_ID = re.compile(r"^req_[0-9a-f]{24}$")


def _check_headers(headers: httpx.Headers, deployment: str, *, cost: str | None = None) -> None:
    assert REQUEST_ID.match(headers["x-switchyard-request-id"]), headers
    assert headers["x-switchyard-model"] == deployment
    assert headers["x-switchyard-route"]
    assert "x-switchyard-cost-usd" in headers
    if cost is not None:
        assert headers["x-switchyard-cost-usd"] == cost


def test_cost_header_is_exact(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "one two three four five"}]
    raw = client.chat.completions.with_raw_response.create(model="priced", messages=messages)
    resp = raw.parse()
    usage = resp.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 3)
    expected = expected_cost(usage.prompt_tokens, usage.completion_tokens)
    assert expected == Decimal("0.000011")
    assert raw.headers["x-switchyard-cost-usd"] == "0.000011"
    assert Decimal(raw.headers["x-switchyard-cost-usd"]) == expected
    _check_headers(raw.headers, "priced")
    assert raw.headers["x-switchyard-route"] == "direct"


def test_headers_on_every_proxied_endpoint(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="claude", messages=HELLO)
    _check_headers(raw.headers, "claude")
    raw = client.chat.completions.with_raw_response.create(model="gemini", messages=HELLO)
    _check_headers(raw.headers, "gemini")
    raw = client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="hi there")
    _check_headers(raw.headers, "gpt-3.5-turbo-instruct")
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="one two")
    # prompt 2 tokens at 0.15 USD / Mtok
    _check_headers(raw.headers, "text-embedding-3-small", cost="0.0000003")
    with client.chat.completions.with_streaming_response.create(
        model="priced", messages=HELLO, stream=True
    ) as streamed:
        _check_headers(streamed.headers, "priced")
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)


def test_request_ids_are_unique(client: openai.OpenAI) -> None:
    ids = {
        client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO).headers[
            "x-switchyard-request-id"
        ]
        for _ in range(3)
    }
    assert len(ids) == 3


# --------------------------------------------------------------------------- errors


def test_wrong_key_is_authentication_error(gateway: Gateway) -> None:
    bad = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert err.value.status_code == 401
    assert err.value.body["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


async def test_wrong_key_async(gateway: Gateway) -> None:
    bad = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await bad.embeddings.create(model="text-embedding-3-small", input="x")


def test_missing_key_is_401(gateway: Gateway) -> None:
    resp = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HELLO})
    assert resp.status_code == 401
    assert error_of(resp)["type"] == "authentication_error"
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": HELLO},
        headers={"authorization": "Basic dXNlcjpwYXNz"},  # not a bearer token
    )
    assert resp.status_code == 401
    assert error_of(resp)["type"] == "authentication_error"


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert err.value.status_code == 404
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")


async def test_unknown_model_async(aclient: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await aclient.chat.completions.create(model="no-such-model", messages=HELLO, stream=True)


def test_bad_temperature_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, temperature=5)
    assert err.value.status_code == 400
    assert err.value.body["type"] == "invalid_request_error"
    assert err.value.param == "temperature"


def test_missing_messages_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.post("/chat/completions", body={"model": "gpt-4o-mini"}, cast_to=httpx.Response)
    assert err.value.body["type"] == "invalid_request_error"
    assert err.value.param == "messages"


def test_upstream_400_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="fail-400", messages=HELLO)
    assert err.value.status_code == 400


def test_upstream_429_is_rate_limit_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="fail-429", messages=HELLO)
    assert err.value.status_code == 429
    assert err.value.response.headers["retry-after"] == "0"
    assert REQUEST_ID.match(err.value.response.headers["x-switchyard-request-id"])


async def test_upstream_429_streamed_async(aclient: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as err:
        await aclient.chat.completions.create(model="fail-429", messages=HELLO, stream=True)
    assert "retry-after" in err.value.response.headers


def test_upstream_500_is_internal_server_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="fail-500", messages=HELLO)
    assert err.value.status_code == 500
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fail-500", messages=HELLO, stream=True)


def test_malformed_json_is_400(raw: httpx.Client) -> None:
    for body in (b"{not json", b'{"model": "gpt-4o-mini", ', b"\xff\xfe"):
        resp = raw.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 400, resp.text
        assert error_of(resp)["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'"a string"',
        b"",
        b"{}",
        b'{"model": 5, "messages": []}',
        b'{"model": "gpt-4o-mini", "messages": "hello"}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "hi"}]}',
        b'{"model": "gpt-4o-mini", "messages": [1, 2]}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream_options": 3}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}]}',
    ],
)
def test_bad_bodies_are_400_never_500(raw: httpx.Client, body: bytes) -> None:
    resp = raw.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    error_of(resp)


def test_oversize_body_is_413(raw: httpx.Client) -> None:
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * (MAX_BODY_BYTES + 10)}]}
    resp = raw.post("/v1/chat/completions", json=big)
    assert resp.status_code == 413
    error_of(resp)

    def chunked() -> Any:  # no content-length: the limit must hold while reading
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(MAX_BODY_BYTES // 4096 + 2):
            yield b"x" * 4096
        yield b'"}]}'

    resp = raw.post("/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"})
    assert resp.status_code == 413
    error_of(resp)


def test_body_under_the_limit_is_served(client: openai.OpenAI) -> None:
    text = "word " * (MAX_BODY_BYTES // 10)
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
    assert resp.usage.prompt_tokens == MAX_BODY_BYTES // 10


def test_master_key_variants_accepted(gateway: Gateway) -> None:
    for headers in ({"x-api-key": MASTER_KEY}, {"authorization": f"Bearer {MASTER_KEY}"}):
        resp = httpx.get(gateway.url + "/v1/models", headers=headers)
        assert resp.status_code == 200
