"""Streamed OpenAI <-> Anthropic translation, both directions, checked against the official SDKs' event and
chunk models."""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
import pytest
from anthropic.types import RawMessageStreamEvent
from openai.types.chat import ChatCompletionChunk

from providers.anthropic_translate_stream import AnthropicStreamToOpenAI, OpenAIStreamToAnthropic

STREAM_EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)


def anthropic_events(tool: bool = False) -> list[dict[str, Any]]:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_s1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 10,
                "cache_read_input_tokens": 5,
                "cache_creation_input_tokens": 0,
                "output_tokens": 1,
            },
        },
    }
    events: list[dict[str, Any]] = [
        start,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
        {"type": "content_block_stop", "index": 0},
    ]
    if tool:
        events += [
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": ""},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'},
            },
            {"type": "content_block_stop", "index": 1},
        ]
    events += [
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 12},
        },
        {"type": "message_stop"},
    ]
    for event in events:
        if event["type"] != "ping":  # the SDK filters pings out before parsing
            STREAM_EVENT.validate_python(event)
    return events


def test_anthropic_stream_to_openai_text() -> None:
    translator = AnthropicStreamToOpenAI("gw-model")
    chunks = [c for e in anthropic_events() for c in translator.feed(e)]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        ("msg_s1", translator.created, "gw-model", "chat.completion.chunk")
    }
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo"}, {}]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, None, None, "stop"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 15,
        "completion_tokens": 12,
        "total_tokens": 27,
        "prompt_tokens_details": {"cached_tokens": 5},
    }
    assert translator.done


def test_anthropic_stream_to_openai_tool_calls() -> None:
    translator = AnthropicStreamToOpenAI("m")
    chunks = [c for e in anthropic_events(tool=True) for c in translator.feed(e)]
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert [c["function"]["arguments"] for c in calls[1:]] == ['{"city": ', '"Paris"}']
    assert all(c["index"] == 0 and "id" not in c for c in calls[1:])
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def openai_chunks(*, usage_chunk: bool, tools: bool = False) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-77",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
    ]
    if tools:
        chunks += [
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "f", "arguments": ""},
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "call_b",
                            "type": "function",
                            "function": {"name": "g", "arguments": "{}"},
                        }
                    ]
                }
            ),
        ]
    chunks.append(chunk({}, "tool_calls" if tools else "stop"))
    if usage_chunk:
        chunks.append(
            {
                "id": "chatcmpl-77",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-x",
                "choices": [],
                "usage": {
                    "prompt_tokens": 30,
                    "completion_tokens": 4,
                    "total_tokens": 34,
                    "prompt_tokens_details": {"cached_tokens": 20},
                },
            }
        )
    return chunks


def parse_sse(frames: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in frames:
        assert frame.endswith(b"\n\n") and frame.count(b"\n") == 3
        head, data = frame[:-2].split(b"\n")
        assert head.startswith(b"event: ") and data.startswith(b"data: ")
        event = orjson.loads(data[6:])
        assert event["type"] == head[7:].decode()
        STREAM_EVENT.validate_python(event)
        out.append((event["type"], event))
    return out


@pytest.mark.parametrize("usage_chunk", [True, False])
def test_openai_stream_to_anthropic_text(usage_chunk: bool) -> None:
    translator = OpenAIStreamToAnthropic("claude-name")
    frames = [
        f for c in openai_chunks(usage_chunk=usage_chunk) for f in translator.feed(c)
    ] + translator.finish()
    assert translator.finish() == []
    events = parse_sse(frames)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"] == "msg_77" and start["model"] == "claude-name" and start["usage"]["input_tokens"] == 0
    assert [e["delta"]["text"] for n, e in events if n == "content_block_delta"] == ["Hel", "lo"]
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    if usage_chunk:
        assert delta["usage"] == {
            "input_tokens": 10,
            "output_tokens": 4,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 20,
        }
    else:
        assert delta["usage"] == {"output_tokens": 0}


def test_openai_stream_to_anthropic_tools_round_trip() -> None:
    translator = OpenAIStreamToAnthropic("claude-name")
    frames = [
        f for c in openai_chunks(usage_chunk=True, tools=True) for f in translator.feed(c)
    ] + translator.finish()
    events = parse_sse(frames)
    assert [(n, e.get("index")) for n, e in events] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[5][1]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "f", "input": {}}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    # ...and back to OpenAI: same text, same calls, same usage.
    back = AnthropicStreamToOpenAI("gpt-x")
    chunks = [c for _, e in events for c in back.feed(e)]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello"
    args: dict[int, str] = {}
    for c in chunks:
        for call in (c["choices"][0]["delta"].get("tool_calls") or []) if c["choices"] else []:
            args[call["index"]] = args.get(call["index"], "") + call["function"]["arguments"]
    assert args == {0: '{"x": 1}', 1: "{}"}
    assert chunks[-1]["usage"]["prompt_tokens"] == 30
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 20}


def test_openai_stream_to_anthropic_empty_stream_still_well_formed() -> None:
    translator = OpenAIStreamToAnthropic("m")
    events = parse_sse(translator.finish())
    assert [n for n, _ in events] == ["message_start", "message_delta", "message_stop"]
