"""Errors through the `openai` SDK (and raw httpx for what it cannot send): authentication, unknown
models, invalid and oversize bodies, and upstream failures mapped to the SDK's exception classes."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.e2e.gateway_harness import MASTER_KEY, MAX_BODY_BYTES, Gateway, error_of
from tests.e2e.openai_sdk_cases import HELLO, REQUEST_ID

# --------------------------------------------------------------------------- errors


def test_wrong_key_is_authentication_error(gateway: Gateway) -> None:
    bad = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert err.value.status_code == 401
    assert err.value.body["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


async def test_wrong_key_async(gateway: Gateway) -> None:
    bad = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await bad.embeddings.create(model="text-embedding-3-small", input="x")


def test_missing_key_is_401(gateway: Gateway) -> None:
    resp = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HELLO})
    assert resp.status_code == 401
    assert error_of(resp)["type"] == "authentication_error"
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": HELLO},
        headers={"authorization": "Basic dXNlcjpwYXNz"},  # not a bearer token
    )
    assert resp.status_code == 401
    assert error_of(resp)["type"] == "authentication_error"


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert err.value.status_code == 404
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")


async def test_unknown_model_async(aclient: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await aclient.chat.completions.create(model="no-such-model", messages=HELLO, stream=True)


def test_bad_temperature_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, temperature=5)
    assert err.value.status_code == 400
    assert err.value.body["type"] == "invalid_request_error"
    assert err.value.param == "temperature"


def test_missing_messages_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.post("/chat/completions", body={"model": "gpt-4o-mini"}, cast_to=httpx.Response)
    assert err.value.body["type"] == "invalid_request_error"
    assert err.value.param == "messages"


def test_upstream_400_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="fail-400", messages=HELLO)
    assert err.value.status_code == 400


def test_upstream_429_is_rate_limit_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="fail-429", messages=HELLO)
    assert err.value.status_code == 429
    assert err.value.response.headers["retry-after"] == "0"
    assert REQUEST_ID.match(err.value.response.headers["x-switchyard-request-id"])


async def test_upstream_429_streamed_async(aclient: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as err:
        await aclient.chat.completions.create(model="fail-429", messages=HELLO, stream=True)
    assert "retry-after" in err.value.response.headers


def test_upstream_500_is_internal_server_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="fail-500", messages=HELLO)
    assert err.value.status_code == 500
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fail-500", messages=HELLO, stream=True)


def test_malformed_json_is_400(raw: httpx.Client) -> None:
    for body in (b"{not json", b'{"model": "gpt-4o-mini", ', b"\xff\xfe"):
        resp = raw.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 400, resp.text
        assert error_of(resp)["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'"a string"',
        b"",
        b"{}",
        b'{"model": 5, "messages": []}',
        b'{"model": "gpt-4o-mini", "messages": "hello"}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "hi"}]}',
        b'{"model": "gpt-4o-mini", "messages": [1, 2]}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream_options": 3}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}]}',
    ],
)
def test_bad_bodies_are_400_never_500(raw: httpx.Client, body: bytes) -> None:
    resp = raw.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    error_of(resp)


def test_oversize_body_is_413(raw: httpx.Client) -> None:
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * (MAX_BODY_BYTES + 10)}]}
    resp = raw.post("/v1/chat/completions", json=big)
    assert resp.status_code == 413
    error_of(resp)

    def chunked() -> Any:  # no content-length: the limit must hold while reading
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(MAX_BODY_BYTES // 4096 + 2):
            yield b"x" * 4096
        yield b'"}]}'

    resp = raw.post("/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"})
    assert resp.status_code == 413
    error_of(resp)


def test_body_under_the_limit_is_served(client: openai.OpenAI) -> None:
    text = "word " * (MAX_BODY_BYTES // 10)
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
    assert resp.usage.prompt_tokens == MAX_BODY_BYTES // 10


def test_master_key_variants_accepted(gateway: Gateway) -> None:
    for headers in ({"x-api-key": MASTER_KEY}, {"authorization": f"Bearer {MASTER_KEY}"}):
        resp = httpx.get(gateway.url + "/v1/models", headers=headers)
        assert resp.status_code == 200
