"""Non-streamed answers translated both ways (Anthropic -> OpenAI and OpenAI -> Anthropic): stop reasons,
tool calls and usage, checked against the official SDKs' models."""

from __future__ import annotations

import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion

from providers.anthropic_translate import openai_response_to_anthropic
from providers.anthropic_translate_upstream import anthropic_response_to_openai


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ],
)
def test_stop_reason_mapping(stop_reason: str, finish: str) -> None:
    data = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    assert anthropic_response_to_openai(data, "m")["choices"][0]["finish_reason"] == finish


def test_anthropic_response_with_tools_and_cache_usage() -> None:
    data = {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Checking. "},
            {"type": "text", "text": "One sec."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 100,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 50,
            "output_tokens": 20,
        },
    }
    Message.model_validate(data)
    out = anthropic_response_to_openai(data, "gateway-name")
    ChatCompletion.model_validate(out)
    assert out["model"] == "gateway-name"
    assert out["object"] == "chat.completion"
    message = out["choices"][0]["message"]
    assert message["content"] == "Checking. One sec."
    assert message["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"] == {
        "prompt_tokens": 1150,
        "completion_tokens": 20,
        "total_tokens": 1170,
        "prompt_tokens_details": {"cached_tokens": 1000},
        "cache_creation_input_tokens": 50,
    }


def test_tool_only_answer_has_null_content() -> None:
    data = {
        "id": "msg_1",
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    message = anthropic_response_to_openai(data, "m")["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"]["arguments"] == "{}"


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ],
)
def test_openai_response_to_anthropic_stop_reasons(finish: str, stop_reason: str) -> None:
    data = {
        "id": "chatcmpl-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": finish}],
    }
    assert openai_response_to_anthropic(data, "m")["stop_reason"] == stop_reason


def test_openai_response_to_anthropic_tools_and_usage() -> None:
    data = {
        "id": "chatcmpl-xyz",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-x",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Sure.",
                    "tool_calls": [
                        {
                            "id": "call_9",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 7,
            "total_tokens": 127,
            "prompt_tokens_details": {"cached_tokens": 100},
        },
    }
    out = openai_response_to_anthropic(data, "claude-name")
    Message.model_validate(out)
    assert out == {
        "id": "msg_xyz",
        "type": "message",
        "role": "assistant",
        "model": "claude-name",
        "content": [
            {"type": "text", "text": "Sure."},
            {"type": "tool_use", "id": "call_9", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 20,
            "output_tokens": 7,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 100,
        },
    }
    # Back again: the usage survives exactly (no double-counted cache tokens).
    back = anthropic_response_to_openai(out, "gpt-x")
    assert back["usage"] == data["usage"]
    assert back["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"city":"Paris"}'
