"""The `openai` SDK against the gateway's other OpenAI endpoints: legacy completions (native and
translated), embeddings (base64 and float) and models."""

from __future__ import annotations

import base64
import json
import struct

import openai
import pytest

from tests.e2e.gateway_harness import GREETINGS, Gateway
from tests.e2e.openai_sdk_cases import marker
from tests.fakes.openai_upstream import embedding_vector

# --------------------------------------------------------------------------- legacy completions


def test_completions_legacy(client: openai.OpenAI, gateway: Gateway) -> None:
    tag = marker()
    resp = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Say hello", user=tag, max_tokens=10
    )
    assert resp.object == "text_completion"
    assert resp.choices[0].text == "Hello from openai!"
    assert resp.usage is not None and resp.usage.completion_tokens == 3
    [sent] = gateway.openai_sent(tag)
    assert sent["prompt"] == "Say hello" and sent["max_tokens"] == 10


def test_completions_legacy_streamed(client: openai.OpenAI) -> None:
    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="Say hello",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from openai!"
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]]


@pytest.mark.parametrize("model", ["claude", "gemini"])
def test_completions_legacy_translated(client: openai.OpenAI, model: str) -> None:
    resp = client.completions.create(model=model, prompt="Say hello")
    assert resp.object == "text_completion"
    assert resp.choices[0].text == GREETINGS[model]
    chunks = list(client.completions.create(model=model, prompt="Say hello", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == GREETINGS[model]
    assert all(c.usage is None for c in chunks)


async def test_completions_legacy_async(aclient: openai.AsyncOpenAI) -> None:
    resp = await aclient.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello")
    assert resp.choices[0].text == "Hello from openai!"


# --------------------------------------------------------------------------- embeddings


def test_embeddings_default_encoding_is_base64(client: openai.OpenAI, gateway: Gateway) -> None:
    tag = marker()
    resp = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta gamma"], user=tag)
    [sent] = gateway.openai_sent(tag)
    assert sent["encoding_format"] == "base64"  # what the SDK asks for by default
    assert sent["model"] == "text-embedding-3-small"
    assert [d.index for d in resp.data] == [0, 1]
    assert resp.data[0].embedding == pytest.approx(embedding_vector("alpha"))
    assert resp.data[1].embedding == pytest.approx(embedding_vector("beta gamma"))
    assert resp.usage.prompt_tokens == 3


def test_embeddings_float(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model="text-embedding-3-small", input="alpha", encoding_format="float")
    assert resp.data[0].embedding == embedding_vector("alpha")


def test_embeddings_base64_explicit(client: openai.OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="alpha", encoding_format="base64"
    )
    doc = json.loads(raw.text)
    packed = base64.b64decode(doc["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == embedding_vector("alpha")


async def test_embeddings_async(aclient: openai.AsyncOpenAI) -> None:
    resp = await aclient.embeddings.create(model="text-embedding-3-small", input="alpha")
    assert resp.data[0].embedding == pytest.approx(embedding_vector("alpha"))


# --------------------------------------------------------------------------- models


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    for name in ("gpt-4o-mini", "claude", "gemini", "priced", "fallback", "auto", "auto-fallback"):
        assert name in ids
    assert ids.count("fallback") == 1  # one entry per name, not per deployment
    model = client.models.retrieve("claude")
    assert (model.id, model.object) == ("claude", "model")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


async def test_models_async(aclient: openai.AsyncOpenAI) -> None:
    ids = [m.id async for m in aclient.models.list()]
    assert "gpt-4o-mini" in ids
    assert (await aclient.models.retrieve("auto")).id == "auto"
