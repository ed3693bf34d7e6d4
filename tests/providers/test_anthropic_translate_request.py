"""OpenAI chat requests translated to Anthropic Messages (`openai_request_to_anthropic`), checked against
the fake Anthropic upstream's request validation, which mirrors what the real API rejects."""

from __future__ import annotations

from typing import Any

import pytest

from providers.anthropic_translate import TranslationError
from providers.anthropic_translate_upstream import DEFAULT_MAX_TOKENS, openai_request_to_anthropic
from tests.fakes.anthropic_upstream import InvalidRequest, validate
from tests.providers.anthropic_cases import PNG_B64, WEATHER_TOOL, tool_conversation


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


@pytest.mark.parametrize(
    "choice",
    [
        {"type": "function", "function": {"name": 7}},
        {"type": "function", "function": "get_weather"},
        {"type": "function", "function": {"name": ""}},
        {"type": "function"},
        {"type": "tool", "name": "get_weather"},
        7,
    ],
)
def test_malformed_tool_choice_is_a_client_error(choice: Any) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER_TOOL]}
    with pytest.raises(TranslationError) as info:
        openai_request_to_anthropic({**body, "tool_choice": choice})
    assert info.value.param == "tool_choice"


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


def test_message_level_cache_control_marks_its_last_block() -> None:
    """LiteLLM's form for string content: the mark goes on the block the message becomes."""
    mark = {"type": "ephemeral", "ttl": "1h"}
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief.", "cache_control": mark},
                {"role": "user", "content": "Hi", "cache_control": mark},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42", "cache_control": mark},
            ],
        }
    )
    assert out["system"] == [{"type": "text", "text": "Be brief.", "cache_control": mark}]
    assert out["messages"][0]["content"] == [{"type": "text", "text": "Hi", "cache_control": mark}]
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": "42", "cache_control": mark}
    ]
