"""OpenAI <-> Anthropic translation: requests, responses and streams, both directions.

Outputs are checked against the official SDKs' own models (openai / anthropic types) and against the
fake Anthropic upstream's request validation, which mirrors what the real API rejects."""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from providers.anthropic_translate import (
    TranslationError,
    anthropic_request_to_openai,
    openai_response_to_anthropic,
)
from providers.anthropic_translate_stream import AnthropicStreamToOpenAI, OpenAIStreamToAnthropic
from providers.anthropic_translate_upstream import (
    DEFAULT_MAX_TOKENS,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
)
from tests.fakes.anthropic_upstream import InvalidRequest, validate

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
STREAM_EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)


def tool_conversation() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rainy"}]},
        {"role": "user", "content": "Thanks. Which is nicer?"},
    ]


# ------------------------------------------------------------------------------ OpenAI -> Anthropic


def test_basic_request_fields() -> None:
    body = {
        "model": "claude-x",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": "Hi"},
        ],
        "temperature": 1.7,
        "top_p": 0.9,
        "stop": "END",
        "user": "u-42",
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": True,
        "top_logprobs": 2,
        "seed": 7,
        "n": 1,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.1,
        "logit_bias": {"1": 2},
        "metadata": {"k": "v"},
        "store": False,
    }
    out = openai_request_to_anthropic(body)
    assert out == {
        "model": "claude-x",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}],
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 1.0,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-42"},
        "stream": True,
    }
    validate(out)


def test_max_tokens_and_stop_list() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert openai_request_to_anthropic({**base, "max_tokens": 10})["max_tokens"] == 10
    out = openai_request_to_anthropic(
        {**base, "max_tokens": 10, "max_completion_tokens": 20, "stop": ["a", "b"]}
    )
    assert out["max_tokens"] == 20
    assert out["stop_sequences"] == ["a", "b"]
    assert "system" not in out and "stream" not in out


def test_n_greater_than_one_is_a_client_error() -> None:
    with pytest.raises(TranslationError) as info:
        openai_request_to_anthropic({"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]})
    assert isinstance(info.value, ValueError)
    assert info.value.param == "n"


def test_images_data_and_http_urls() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "low"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ],
    }
    out = openai_request_to_anthropic(body)
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    validate(out)
    bad = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}],
    }
    with pytest.raises(TranslationError):
        openai_request_to_anthropic(bad)
    audio = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
    }
    with pytest.raises(TranslationError) as info:
        openai_request_to_anthropic(audio)
    assert info.value.param == "messages[0].content[0]"


def test_tool_conversation_merges_results_into_one_user_turn() -> None:
    body = {"model": "m", "messages": tool_conversation(), "tools": [WEATHER_TOOL]}
    out = openai_request_to_anthropic(body)
    assert out["system"] == "You are terse."
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert "tool_choice" not in out  # auto is Anthropic's default
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][1]["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "rainy"}]},
        {"type": "text", "text": "Thanks. Which is nicer?"},
    ]
    validate(out)


def test_tool_results_stay_first_when_user_text_came_before_them() -> None:
    messages = [
        *tool_conversation()[:3],
        {"role": "user", "content": "oh, and"},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rainy"},
    ]
    out = openai_request_to_anthropic({"model": "m", "messages": messages, "tools": [WEATHER_TOOL]})
    assert [b["type"] for b in out["messages"][2]["content"]] == ["tool_result", "tool_result", "text"]
    validate(out)


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, None),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", None, {"type": "none"}),
        ("none", False, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice(choice: Any, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": choice,
    }
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    out = openai_request_to_anthropic(body)
    assert out.get("tool_choice") == expected
    validate(out)


def test_tool_choice_without_tools_is_dropped() -> None:
    out = openai_request_to_anthropic(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "none"}
    )
    assert "tool_choice" not in out
    validate(out)


def test_invalid_tool_arguments_are_a_client_error() -> None:
    messages = tool_conversation()
    messages[2]["tool_calls"][0]["function"]["arguments"] = "{not json"
    with pytest.raises(TranslationError) as info:
        openai_request_to_anthropic({"model": "m", "messages": messages})
    assert info.value.param == "messages[2].tool_calls[0].function.arguments"


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object", "properties": {}}}},
    ],
)
def test_json_response_format_becomes_a_system_instruction(response_format: dict[str, Any]) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": "Sys."}, {"role": "user", "content": "x"}],
        "response_format": response_format,
    }
    out = openai_request_to_anthropic(body)
    assert out["system"][0] == {"type": "text", "text": "Sys."}
    assert "valid JSON" in out["system"][1]["text"]
    if response_format["type"] == "json_schema":
        assert '"properties":{}' in out["system"][1]["text"]
    plain = openai_request_to_anthropic({**body, "response_format": {"type": "text"}})
    assert plain["system"] == "Sys."


def test_pdf_file_part_and_cache_control_survive() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "file",
                        "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
                    },
                    {"type": "text", "text": "Summarise", "cache_control": {"type": "ephemeral"}},
                ],
            }
        ],
    }
    out = openai_request_to_anthropic(body)
    assert out["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
        },
        {"type": "text", "text": "Summarise", "cache_control": {"type": "ephemeral"}},
    ]


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


# ------------------------------------------------------------------------------ Anthropic -> OpenAI


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
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": choice,
    }
    assert anthropic_request_to_openai(body)["tool_choice"] == expected


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


# ------------------------------------------------------------------------------ streams


def sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


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


def test_fake_validation_catches_translation_bugs() -> None:
    # The checks the adapter tests rely on: the fake rejects what the real API rejects.
    good = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    validate(good)
    bad_cases = [
        {k: v for k, v in good.items() if k != "max_tokens"},
        {**good, "n": 1},
        {**good, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
        {**good, "messages": [{"role": "assistant", "content": "a"}]},
        {**good, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]},
        {
            **good,
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
                {"role": "user", "content": "no result"},
            ],
        },
        {**good, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
        {**good, "temperature": 1.5},
    ]
    for case in bad_cases:
        with pytest.raises(InvalidRequest):
            validate(case)
