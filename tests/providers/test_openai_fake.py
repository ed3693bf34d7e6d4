"""The fake OpenAI upstream speaks the real wire format: chat completions driven by the official `openai`
SDK (sync and async, streams and their raw framing, JSON mode, n, logprobs, tool calls)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai

from tests.fakes.openai_upstream import GREETING
from tests.fakes.server import ServerThread
from tests.providers import openai_fake_cases as cases
from tests.providers.openai_fake_cases import USER

# The shared fixtures, bound as module globals so that pytest finds them here.
base_url = cases.base_url
client = cases.client
aclient = cases.aclient

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


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
