"""Gemini request translation (`build_request`): roles, images, tool calls and results, tool schemas,
tool choice and generation config."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from providers.base import UpstreamError
from providers.gemini_request import build_request
from providers.gemini_tool_ids import new_call_id
from tests.providers.gemini_cases import WEATHER_TOOL, user

TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
    },
}


def test_system_and_developer_become_system_instruction_and_roles_map() -> None:
    req = build_request(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "No emojis."}]},
                user("hi"),
                user("there"),
                {"role": "assistant", "content": "hello"},
                user("bye"),
            ]
        }
    )
    assert req["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "No emojis."}]}
    assert req["contents"] == [
        {"role": "user", "parts": [{"text": "hi"}, {"text": "there"}]},  # same-role turns merged
        {"role": "model", "parts": [{"text": "hello"}]},
        {"role": "user", "parts": [{"text": "bye"}]},
    ]
    assert "generationConfig" not in req and "tools" not in req


def test_images_data_url_to_inline_data_and_remote_url_to_file_data() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    req = build_request(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                        {"type": "image_url", "image_url": {"url": "https://img.example/cat.webp?x=1"}},
                    ],
                }
            ]
        }
    )
    assert req["contents"][0]["parts"] == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": png}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://img.example/cat.webp?x=1"}},
    ]


def test_only_system_messages_is_a_400() -> None:
    with pytest.raises(UpstreamError) as err:
        build_request({"messages": [{"role": "system", "content": "x"}]})
    assert err.value.status == 400 and not err.value.retryable


def test_tool_call_round_trip_to_function_call_and_response() -> None:
    signed = new_call_id("c2lnbmF0dXJl")
    messages = [
        user("weather and time?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": signed,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": signed, "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": '{"time": "noon"}'},
        user("thanks"),
    ]
    contents = build_request({"messages": messages})["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "c2lnbmF0dXJl",
            },
            {"functionCall": {"name": "get_time", "args": {}}},
        ],
    }
    # Both results and the next user text share one user turn; names come from the earlier calls.
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}},
            {"functionResponse": {"name": "get_time", "response": {"time": "noon"}}},
            {"text": "thanks"},
        ],
    }
    assert len(contents) == 3


def test_tool_result_without_its_call_is_a_400() -> None:
    with pytest.raises(UpstreamError) as err:
        build_request({"messages": [user("x"), {"role": "tool", "tool_call_id": "nope", "content": "1"}]})
    assert err.value.status == 400


def test_tools_schema_is_cleaned_for_gemini() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "$defs": {"Unit": {"type": "string", "enum": ["c", "f"], "title": "Unit"}},
        "properties": {
            "unit": {"$ref": "#/$defs/Unit"},
            "days": {"type": ["integer", "null"], "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string", "additionalProperties": False}},
            "mode": {"const": "fast"},
            "where": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "link": {"type": "string", "format": "uri", "description": "A URL"},
            "level": {"type": "integer", "enum": [1, 2]},
            "unit2": {"allOf": [{"$ref": "#/$defs/Unit"}], "description": "Second unit"},
        },
        "required": ["unit"],
    }
    req = build_request(
        {
            "messages": [user("x")],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
        }
    )
    params = req["tools"][0]["functionDeclarations"][0]["parameters"]
    assert params == {
        "type": "object",
        "properties": {
            "unit": {"type": "string", "enum": ["c", "f"], "title": "Unit"},
            "days": {"type": "integer", "nullable": True, "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string"}},
            "mode": {"enum": ["fast"], "type": "string"},
            "where": {"nullable": True, "type": "string"},
            "link": {"type": "string", "description": "A URL"},
            "level": {"type": "integer"},
            "unit2": {"description": "Second unit", "type": "string", "enum": ["c", "f"], "title": "Unit"},
        },
        "required": ["unit"],
    }
    # Parameterless functions carry no schema (Gemini rejects an OBJECT with no properties).
    bare = build_request(
        {
            "messages": [user("x")],
            "tools": [{"type": "function", "function": {"name": "ping", "parameters": {}}}],
        }
    )
    assert bare["tools"] == [{"functionDeclarations": [{"name": "ping"}]}]


@pytest.mark.parametrize(
    ("choice", "config", "declared"),
    [
        ("auto", {"mode": "AUTO"}, ["get_weather", "get_time"]),
        ("none", {"mode": "NONE"}, ["get_weather", "get_time"]),
        ("required", {"mode": "ANY"}, ["get_weather", "get_time"]),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
            ["get_weather", "get_time"],
        ),
        (
            {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [TIME_TOOL]}},
            {"mode": "AUTO"},
            ["get_time"],
        ),
    ],
)
def test_tool_choice(choice: Any, config: dict[str, Any], declared: list[str]) -> None:
    req = build_request({"messages": [user("x")], "tools": [WEATHER_TOOL, TIME_TOOL], "tool_choice": choice})
    assert req["toolConfig"] == {"functionCallingConfig": config}
    assert [d["name"] for d in req["tools"][0]["functionDeclarations"]] == declared


def test_generation_config_mapping() -> None:
    req = build_request(
        {
            "messages": [user("x")],
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "stop": "END",
            "n": 2,
            "seed": 7,
            "presence_penalty": 0.1,
            "frequency_penalty": 0.3,
            "logprobs": True,
            "top_logprobs": 3,
            "response_format": {"type": "json_object"},
        },
        options={"safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]},
    )
    assert req["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "topK": 40,
        "maxOutputTokens": 20,  # max_completion_tokens wins over the deprecated max_tokens
        "stopSequences": ["END"],
        "candidateCount": 2,
        "seed": 7,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.3,
        "responseLogprobs": True,
        "logprobs": 3,
        "responseMimeType": "application/json",
    }
    assert req["safetySettings"][0]["threshold"] == "BLOCK_NONE"


def test_json_schema_response_format() -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"ok": {"type": "boolean"}},
                "required": ["ok"],
                "additionalProperties": False,
            },
        },
    }
    config = build_request({"messages": [user("x")], "response_format": fmt})["generationConfig"]
    assert config == {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
    }
