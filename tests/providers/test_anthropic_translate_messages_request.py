"""Anthropic Messages requests translated to OpenAI chat (`anthropic_request_to_openai`), and the
OpenAI -> Anthropic -> OpenAI request round trip."""

from __future__ import annotations

from typing import Any

import pytest

from providers.anthropic_translate import TranslationError, anthropic_request_to_openai
from providers.anthropic_translate_upstream import openai_request_to_anthropic
from tests.fakes.anthropic_upstream import validate
from tests.providers.anthropic_cases import PNG_B64, WEATHER_TOOL, tool_conversation


def test_anthropic_request_to_openai_full() -> None:
    body = {
        "model": "gpt-x",
        "max_tokens": 256,
        "system": [
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "French."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "...", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "sunny"}],
                    },
                    {"type": "text", "text": "And?"},
                ],
            },
        ],
        "tools": [
            {"name": "get_weather", "description": "d", "input_schema": {"type": "object", "properties": {}}}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "top_p": 0.8,
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
        "stream": True,
    }
    validate(body)
    out = anthropic_request_to_openai(body)
    assert out == {
        "model": "gpt-x",
        "messages": [
            {"role": "system", "content": "Be brief.\nFrench."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "user", "content": "And?"},
        ],
        "max_tokens": 256,
        "temperature": 0.5,
        "top_p": 0.8,
        "stop": ["END"],
        "user": "u-1",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {"type": "object", "properties": {}},
                    "description": "d",
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "any"}, "required"),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_anthropic_tool_choice_to_openai(choice: dict[str, Any], expected: Any) -> None:
    assert anthropic_request_to_openai(_with_tool_choice(choice))["tool_choice"] == expected


def _with_tool_choice(choice: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": choice,
    }


@pytest.mark.parametrize("choice", [{"type": "tool", "name": 7}, {"type": "tool"}, {"type": "function"}])
def test_malformed_anthropic_tool_choice_is_a_client_error(choice: dict[str, Any]) -> None:
    with pytest.raises(TranslationError) as info:
        anthropic_request_to_openai(_with_tool_choice(choice))
    assert info.value.param == "tool_choice"


def test_anthropic_error_tool_result_and_server_tools() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": True}
                ],
            },
        ],
    }
    out = anthropic_request_to_openai(body)
    assert out["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }
    assert out["messages"][2] == {"role": "tool", "tool_call_id": "t1", "content": "Error: boom"}
    assert len(out["messages"]) == 3
    with pytest.raises(TranslationError):
        anthropic_request_to_openai(
            {**body, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}
        )


def test_round_trip_openai_request() -> None:
    body = {
        "model": "m",
        "messages": tool_conversation(),
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "max_tokens": 50,
        "temperature": 0.2,
        "stop": ["x"],
        "user": "u",
    }
    back = anthropic_request_to_openai(openai_request_to_anthropic(body))
    assert back["messages"][0] == {"role": "system", "content": "You are terse."}
    assert back["messages"][2]["tool_calls"][1]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Rome"}',
    }
    assert back["messages"][3:] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rainy"},
        {"role": "user", "content": "Thanks. Which is nicer?"},
    ]
    for key in ("tools", "tool_choice", "max_tokens", "temperature", "stop", "user"):
        assert back[key] == body[key]
