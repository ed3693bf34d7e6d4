"""The native Gemini adapter: pure translation first, then over real loopback HTTP against the fake."""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest

from providers import gemini_response
from providers.base import Chunk, Endpoint, UpstreamCall, UpstreamError
from providers.deployment import Deployment
from providers.gemini import GeminiProvider, api_root
from providers.gemini_embeddings import build_embed_request, build_embed_response, embed_inputs
from providers.gemini_errors import error_from_body
from providers.gemini_request import build_request
from providers.gemini_response import StreamState, build_response
from providers.gemini_tool_ids import THOUGHT_SIGNATURE_SEP, new_call_id
from routing.tokens import count_tokens
from tests.fakes import gemini_upstream
from tests.fakes.server import ServerThread, closed_port

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
    },
}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


# ---------------------------------------------------------------- translation: requests


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


# ---------------------------------------------------------------- translation: responses


@pytest.mark.parametrize(
    ("native", "has_calls", "expected"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("MAX_TOKENS", True, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("SPII", False, "content_filter"),
        ("OTHER", False, "stop"),
        ("SOMETHING_NEW", False, "stop"),
    ],
)
def test_finish_reasons(native: str, has_calls: bool, expected: str) -> None:
    assert gemini_response.finish_reason(native, has_calls) == expected


def test_usage_counts_thoughts_as_completion_and_reports_cache() -> None:
    usage = gemini_response.usage(
        {
            "promptTokenCount": 100,
            "candidatesTokenCount": 20,
            "thoughtsTokenCount": 30,
            "cachedContentTokenCount": 64,
            "totalTokenCount": 150,
        }
    )
    assert usage == {
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    assert gemini_response.usage(None) is None


def test_response_candidates_tool_calls_and_thoughts() -> None:
    data = {
        "candidates": [
            {
                "index": 0,
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Let me think.", "thought": True},
                        {"text": "Checking "},
                        {"text": "the weather."},
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "sig",
                        },
                    ],
                },
                "finishReason": "STOP",
            },
            {
                "index": 1,
                "content": {"role": "model", "parts": [{"text": "Cut"}]},
                "finishReason": "MAX_TOKENS",
            },
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 7},
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "abc",
    }
    out = build_response(data, "gemini-2.5-flash")
    assert out["id"] == "chatcmpl-abc" and out["object"] == "chat.completion"
    assert out["model"] == "gemini-2.5-flash-001"
    first, second = out["choices"]
    assert first["message"]["content"] == "Checking the weather."
    assert first["message"]["reasoning_content"] == "Let me think."
    (call,) = first["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["id"].endswith(THOUGHT_SIGNATURE_SEP + "sig")
    assert call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert first["finish_reason"] == "tool_calls"
    assert second == {
        "index": 1,
        "message": {"role": "assistant", "content": "Cut"},
        "finish_reason": "length",
        "logprobs": None,
    }
    assert out["usage"]["prompt_tokens"] == 5 and out["usage"]["completion_tokens"] == 7


def test_tool_only_answer_has_null_content() -> None:
    data = {
        "candidates": [
            {"content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]}, "finishReason": "STOP"}
        ]
    }
    message = build_response(data, "m")["choices"][0]["message"]
    assert message["content"] is None and message["tool_calls"][0]["function"]["arguments"] == "{}"


def test_blocked_prompt_is_a_content_filter_answer() -> None:
    data = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    out = build_response(data, "m")
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": None},
            "finish_reason": "content_filter",
            "logprobs": None,
        }
    ]
    state = StreamState(model="m")
    chunks = state.feed(data) + state.close()
    assert chunks[0]["choices"][0]["finish_reason"] == "content_filter"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 3


def test_logprobs_conversion() -> None:
    result = {
        "chosenCandidates": [{"token": "Hi", "logProbability": -0.1}],
        "topCandidates": [
            {"candidates": [{"token": "Hi", "logProbability": -0.1}, {"token": "Yo", "logProbability": -2.0}]}
        ],
    }
    assert gemini_response.logprobs(result) == {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.1,
                "bytes": [72, 105],
                "top_logprobs": [
                    {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                    {"token": "Yo", "logprob": -2.0, "bytes": [89, 111]},
                ],
            }
        ]
    }


