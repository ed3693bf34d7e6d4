"""Gemini answer translation: finish reasons, usage, candidates, logprobs and stream state, plus error
bodies, embedding requests/answers and the API root."""

from __future__ import annotations

import base64
import struct

import orjson
import pytest

from providers import gemini_response
from providers.base import UpstreamError
from providers.gemini import api_root
from providers.gemini_embeddings import build_embed_request, build_embed_response, embed_inputs
from providers.gemini_errors import error_from_body
from providers.gemini_response import StreamState, build_response
from providers.gemini_tool_ids import THOUGHT_SIGNATURE_SEP


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
