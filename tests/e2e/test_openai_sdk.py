"""The official `openai` SDK (sync and async) pointed at the gateway, changing nothing but base_url:
chat, streaming, tool calls, JSON mode and unknown-field passthrough."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.e2e.gateway_harness import GREETINGS, WEATHER_TOOL, Gateway
from tests.e2e.openai_sdk_cases import HELLO, marker

CHAT_BACKENDS = list(GREETINGS)


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