def test_stream_state_text_tool_calls_finish_and_usage() -> None:
    state = StreamState(model="gemini-x")
    events = [
        {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}],
            "usageMetadata": {"promptTokenCount": 4},
        },
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}}]},
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"functionCall": {"name": "a", "args": {"x": 1}}},
                            {"functionCall": {"name": "b", "args": {}}},
                        ],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6, "thoughtsTokenCount": 2},
        },
    ]
    chunks = [c for e in events for c in state.feed(e)] + state.close()
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": "Hel"}
    assert deltas[1] == {"content": "lo"}
    calls = deltas[2]["tool_calls"]
    assert [(c["index"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        (0, "a", '{"x":1}'),
        (1, "b", "{}"),
    ]
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 8


def test_stream_without_finish_reason_is_closed_with_stop() -> None:
    state = StreamState(model="m")
    chunks = state.feed({"candidates": [{"content": {"parts": [{"text": "x"}]}}]}) + state.close()
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"  # no usage seen: no usage chunk


def test_google_error_body_mapping() -> None:
    body = orjson.dumps(
        {
            "error": {
                "code": 429,
                "message": "Quota exceeded",
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}],
            }
        }
    )
    err = error_from_body(429, body)
    assert (err.status, err.message, err.code, err.retryable, err.retry_after) == (
        429,
        "Quota exceeded",
        "RESOURCE_EXHAUSTED",
        True,
        17.0,
    )
    assert error_from_body(429, body, "3").retry_after == 3.0  # the header wins
    plain = error_from_body(502, b"<html>Bad Gateway</html>")
    assert plain.status == 502 and plain.retryable and "Bad Gateway" in plain.message
    bad = error_from_body(
        400, orjson.dumps([{"error": {"code": 400, "message": "nope", "status": "INVALID_ARGUMENT"}}])
    )
    assert (bad.message, bad.retryable, bad.type) == ("nope", False, "invalid_request_error")


def test_embedding_inputs_and_base64() -> None:
    assert embed_inputs({"input": "one"}) == ["one"]
    assert embed_inputs({"input": ["a", "b"]}) == ["a", "b"]
    for bad in ([1, 2, 3], [[1, 2]], [], None):
        with pytest.raises(UpstreamError) as err:
            embed_inputs({"input": bad})
        assert err.value.status == 400 and err.value.param == "input"
    req = build_embed_request(
        ["a"], "text-embedding-004", {"dimensions": 4}, {"task_type": "RETRIEVAL_QUERY"}
    )
    assert req == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "a"}]},
                "outputDimensionality": 4,
                "taskType": "RETRIEVAL_QUERY",
            }
        ]
    }
    out = build_embed_response({"embeddings": [{"values": [0.5, -1.0]}]}, "m", 1, "base64")
    assert struct.unpack("<2f", base64.b64decode(out["data"][0]["embedding"])) == (0.5, -1.0)


def test_api_root() -> None:
    assert api_root(None) == "https://generativelanguage.googleapis.com/v1beta"
    assert api_root("http://127.0.0.1:9/") == "http://127.0.0.1:9/v1beta"
    assert api_root("http://127.0.0.1:9/v1beta/") == "http://127.0.0.1:9/v1beta"


# ---------------------------------------------------------------- over loopback HTTP


@pytest.fixture(scope="module")
def gemini_fake() -> Iterator[ServerThread]:
    with ServerThread(gemini_upstream.create_app(hang_seconds=3)) as server:
        yield server


@pytest.fixture
async def provider(gemini_fake: ServerThread) -> AsyncIterator[GeminiProvider]:
    p = GeminiProvider(make_deployment(gemini_fake.url))
    yield p
    await p.aclose()


def make_deployment(api_base: str, **kw: Any) -> Deployment:
    fields: dict[str, Any] = {
        "name": "gemini-flash",
        "provider": "gemini",
        "model": "gemini-2.5-flash",
        "api_base": api_base,
        "api_key": "test-key",
        "timeout": 5.0,
        "connect_timeout": 1.0,
    }
    return Deployment(**{**fields, **kw})


def chat(model: str = "gemini-2.5-flash", **body: Any) -> UpstreamCall:
    return UpstreamCall(body={"model": model, "messages": [user("hi there friend")], **body})


