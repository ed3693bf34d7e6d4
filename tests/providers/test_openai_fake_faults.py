"""The fake OpenAI upstream's faults and request validation, through the official `openai` SDK and raw
HTTP: error statuses and bodies, flaky models, hangs, streams that die midway, missing auth, and 400s that
name the bad parameter."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import GREETING
from tests.fakes.server import ServerThread
from tests.providers import openai_fake_cases as cases
from tests.providers.openai_fake_cases import USER

# The shared fixtures, bound as module globals so that pytest finds them here.
base_url = cases.base_url
client = cases.client
aclient = cases.aclient


# ---------------------------------------------------------------- faults and validation


@pytest.mark.parametrize(
    ("model", "exc", "status"),
    [
        ("fail-400", openai.BadRequestError, 400),
        ("fail-401", openai.AuthenticationError, 401),
        ("fail-429", openai.RateLimitError, 429),
        ("fail-500", openai.InternalServerError, 500),
    ],
)
def test_faults(client: openai.OpenAI, model: str, exc: type[openai.APIStatusError], status: int) -> None:
    with pytest.raises(exc) as info:
        client.chat.completions.create(model=model, messages=USER)  # type: ignore[arg-type]
    assert info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    with pytest.raises(exc):
        client.chat.completions.create(model=model, messages=USER, stream=True)  # type: ignore[arg-type]
    with pytest.raises(exc):
        client.embeddings.create(model=model, input="x")


def test_429_retry_after_header(base_url: str) -> None:
    r = httpx.post(
        base_url + "/chat/completions",
        json={"model": "fail-429", "messages": USER},
        headers={"Authorization": "Bearer x"},
    )
    assert r.status_code == 429 and r.headers["retry-after"] == "0"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_flaky_counts_per_model(client: openai.OpenAI, openai_upstream: ServerThread) -> None:
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="flaky-2-sdk", messages=USER)  # type: ignore[arg-type]
    r = client.chat.completions.create(model="flaky-2-sdk", messages=USER)  # type: ignore[arg-type]
    assert r.choices[0].message.content == GREETING
    assert openai_upstream.app.state.flaky_counts["flaky-2-sdk"] == 3


def test_sdk_retries_flaky(base_url: str) -> None:
    with openai.OpenAI(base_url=base_url, api_key="k", max_retries=1) as c:
        r = c.chat.completions.create(model="flaky-1-retried", messages=USER)  # type: ignore[arg-type]
    assert r.choices[0].message.content == GREETING


def test_hang_times_out(base_url: str) -> None:
    with (
        openai.OpenAI(base_url=base_url, api_key="k", max_retries=0, timeout=0.3) as c,
        pytest.raises(openai.APITimeoutError),
    ):
        c.chat.completions.create(model="hang", messages=USER)  # type: ignore[arg-type]


async def test_die_midstream_async(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(
        model="die-midstream",
        messages=USER,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    got: list[str] = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        async for c in stream:
            got.extend(ch.delta.content for ch in c.choices if ch.delta.content)
    assert got == ["Hello", " from"]


def test_die_midstream_raw_is_incomplete(base_url: str) -> None:
    body = {"model": "die-midstream", "messages": USER, "stream": True}
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST", base_url + "/chat/completions", json=body, headers={"Authorization": "Bearer x"}
        ) as r,
    ):
        for part in r.iter_bytes():
            received += part
    assert received.count(b"data: ") == 3 and b"[DONE]" not in received


def test_die_midstream_non_stream(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError):
        client.chat.completions.create(model="die-midstream", messages=USER)  # type: ignore[arg-type]


def test_missing_auth_is_401(base_url: str) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        r = httpx.post(base_url + "/chat/completions", json={"model": "m", "messages": USER}, headers=headers)
        assert r.status_code == 401
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(base_url + "/models").status_code == 401


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"messages": USER}, None),
        ({"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"model": "m", "messages": [*USER, {"role": "tool", "tool_call_id": "c1", "content": "x"}]},
            "messages.[1].role",
        ),
        (
            {
                "model": "m",
                "messages": [
                    *USER,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        ],
                    },
                    {"role": "tool", "tool_call_id": "c2", "content": "x"},
                ],
            },
            "messages.[2].tool_call_id",
        ),
        (
            {
                "model": "m",
                "messages": [
                    *USER,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        ],
                    },
                    {"role": "user", "content": "next"},
                ],
            },
            "messages.[1].role",
        ),
        ({"model": "m", "messages": USER, "stream_options": {"include_usage": True}}, "stream_options"),
        ({"model": "m", "messages": USER, "top_logprobs": 2}, "top_logprobs"),
        ({"model": "m", "messages": USER, "n": 0}, "n"),
        ({"model": "m", "messages": USER, "tool_choice": "auto"}, "tool_choice"),
    ],
)
def test_chat_validation(base_url: str, body: dict[str, Any], param: str | None) -> None:
    r = httpx.post(base_url + "/chat/completions", json=body, headers={"Authorization": "Bearer x"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_validation_via_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=[])
    assert info.value.param == "messages"
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="m", input="")
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="m", prompt=None)  # type: ignore[arg-type]