def stream_call(model: str = "gemini-2.5-flash", **body: Any) -> UpstreamCall:
    return chat(model, stream=True, stream_options={"include_usage": True}, **body)


async def collect(provider: GeminiProvider, call: UpstreamCall) -> list[Chunk]:
    return [c async for c in provider.stream(call)]


def last_request(server: ServerThread) -> dict[str, Any]:
    return server.app.state.requests[-1]


async def test_complete(provider: GeminiProvider, gemini_fake: ServerThread) -> None:
    resp = await provider.complete(
        chat(messages=[{"role": "system", "content": "Be nice."}, user("hi there")])
    )
    assert resp.data["choices"][0]["message"] == {"role": "assistant", "content": gemini_upstream.CONTENT}
    assert resp.data["choices"][0]["finish_reason"] == "stop"
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (4, 3)
    assert orjson.loads(resp.body) == resp.data
    req = last_request(gemini_fake)
    assert req["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert req["headers"]["x-goog-api-key"] == "test-key"
    assert req["json"]["systemInstruction"] == {"parts": [{"text": "Be nice."}]}
    assert req["json"]["contents"] == [{"role": "user", "parts": [{"text": "hi there"}]}]


async def test_stream_with_final_usage_chunk(provider: GeminiProvider, gemini_fake: ServerThread) -> None:
    chunks = await collect(provider, stream_call())
    req = last_request(gemini_fake)
    assert req["method"] == "streamGenerateContent" and req["query"] == {"alt": "sse"}
    assert all(c.raw.startswith(b"data: {") and c.raw.endswith(b"\n\n") for c in chunks)
    assert all(orjson.loads(c.raw[6:]) == c.data for c in chunks)
    content_chunks = [c for c in chunks if c.data["choices"] and c.data["choices"][0]["delta"].get("content")]
    assert len(content_chunks) == 3
    assert chunks[0].data["choices"][0]["delta"]["role"] == "assistant"
    assert (
        "".join(c.data["choices"][0]["delta"]["content"] for c in content_chunks) == gemini_upstream.CONTENT
    )
    assert chunks[-2].data["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1].data["choices"] == []
    assert (
        chunks[-1].data["usage"]["prompt_tokens"] == 3 and chunks[-1].data["usage"]["completion_tokens"] == 3
    )
    assert sum(1 for c in chunks if "usage" in c.data) == 1


async def test_tool_call_round_trip(provider: GeminiProvider, gemini_fake: ServerThread) -> None:
    resp = await provider.complete(chat(tools=[WEATHER_TOOL], tool_choice="auto"))
    choice = resp.data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
    sent = last_request(gemini_fake)["json"]
    assert "additionalProperties" not in orjson.dumps(sent["tools"]).decode()
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}

    follow_up = [
        user("hi there friend"),
        choice["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
    ]
    resp = await provider.complete(chat(messages=follow_up, tools=[WEATHER_TOOL]))
    assert resp.data["choices"][0]["message"]["content"] == "The tool said: sunny"
    sent = last_request(gemini_fake)["json"]
    assert sent["contents"][-1]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}
    ]


async def test_stream_tool_call(provider: GeminiProvider) -> None:
    chunks = await collect(provider, stream_call(tools=[WEATHER_TOOL]))
    calls = [
        tc for c in chunks if c.data["choices"] for tc in c.data["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert [(tc["index"], tc["function"]["name"]) for tc in calls] == [(0, "get_weather")]
    assert orjson.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert chunks[-2].data["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1].data["choices"] == [] and chunks[-1].data["usage"]["completion_tokens"] == 3


async def test_tool_choice_none_json_mode_and_n(provider: GeminiProvider, gemini_fake: ServerThread) -> None:
    resp = await provider.complete(chat(tools=[WEATHER_TOOL], tool_choice="none"))
    assert resp.data["choices"][0]["message"]["content"] == gemini_upstream.CONTENT
    resp = await provider.complete(chat(response_format={"type": "json_object"}, n=2, temperature=0))
    assert [c["index"] for c in resp.data["choices"]] == [0, 1]
    assert all(c["message"]["content"] == gemini_upstream.JSON_CONTENT for c in resp.data["choices"])
    assert last_request(gemini_fake)["json"]["generationConfig"] == {
        "temperature": 0,
        "candidateCount": 2,
        "responseMimeType": "application/json",
    }


async def test_headers_and_api_base_with_version(gemini_fake: ServerThread) -> None:
    p = GeminiProvider(make_deployment(gemini_fake.url + "/v1beta", headers={"x-team": "blue"}))
    try:
        call = chat()
        call.headers = {"x-request-id": "r1"}
        await p.complete(call)
    finally:
        await p.aclose()
    req = last_request(gemini_fake)
    assert req["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert req["headers"]["x-team"] == "blue" and req["headers"]["x-request-id"] == "r1"


async def test_embeddings(provider: GeminiProvider, gemini_fake: ServerThread) -> None:
    texts = ["hello world", "second input here"]
    call = UpstreamCall(body={"model": "text-embedding-004", "input": texts}, endpoint=Endpoint.EMBED)
    resp = await provider.embed(call)
    assert resp.data["object"] == "list" and resp.data["model"] == "text-embedding-004"
    assert [d["index"] for d in resp.data["data"]] == [0, 1]
    assert all(
        d["object"] == "embedding" and len(d["embedding"]) == gemini_upstream.EMBED_DIM
        for d in resp.data["data"]
    )
    tokens = sum(count_tokens(t) for t in texts)
    assert resp.data["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert resp.usage is not None and resp.usage.prompt_tokens == tokens
    req = last_request(gemini_fake)
    assert req["path"] == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert [r["model"] for r in req["json"]["requests"]] == ["models/text-embedding-004"] * 2

    again = await provider.embed(
        UpstreamCall(
            body={"model": "text-embedding-004", "input": "hello world", "encoding_format": "base64"}
        )
    )
    decoded = struct.unpack("<8f", base64.b64decode(again.data["data"][0]["embedding"]))
    assert decoded == pytest.approx(resp.data["data"][0]["embedding"], abs=1e-6)


async def test_embedding_token_arrays_are_refused_before_sending(
    provider: GeminiProvider, gemini_fake: ServerThread
) -> None:
    before = len(gemini_fake.app.state.requests)
    with pytest.raises(UpstreamError) as err:
        await provider.embed(UpstreamCall(body={"model": "text-embedding-004", "input": [[1, 2, 3]]}))
    assert err.value.status == 400 and not err.value.retryable
    assert len(gemini_fake.app.state.requests) == before


FAULTS = [
    ("fail-400", 400, False, None),
    ("fail-401", 401, False, None),
    ("fail-429", 429, True, 0.0),
    ("fail-500", 500, True, None),
]


@pytest.mark.parametrize(("model", "status", "retryable", "retry_after"), FAULTS)
async def test_faults_complete(
    provider: GeminiProvider, model: str, status: int, retryable: bool, retry_after: float | None
) -> None:
    with pytest.raises(UpstreamError) as err:
        await provider.complete(chat(model))
    assert (err.value.status, err.value.retryable, err.value.retry_after) == (status, retryable, retry_after)
    assert err.value.code in gemini_upstream._STATUS.values()


@pytest.mark.parametrize(("model", "status", "retryable", "retry_after"), FAULTS)
async def test_faults_stream_raise_from_first_anext(
    provider: GeminiProvider, model: str, status: int, retryable: bool, retry_after: float | None
) -> None:
    it = provider.stream(stream_call(model))
    with pytest.raises(UpstreamError) as err:
        await it.__anext__()
    assert (err.value.status, err.value.retryable, err.value.retry_after) == (status, retryable, retry_after)


async def test_flaky_then_ok(provider: GeminiProvider) -> None:
    for _ in range(2):
        with pytest.raises(UpstreamError) as err:
            await provider.complete(chat("flaky-2-gem"))
        assert err.value.status == 500 and err.value.retryable
    resp = await provider.complete(chat("flaky-2-gem"))
    assert resp.data["choices"][0]["message"]["content"] == gemini_upstream.CONTENT


async def test_missing_api_key_is_refused_like_google(gemini_fake: ServerThread) -> None:
    p = GeminiProvider(make_deployment(gemini_fake.url, api_key=None))
    try:
        with pytest.raises(UpstreamError) as err:
            await p.complete(chat())
    finally:
        await p.aclose()
    assert err.value.status == 403 and err.value.code == "PERMISSION_DENIED" and not err.value.retryable


async def test_hang_times_out(gemini_fake: ServerThread) -> None:
    p = GeminiProvider(make_deployment(gemini_fake.url, timeout=0.3))
    try:
        with pytest.raises(UpstreamError) as err:
            await p.complete(chat("hang"))
        assert (err.value.status, err.value.type, err.value.retryable) == (504, "timeout_error", True)
        with pytest.raises(UpstreamError) as err:
            await p.stream(stream_call("hang")).__anext__()
        assert (err.value.status, err.value.retryable) == (504, True)
    finally:
        await p.aclose()


async def test_closed_port_is_a_connect_error() -> None:
    p = GeminiProvider(make_deployment(f"http://127.0.0.1:{closed_port()}"))
    try:
        with pytest.raises(UpstreamError) as err:
            await p.complete(chat())
        assert (err.value.status, err.value.type, err.value.retryable) == (502, "api_connection_error", True)
        with pytest.raises(UpstreamError) as err:
            await p.stream(stream_call()).__anext__()
        assert err.value.type == "api_connection_error"
    finally:
        await p.aclose()


async def test_die_midstream_raises_after_chunks(provider: GeminiProvider) -> None:
    got: list[Chunk] = []
    with pytest.raises(UpstreamError) as err:
        async for chunk in provider.stream(stream_call("die-midstream")):
            got.append(chunk)
    assert len(got) == 2
    assert "".join(c.data["choices"][0]["delta"]["content"] for c in got) == "Hello from "
    assert err.value.status == 502 and "interrupted" in err.value.message
    with pytest.raises(UpstreamError) as err:
        await provider.complete(chat("die-midstream"))
    assert err.value.status == 502 and err.value.retryable


async def test_stream_error_event_after_start_is_midstream() -> None:
    """Gemini can end an SSE stream with an error document instead of a candidate."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        events = [
            {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}}]},
            {"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}},
        ]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for event in events:
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + orjson.dumps(event) + b"\r\n\r\n",
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b""})

    with ServerThread(app) as server:
        p = GeminiProvider(make_deployment(server.url))
        try:
            got: list[Chunk] = []
            with pytest.raises(UpstreamError) as err:
                async for chunk in p.stream(stream_call()):
                    got.append(chunk)
        finally:
            await p.aclose()
    assert len(got) == 1 and err.value.status == 502 and "Internal error" in err.value.message


async def test_stall_after_start_is_midstream_not_a_timeout_answer() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        event = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}}]}
        body = b"data: " + orjson.dumps(event) + b"\r\n\r\n"
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await asyncio.sleep(1)
        await send({"type": "http.response.body", "body": b""})

    with ServerThread(app) as server:
        p = GeminiProvider(make_deployment(server.url, timeout=0.3))
        try:
            got: list[Chunk] = []
            with pytest.raises(UpstreamError) as err:
                async for chunk in p.stream(stream_call()):
                    got.append(chunk)
        finally:
            await p.aclose()
    assert len(got) == 1 and (err.value.status, err.value.retryable) == (502, True)
    assert "interrupted" in err.value.message


async def test_fake_validates_like_the_real_api(gemini_fake: ServerThread) -> None:
    url = gemini_fake.url + "/v1beta/models/gemini-2.5-flash:generateContent"
    headers = {"x-goog-api-key": "k"}
    async with httpx.AsyncClient() as client:
        bad_role = await client.post(
            url, headers=headers, json={"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}
        )
        empty = await client.post(url, headers=headers, json={"contents": []})
        schema = await client.post(
            url,
            headers=headers,
            json={
                "contents": [{"role": "user", "parts": [{"text": "x"}]}],
                "tools": [
                    {
                        "functionDeclarations": [
                            {"name": "f", "parameters": {"type": "object", "additionalProperties": False}}
                        ]
                    }
                ],
            },
        )
    for resp in (bad_role, empty, schema):
        assert resp.status_code == 400
        assert resp.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_google_genai_sdk_accepts_the_fake(gemini_fake: ServerThread) -> None:
    genai = pytest.importorskip("google.genai")
    client = genai.Client(api_key="k", http_options=genai.types.HttpOptions(base_url=gemini_fake.url))
    resp = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi there")
    assert resp.text == gemini_upstream.CONTENT
